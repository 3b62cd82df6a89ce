package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Reads a compressed cluster: raw deflate (zlib without header, QEMU's compression_type 0) starting
 * at an unaligned host offset and ending somewhere in the last of the sectors the L2 entry counts.
 * Decompression stops once a whole cluster has come out.
 */
final class CompressedCluster {
    private CompressedCluster() {}

    static ByteBuffer inflate(HostFile file, long entry, int clusterBits) throws ImageException {
        int clusterSize = 1 << clusterBits;
        long offset = L2Entry.compressedOffset(entry, clusterBits);
        int length = L2Entry.compressedLength(entry, clusterBits);
        ByteBuffer input = ByteBuffer.allocate(length);
        file.read(offset, input);
        input.flip();
        byte[] out = new byte[clusterSize];
        Inflater inflater = new Inflater(true);
        try {
            inflater.setInput(input);
            int produced = 0;
            while (produced < clusterSize) {
                int n = inflater.inflate(out, produced, clusterSize - produced);
                produced += n;
                if (n == 0 && (inflater.finished() || inflater.needsInput() || inflater.needsDictionary())) {
                    break;
                }
            }
            if (produced < clusterSize) {
                throw new ImageException(Kind.CORRUPT, "read compressed cluster failed: path=" + file.path()
                        + " offset=0x" + Long.toHexString(offset) + " length=" + length + ": inflated only "
                        + produced + " of " + clusterSize + " bytes");
            }
        } catch (DataFormatException e) {
            throw new ImageException(Kind.CORRUPT, "read compressed cluster failed: path=" + file.path()
                    + " offset=0x" + Long.toHexString(offset) + " length=" + length + ": " + e.getMessage(), e);
        } finally {
            inflater.end();
        }
        return ByteBuffer.wrap(out);
    }
}
