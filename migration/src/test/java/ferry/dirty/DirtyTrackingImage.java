package ferry.dirty;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Optional;

/**
 * Test stand-in for QEMU's block layer during a migration (QEMU owns the disks in Ferry itself).
 * A {@link BlockImage} that marks a {@link DirtyBitmap} for every write, zero-write and trim,
 * <em>after</em> the change is visible in the underlying image (DESIGN.md's invariant).
 * An optional {@link WriteGate} runs before each change so the migration can throttle guest writes.
 *
 * <p>Threads: called concurrently by the tests' guest-writer threads.
 */
public final class DirtyTrackingImage implements BlockImage {

    /** Called before each guest change; may block to slow the writer down. */
    @FunctionalInterface
    public interface WriteGate {
        void beforeWrite(long length) throws InterruptedException;

        WriteGate OPEN = length -> { };
    }

    private static final DirtyBitmap NOT_TRACKING = new DirtyBitmap(0, 512);

    private final BlockImage next;
    private volatile DirtyBitmap dirty;
    private volatile WriteGate gate = WriteGate.OPEN;

    /** An image that tracks nothing until {@link #track} installs a bitmap. */
    public DirtyTrackingImage(BlockImage next) {
        this.next = next;
        this.dirty = NOT_TRACKING;
    }

    public DirtyTrackingImage(BlockImage next, DirtyBitmap dirty) {
        this(next);
        track(dirty);
    }

    /**
     * Starts marking {@code bitmap} (replacing any previous one). A copier must start reading only
     * after this returns: every write that completes later marks the new bitmap.
     */
    public void track(DirtyBitmap bitmap) {
        if (next.size() != bitmap.size()) {
            throw new IllegalArgumentException("bitmap size " + bitmap.size() + " != image size " + next.size());
        }
        this.dirty = bitmap;
    }

    /** Stops marking (after a migration ended). */
    public void untrack() {
        this.dirty = NOT_TRACKING;
    }

    /** The bitmap being marked; an empty one when not tracking. */
    public DirtyBitmap bitmap() {
        return dirty;
    }

    public BlockImage underlying() {
        return next;
    }

    public void gate(WriteGate gate) {
        this.gate = gate;
    }

    private void pass(long length) throws ImageException {
        try {
            gate.beforeWrite(length);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ImageException(ImageException.Kind.IO, "write interrupted while throttled: " + describe(), e);
        }
    }

    @Override public long size() { return next.size(); }
    @Override public boolean readOnly() { return next.readOnly(); }
    @Override public String describe() { return next.describe(); }
    @Override public String format() { return next.format(); }
    @Override public Optional<BlockImage> backing() { return next.backing(); }

    @Override
    public void read(long offset, ByteBuffer dst) throws ImageException {
        next.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws ImageException {
        long length = src.remaining();
        pass(length);
        try {
            next.write(offset, src);
        } finally {
            dirty.markRange(offset, length);   // mark AFTER the write: a pass that already copied the old
        }                                      // bytes sees the granule dirty again (also on partial failure)
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException {
        pass(length);
        try {
            next.writeZeroes(offset, length, mayUnmap);
        } finally {
            dirty.markRange(offset, length);
        }
    }

    @Override
    public void trim(long offset, long length) throws ImageException {
        pass(length);
        try {
            next.trim(offset, length);
        } finally {
            dirty.markRange(offset, length);
        }
    }

    @Override public void flush() throws ImageException { next.flush(); }
    @Override public void startWriteback() throws ImageException { next.startWriteback(); }

    @Override
    public List<Extent> extents(long offset, long length) throws ImageException {
        return next.extents(offset, length);
    }

    @Override public void close() throws ImageException { next.close(); }
}
