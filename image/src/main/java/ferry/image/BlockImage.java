package ferry.image;

import java.io.Closeable;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Optional;

/**
 * A virtual disk: the one interface behind which raw and qcow2 images (and views such as an NBD export's) stand. Offsets and lengths are in bytes.
 *
 * <p>Thread safety: every implementation accepts concurrent calls from several threads (the NBD
 * server runs one virtual thread per connection, and the migration copier reads beside them).
 * Reads and writes of overlapping ranges from different threads are not ordered against each other,
 * as with a real disk; a write is visible to every later read once it has returned.
 *
 * <p>Buffers: {@code read} fills {@code dst} from its position to its limit and leaves the position
 * at the limit; {@code write} consumes {@code src} from position to limit. Direct buffers avoid a copy.
 */
public interface BlockImage extends Closeable {

    /** Virtual size in bytes. */
    long size();

    boolean readOnly();

    /** Short description for logs and {@code info block}, e.g. {@code raw /srv/vm.img}. */
    String describe();

    /** The format name as QEMU spells it: {@code raw}, {@code qcow2}. */
    String format();

    void read(long offset, ByteBuffer dst) throws ImageException;

    void write(long offset, ByteBuffer src) throws ImageException;

    /**
     * Makes the range read as zeroes. With {@code mayUnmap}, the image may deallocate it (punch a
     * hole); without, the range stays allocated (NBD's NO_HOLE).
     */
    void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException;

    /** A hint that the range is no longer needed; afterwards it reads as zeroes in Ferry's images. */
    void trim(long offset, long length) throws ImageException;

    /** Makes every completed write durable. */
    void flush() throws ImageException;

    /**
     * Starts writing completed writes back to stable storage without waiting, so that a later
     * {@link #flush()} is short (the migration destination calls it after each pass, keeping the
     * flush inside the downtime small). A hint: the default does nothing.
     */
    default void startWriteback() throws ImageException {
    }

    /**
     * The allocation map of {@code [offset, offset + length)}: contiguous, ordered extents starting
     * at {@code offset}. An implementation may stop early (the caller asks again from the last end),
     * but returns at least one extent for a non-empty range inside the image.
     */
    List<Extent> extents(long offset, long length) throws ImageException;

    /** The image that reads fall through to for {@link Extent.Type#BACKING} ranges, if any. */
    default Optional<BlockImage> backing() {
        return Optional.empty();
    }

    @Override
    void close() throws ImageException;
}
