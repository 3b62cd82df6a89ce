package ferry.image.raw;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import ferry.linux.Errno;
import ferry.linux.NativeFile;
import ferry.linux.NativeIoException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A raw disk image: guest byte {@code n} is file byte {@code n}. Holes in the (sparse) file are the
 * image's unallocated ranges, found with {@code SEEK_DATA}/{@code SEEK_HOLE}.
 *
 * <ul>
 *   <li>All I/O is positional on one shared descriptor ({@link NativeFile}), so concurrent calls need no lock.</li>
 *   <li>Every request is validated in full (bounds, read-only) before the file is touched.</li>
 *   <li>{@code writeZeroes(mayUnmap=true)} and {@code trim} punch holes (size kept; the kernel zeroes
 *       unaligned edges). {@code writeZeroes(mayUnmap=false)} uses {@code FALLOC_FL_ZERO_RANGE} and
 *       writes zeroes where the filesystem does not support it.</li>
 *   <li>The size is fixed when the image is opened: the file is not resized behind our back.</li>
 * </ul>
 *
 * <p>Threads: any thread; all methods may be called concurrently.
 */
public final class RawImage implements BlockImage {
    /** Extents returned per call at most; callers ask again from the last end (BlockImage#extents). */
    static final int MAX_EXTENTS_PER_CALL = 1024;
    private static final int ZERO_CHUNK = 1024 * 1024;

    private final NativeFile file;
    private final Path path;
    private final long size;
    private final boolean readOnly;

    private RawImage(NativeFile file, long size) {
        this.file = file;
        this.path = file.path();
        this.size = size;
        this.readOnly = file.readOnly();
    }

    /** Opens an existing raw file; its current length is the image size. */
    public static RawImage open(Path path, boolean readOnly) throws ImageException {
        NativeFile file;
        try {
            file = NativeFile.open(path, readOnly);
        } catch (NativeIoException e) {
            throw failure("open", "path=" + path, e);
        }
        try {
            return new RawImage(file, file.size());
        } catch (NativeIoException e) {
            ImageException failure = failure("open", "path=" + path, e);
            closeAfterFailure(file, failure);
            throw failure;
        }
    }

    /** Creates a new sparse raw file of {@code size} bytes; refuses to overwrite an existing file. */
    public static RawImage create(Path path, long size) throws ImageException {
        if (size < 0) {
            throw new ImageException(Kind.OUT_OF_BOUNDS, "create failed: path=" + path + " size=" + size + ": negative size");
        }
        NativeFile file;
        try {
            file = NativeFile.createNew(path, 0644);
        } catch (NativeIoException e) {
            throw failure("create", "path=" + path + " size=" + size, e);
        }
        try {
            file.truncate(size);
            return new RawImage(file, size);
        } catch (NativeIoException e) {
            ImageException failure = failure("create", "path=" + path + " size=" + size, e);
            closeAfterFailure(file, failure);
            try {
                java.nio.file.Files.deleteIfExists(path);   // made by createNew above: ours; a size the file system
            } catch (java.io.IOException removal) {         // refuses (EFBIG) must not leave an empty file behind
                failure.addSuppressed(removal);
            }
            throw failure;
        }
    }

    private static void closeAfterFailure(NativeFile file, ImageException failure) {
        try {
            file.close();
        } catch (NativeIoException e) {
            failure.addSuppressed(e);
        }
    }

    public Path path() {
        return path;
    }

    @Override public long size() { return size; }
    @Override public boolean readOnly() { return readOnly; }
    @Override public String describe() { return "raw " + path; }
    @Override public String format() { return "raw"; }

    @Override
    public void read(long offset, ByteBuffer dst) throws ImageException {
        int length = dst.remaining();
        checkRange("read", offset, length);
        try {
            long got = file.read(offset, dst);
            if (got < length) {
                // the file was shortened behind us: read past its end as zeroes, as QEMU's file driver does
                while (dst.hasRemaining()) {
                    dst.put((byte) 0);
                }
            }
        } catch (NativeIoException e) {
            throw failure("read", detail(offset, length), e);
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws ImageException {
        int length = src.remaining();
        checkWritable("write", offset, length);
        try {
            file.write(offset, src);
        } catch (NativeIoException e) {
            throw failure("write", detail(offset, length), e);
        }
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException {
        checkWritable("write zeroes", offset, length);
        if (length == 0) {
            return;
        }
        if (mayUnmap && tryFallocate(NativeFile.FALLOC_FL_PUNCH_HOLE, "write zeroes", offset, length)) {
            return;
        }
        if (tryFallocate(NativeFile.FALLOC_FL_ZERO_RANGE, "write zeroes", offset, length)) {
            return;
        }
        writeZeroBytes(offset, length);
    }

    @Override
    public void trim(long offset, long length) throws ImageException {
        checkWritable("trim", offset, length);
        if (length == 0) {
            return;
        }
        // Ferry promises trimmed ranges read as zeroes, so where punching is unsupported, zero instead
        if (!tryFallocate(NativeFile.FALLOC_FL_PUNCH_HOLE, "trim", offset, length)
                && !tryFallocate(NativeFile.FALLOC_FL_ZERO_RANGE, "trim", offset, length)) {
            writeZeroBytes(offset, length);
        }
    }

    /** Returns false when the filesystem does not support the mode (EOPNOTSUPP), so the caller falls back. */
    private boolean tryFallocate(int mode, String what, long offset, long length) throws ImageException {
        try {
            file.fallocate(mode | NativeFile.FALLOC_FL_KEEP_SIZE, offset, length);
            return true;
        } catch (NativeIoException e) {
            if (e.errno().equals(Errno.EOPNOTSUPP)) {
                return false;
            }
            throw failure(what, detail(offset, length), e);
        }
    }

    private void writeZeroBytes(long offset, long length) throws ImageException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment zeroes = arena.allocate(Math.min(length, ZERO_CHUNK));   // allocate() zero-fills
            for (long done = 0; done < length; ) {
                long chunk = Math.min(zeroes.byteSize(), length - done);
                file.write(offset + done, zeroes.asSlice(0, chunk));
                done += chunk;
            }
        } catch (NativeIoException e) {
            throw failure("write zeroes", detail(offset, length), e);
        }
    }

    @Override
    public void flush() throws ImageException {
        try {
            file.dataSync();
        } catch (NativeIoException e) {
            throw failure("flush", "path=" + path, e);
        }
    }

    @Override
    public void startWriteback() throws ImageException {
        try {
            file.startWriteback();
        } catch (NativeIoException e) {
            throw failure("writeback", "path=" + path, e);
        }
    }

    @Override
    public List<Extent> extents(long offset, long length) throws ImageException {
        checkRange("extents", offset, length);
        List<Extent> extents = new ArrayList<>();
        long end = offset + length;
        long position = offset;
        try {
            while (position < end && extents.size() < MAX_EXTENTS_PER_CALL) {
                long data = file.seekData(position);
                if (data == NativeFile.NO_MORE || data >= end) {
                    add(extents, position, end, Extent.Type.HOLE);
                    break;
                }
                if (data > position) {
                    add(extents, position, data, Extent.Type.HOLE);
                    position = data;
                    continue;
                }
                long hole = file.seekHole(position);
                // NO_MORE or no progress: the file changed between the two seeks; report data, a safe answer
                long dataEnd = hole == NativeFile.NO_MORE || hole <= position ? end : Math.min(hole, end);
                add(extents, position, dataEnd, Extent.Type.DATA);
                position = dataEnd;
            }
        } catch (NativeIoException e) {
            if (e.errno().equals(Errno.EINVAL) || e.errno().equals(Errno.EOPNOTSUPP)) {
                // no SEEK_DATA support on this filesystem: everything counts as data
                return List.of(new Extent(offset, length, Extent.Type.DATA));
            }
            throw failure("extents", detail(offset, length), e);
        }
        return extents;
    }

    /** Appends {@code [start, end)}, merging with the previous extent of the same type. */
    private static void add(List<Extent> extents, long start, long end, Extent.Type type) {
        if (!extents.isEmpty()) {
            Extent last = extents.getLast();
            if (last.type() == type && last.end() == start) {
                extents.set(extents.size() - 1, new Extent(last.offset(), end - last.offset(), type));
                return;
            }
        }
        extents.add(new Extent(start, end - start, type));
    }

    @Override
    public void close() throws ImageException {
        try {
            file.close();
        } catch (NativeIoException e) {
            throw failure("close", "path=" + path, e);
        }
    }

    private void checkWritable(String what, long offset, long length) throws ImageException {
        if (readOnly) {
            throw new ImageException(Kind.READ_ONLY, what + " failed: " + detail(offset, length) + ": image is read-only");
        }
        checkRange(what, offset, length);
    }

    private void checkRange(String what, long offset, long length) throws ImageException {
        if (offset < 0 || length < 0 || offset > size || length > size - offset) {
            throw new ImageException(Kind.OUT_OF_BOUNDS,
                    what + " failed: " + detail(offset, length) + ": range outside image size=" + size);
        }
    }

    private String detail(long offset, long length) {
        return "path=" + path + " offset=0x" + Long.toHexString(offset) + " length=" + length;
    }

    private static ImageException failure(String what, String detail, NativeIoException cause) {
        Errno errno = cause.errno();
        Kind kind;
        if (errno.equals(Errno.ENOSPC) || errno.equals(Errno.EDQUOT)) {
            kind = Kind.NO_SPACE;
        } else if (errno.equals(Errno.EROFS)) {
            kind = Kind.READ_ONLY;
        } else if (errno.equals(Errno.EFBIG)) {
            kind = Kind.OUT_OF_BOUNDS;
        } else {
            kind = Kind.IO;
        }
        return new ImageException(kind, what + " failed: " + detail + ": " + errno, cause);
    }

    @Override
    public String toString() {
        return describe();
    }
}
