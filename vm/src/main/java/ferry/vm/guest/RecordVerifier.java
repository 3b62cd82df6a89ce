package ferry.vm.guest;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Optional;

/**
 * Checks a disk written by the demo guest's workload, block by block, the way {@code ferry-disk verify}
 * does inside the guest (guest/README.md): every 4 KiB block must be all zeroes or a valid record whose
 * offset is its own. Runs on the calling thread.
 */
public final class RecordVerifier {
    private static final int CHUNK_BYTES = 1 << 20;

    private RecordVerifier() {}

    @FunctionalInterface
    private interface Reader {
        /** Fills {@code dst} from position to limit with the bytes at {@code offset}. */
        void read(long offset, ByteBuffer dst) throws IOException;
    }

    /** Verifies a raw disk image file. */
    public static VerifyReport verify(Path rawFile) throws IOException {
        try (FileChannel channel = FileChannel.open(rawFile, StandardOpenOption.READ)) {
            return verify(channel.size(), (offset, dst) -> {
                long at = offset;
                while (dst.hasRemaining()) {
                    int n = channel.read(dst, at);
                    if (n < 0) {
                        throw new IOException("verify failed: path=" + rawFile + " offset=" + at + ": unexpected end of file");
                    }
                    at += n;
                }
            });
        }
    }

    /** Verifies any block image (read through its own interface, not its file). */
    public static VerifyReport verify(BlockImage image) throws ImageException {
        try {
            return verify(image.size(), image::read);
        } catch (ImageException e) {
            throw e;
        } catch (IOException e) {
            throw new ImageException(ImageException.Kind.IO, "verify failed: image=" + image.describe() + ": " + e.getMessage(), e);
        }
    }

    private static VerifyReport verify(long size, Reader reader) throws IOException {
        ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES);
        long records = 0;
        long highestSeq = 0;
        long bad = 0;
        String firstError = null;
        long usable = size / GuestRecord.SIZE * GuestRecord.SIZE;
        for (long offset = 0; offset < usable; offset += chunk.limit()) {
            chunk.clear().limit((int) Math.min(CHUNK_BYTES, usable - offset));
            reader.read(offset, chunk);
            for (int at = 0; at < chunk.limit(); at += GuestRecord.SIZE) {
                long blockOffset = offset + at;
                switch (GuestRecord.check(chunk.position(at), blockOffset)) {
                    case GuestRecord.Block.Zero z -> { }
                    case GuestRecord.Block.Valid v -> {
                        records++;
                        highestSeq = Math.max(highestSeq, v.seq());
                    }
                    case GuestRecord.Block.Bad b -> {
                        if (bad++ == 0) {
                            firstError = "offset=" + blockOffset + " reason=" + b.reason();
                        }
                    }
                }
            }
        }
        return new VerifyReport(records, highestSeq, bad, Optional.ofNullable(firstError));
    }
}
