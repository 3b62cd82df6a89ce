package ferry.nbd;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

/** Test-only in-memory image: 4 KiB blocks are DATA once written, HOLE after trim or zeroing with unmap. */
final class MemoryImage implements BlockImage {
    static final int BLOCK = 4096;
    private final byte[] bytes;
    private final BitSet allocated = new BitSet();
    private final boolean readOnly;
    int flushes;
    /** Names of the threads that ran write(): shows whether the reader or a worker served a request. */
    final java.util.Set<String> writerThreads = java.util.concurrent.ConcurrentHashMap.newKeySet();

    MemoryImage(int size, boolean readOnly) {
        this.bytes = new byte[size];
        this.readOnly = readOnly;
    }

    @Override public long size() { return bytes.length; }
    @Override public boolean readOnly() { return readOnly; }
    @Override public String describe() { return "memory " + bytes.length; }
    @Override public String format() { return "raw"; }

    @Override
    public synchronized void read(long offset, ByteBuffer dst) throws ImageException {
        check(offset, dst.remaining());
        dst.put(bytes, (int) offset, dst.remaining());
    }

    @Override
    public synchronized void write(long offset, ByteBuffer src) throws ImageException {
        check(offset, src.remaining());
        writable();
        writerThreads.add(Thread.currentThread().getName());
        int length = src.remaining();
        src.get(bytes, (int) offset, length);
        if (length > 0) {
            allocated.set((int) (offset / BLOCK), (int) ((offset + length + BLOCK - 1) / BLOCK));
        }
    }

    @Override
    public synchronized void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException {
        check(offset, length);
        writable();
        java.util.Arrays.fill(bytes, (int) offset, (int) (offset + length), (byte) 0);
        if (mayUnmap) {
            allocated.clear((int) ((offset + BLOCK - 1) / BLOCK), (int) ((offset + length) / BLOCK));
        }
    }

    @Override
    public void trim(long offset, long length) throws ImageException {
        writeZeroes(offset, length, true);
    }

    @Override
    public synchronized void flush() {
        flushes++;
    }

    @Override
    public synchronized List<Extent> extents(long offset, long length) throws ImageException {
        check(offset, length);
        List<Extent> out = new ArrayList<>();
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            boolean data = allocated.get((int) (pos / BLOCK));
            long next = Math.min(end, ((pos / BLOCK) + 1) * BLOCK);
            while (next < end && allocated.get((int) (next / BLOCK)) == data) {
                next = Math.min(end, next + BLOCK);
            }
            out.add(new Extent(pos, next - pos, data ? Extent.Type.DATA : Extent.Type.HOLE));
            pos = next;
        }
        return out;
    }

    synchronized byte[] snapshot() {
        return bytes.clone();
    }

    @Override
    public void close() {}

    private void check(long offset, long length) throws ImageException {
        if (offset < 0 || length < 0 || offset + length > bytes.length) {
            throw new ImageException(ImageException.Kind.OUT_OF_BOUNDS, "out of bounds: offset=" + offset + " length=" + length);
        }
    }

    private void writable() throws ImageException {
        if (readOnly) {
            throw new ImageException(ImageException.Kind.READ_ONLY, "read-only memory image");
        }
    }
}
