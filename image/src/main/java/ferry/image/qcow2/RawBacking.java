package ferry.image.qcow2;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;

/**
 * A raw file opened read-only as the backing image of a qcow2 overlay: positional reads, nothing
 * else. (Backing images are never written through their overlay.)
 *
 * <p>Threads: any; reads are positional.
 */
final class RawBacking implements BlockImage {
    private final HostFile file;
    private final long size;

    private RawBacking(HostFile file, long size) {
        this.file = file;
        this.size = size;
    }

    static RawBacking open(Path path) throws ImageException {
        HostFile file = HostFile.open(path, true);
        try {
            return new RawBacking(file, file.length());
        } catch (ImageException e) {
            file.close();
            throw e;
        }
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public boolean readOnly() {
        return true;
    }

    @Override
    public String describe() {
        return "raw " + file.path();
    }

    @Override
    public String format() {
        return Backing.RAW;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws ImageException {
        if (offset < 0 || offset + dst.remaining() > size) {
            throw new ImageException(Kind.OUT_OF_BOUNDS, "read failed: path=" + file.path() + " offset=" + offset
                    + " length=" + dst.remaining() + " size=" + size);
        }
        file.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws ImageException {
        throw readOnlyError("write", offset, src.remaining());
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException {
        throw readOnlyError("write zeroes", offset, length);
    }

    @Override
    public void trim(long offset, long length) throws ImageException {
        throw readOnlyError("trim", offset, length);
    }

    private ImageException readOnlyError(String what, long offset, long length) {
        return new ImageException(Kind.READ_ONLY, what + " failed: path=" + file.path() + " offset=" + offset
                + " length=" + length + ": backing image is read-only");
    }

    @Override
    public void flush() {
        // read-only: nothing to make durable
    }

    @Override
    public List<Extent> extents(long offset, long length) throws ImageException {
        if (offset < 0 || length <= 0 || offset + length > size) {
            throw new ImageException(Kind.OUT_OF_BOUNDS, "extents failed: path=" + file.path() + " offset="
                    + offset + " length=" + length + " size=" + size);
        }
        return List.of(new Extent(offset, length, Extent.Type.DATA));
    }

    @Override
    public void close() throws ImageException {
        file.close();
    }
}
