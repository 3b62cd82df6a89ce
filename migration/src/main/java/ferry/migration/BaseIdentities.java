package ferry.migration;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.migration.wire.Frame;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.List;

/**
 * The identity of a base image for incremental migration ({@code -i}): its size and a SHA-256 over
 * its content, so both hosts can check they hold the same base before only the overlay moves.
 *
 * <p>The digest is SHA-256 over the SHA-256 of each 1 MiB chunk of the virtual content. A chunk that
 * lies wholly in unallocated or zero extents is not read: its digest is the constant digest of a
 * zero chunk. So two copies with the same bytes agree whatever their allocation (a sparse copy made
 * with {@code cp --sparse} and a full one), and a mostly empty base is checked quickly.
 */
public final class BaseIdentities {
    static final int CHUNK = 1 << 20;

    private BaseIdentities() {}

    public static Frame.BaseIdentity of(BlockImage base, String fileName) throws ImageException {
        return of(base, fileName, () -> false);
    }

    /**
     * As {@link #of(BlockImage, String)}, but gives up between two chunks once {@code stop} says so
     * (a cancelled migration must not wait for a whole large base to be read).
     */
    public static Frame.BaseIdentity of(BlockImage base, String fileName, java.util.function.BooleanSupplier stop)
            throws ImageException {
        MessageDigest total = sha256();
        MessageDigest chunkDigest = sha256();
        ByteBuffer buffer = ByteBuffer.allocateDirect(CHUNK);
        byte[] zeroChunkDigest = null;
        long size = base.size();
        for (long offset = 0; offset < size; offset += CHUNK) {
            if (stop.getAsBoolean()) {
                throw new ImageException(ImageException.Kind.IO, "hashing stopped: image=" + base.describe() + " offset=" + offset
                        + " (the migration was cancelled or failed)");
            }
            int length = (int) Math.min(CHUNK, size - offset);
            if (readsAsZero(base, offset, length)) {
                if (zeroChunkDigest == null || length != CHUNK) {
                    chunkDigest.reset();
                    chunkDigest.update(new byte[length]);
                    byte[] digest = chunkDigest.digest();
                    if (length == CHUNK) {
                        zeroChunkDigest = digest;
                    }
                    total.update(digest);
                } else {
                    total.update(zeroChunkDigest);
                }
                continue;
            }
            buffer.clear().limit(length);
            base.read(offset, buffer);
            buffer.flip();
            chunkDigest.reset();
            chunkDigest.update(buffer);
            total.update(chunkDigest.digest());
        }
        return new Frame.BaseIdentity(fileName, size, total.digest());
    }

    private static boolean readsAsZero(BlockImage image, long offset, int length) throws ImageException {
        long position = offset;
        long end = offset + length;
        while (position < end) {
            List<Extent> extents = image.extents(position, end - position);
            for (Extent extent : extents) {
                if (!extent.readsAsZero()) {
                    return false;
                }
                position = extent.end();
            }
        }
        return true;
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }
}
