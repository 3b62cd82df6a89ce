package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import java.util.List;

/**
 * The source VM's block layer, as the migration uses it while it runs: QEMU owns the images, and
 * Ferry joins its block layer only for the migration's duration (DESIGN.md "QEMU owns the disks").
 * The supervisor implements it with QMP (dirty bitmaps, an NBD export, I/O throttling); the
 * protocol tests use an in-process stand-in.
 *
 * <p>The one invariant of the copy: {@link #takeDirty()} starts a fresh dirty set <em>before</em> the
 * granules of the old one are read, and a guest write marks its granules once its data is visible
 * to readers. Every interleaving then either sends the new data or leaves the granule dirty for the
 * next pass. QEMU's {@code transaction} of a new bitmap and the old one's disable gives exactly that
 * (it drains in-flight requests around the swap).
 *
 * <p>Threads: {@code migration-send} only.
 */
public interface SourceBlocks {

    /**
     * Starts tracking guest writes on every disk at {@code granuleSize}, and opens read access. The
     * returned images are in the order of the disks; they read the live disks (the VM may be
     * running) and their {@link BlockImage#extents} report what this layer holds: with
     * {@code incremental}, ranges that come from the base image read as {@link ferry.image.Extent.Type#BACKING}.
     */
    List<BlockImage> start(int granuleSize, boolean incremental) throws MigrationException;

    /**
     * Atomically across every disk: the granules written since {@link #start} or the previous call,
     * while tracking goes on into a fresh set. One snapshot per disk, in order.
     */
    List<DirtySnapshot> takeDirty() throws MigrationException;

    /** Bytes written since the last {@link #takeDirty()}, over every disk (QEMU's count). */
    long dirtyBytes() throws MigrationException;

    /**
     * Limits the guest's writes to {@code bytesPerSec} on every migrated disk; 0 restores the
     * throttle settings the disks had before the migration, exactly.
     */
    void throttleWrites(long bytesPerSec) throws MigrationException;

    /**
     * Keeps only the dirty tracking: closes read access and removes every other thing {@link #start}
     * added (exports, servers), and restores the disks' throttle settings. Guest writes go on being
     * recorded into the current dirty set, so that a later attempt ({@link #reopen}) knows what changed.
     * Used when an attempt ends and another may follow (DESIGN.md "Resume").
     */
    void suspend() throws MigrationException;

    /** After {@link #suspend}: opens read access again, as {@link #start} did; tracking went on all along. */
    List<BlockImage> reopen() throws MigrationException;

    /**
     * Removes everything {@link #start} added (bitmaps, exports, servers) and restores the disks'
     * throttle settings. Safe to call more than once, and after a failed {@link #start}.
     */
    void stop() throws MigrationException;
}
