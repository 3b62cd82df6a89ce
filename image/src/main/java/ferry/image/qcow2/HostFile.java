package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The image file: positional reads and writes only (safe from several threads at once), each failure
 * turned into an {@link ImageException} that names the path, offset and length.
 */
final class HostFile implements AutoCloseable {
    private final Path path;
    private final FileChannel channel;

    private HostFile(Path path, FileChannel channel) {
        this.path = path;
        this.channel = channel;
    }

    static HostFile open(Path path, boolean readOnly) throws ImageException {
        try {
            FileChannel channel = readOnly ? FileChannel.open(path, StandardOpenOption.READ)
                    : FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
            return new HostFile(path, channel);
        } catch (IOException e) {
            throw new ImageException(Kind.IO, "open failed: path=" + path + ": " + e, e);
        }
    }

    static HostFile create(Path path) throws ImageException {
        try {
            return new HostFile(path, FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE,
                    StandardOpenOption.CREATE_NEW));
        } catch (IOException e) {
            throw new ImageException(Kind.IO, "create failed: path=" + path + ": " + e, e);
        }
    }

    Path path() {
        return path;
    }

    /** Fills {@code dst} from {@code offset}; bytes past the end of the file read as zeroes. */
    void read(long offset, ByteBuffer dst) throws ImageException {
        long at = offset;
        try {
            while (dst.hasRemaining()) {
                int n = channel.read(dst, at);
                if (n < 0) {
                    while (dst.hasRemaining()) {
                        dst.put((byte) 0);
                    }
                    return;
                }
                at += n;
            }
        } catch (IOException e) {
            throw failure("read", offset, dst.remaining(), e);
        }
    }

    void write(long offset, ByteBuffer src) throws ImageException {
        int length = src.remaining();
        long at = offset;
        try {
            while (src.hasRemaining()) {
                at += channel.write(src, at);
            }
        } catch (IOException e) {
            throw failure("write", offset, length, e);
        }
    }

    /** fdatasync: everything written so far is durable when this returns. */
    void sync() throws ImageException {
        try {
            channel.force(false);
        } catch (IOException e) {
            throw new ImageException(Kind.IO, "flush failed: path=" + path + ": " + e, e);
        }
    }

    long length() throws ImageException {
        try {
            return channel.size();
        } catch (IOException e) {
            throw new ImageException(Kind.IO, "stat failed: path=" + path + ": " + e, e);
        }
    }

    private ImageException failure(String what, long offset, long length, IOException e) {
        String message = String.valueOf(e.getMessage());
        Kind kind = message.contains("No space left") || message.contains("Disk quota") ? Kind.NO_SPACE : Kind.IO;
        return new ImageException(kind, what + " failed: path=" + path + " offset=0x" + Long.toHexString(offset)
                + " length=" + length + ": " + e, e);
    }

    @Override
    public void close() throws ImageException {
        try {
            channel.close();
        } catch (IOException e) {
            throw new ImageException(Kind.IO, "close failed: path=" + path + ": " + e, e);
        }
    }
}
