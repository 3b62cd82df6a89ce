package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Writes a new, empty version 3 image:
 * <pre>
 *  | header + extensions + backing name | refcount table | refcount blocks | L1 table (zeroes) |
 *  cluster 0                            1                1 + t             1 + t + b
 * </pre>
 * The refcount blocks count exactly these clusters; everything after them is allocated on demand.
 */
final class Qcow2Layout {
    private Qcow2Layout() {}

    static void create(Path path, long size, int clusterSize, Optional<Backing> backing) throws ImageException {
        String where = "create qcow2 failed: path=" + path + " size=" + size + " cluster_size=" + clusterSize + ": ";
        if (Integer.bitCount(clusterSize) != 1 || clusterSize < 1 << Qcow2Header.MIN_CLUSTER_BITS
                || clusterSize > 1 << Qcow2Header.MAX_CLUSTER_BITS) {
            throw new ImageException(Kind.UNSUPPORTED, where + "cluster size must be a power of two from 512 to 2097152");
        }
        if (size < 0 || size % 512 != 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "size must be a non-negative multiple of 512");
        }
        int bits = Integer.numberOfTrailingZeros(clusterSize);
        long l2Coverage = (long) clusterSize * (clusterSize / 8);
        long l1Size = size / l2Coverage + (size % l2Coverage != 0 ? 1 : 0);   // no size + coverage - 1: it wraps near 2^63
        if (l1Size > Qcow2Header.MAX_L1_ENTRIES) {
            throw new ImageException(Kind.UNSUPPORTED, where + "the L1 table would need " + l1Size
                    + " entries, over QEMU's limit of " + Qcow2Header.MAX_L1_ENTRIES + "; use larger clusters");
        }
        long l1Clusters = (l1Size * 8 + clusterSize - 1) / clusterSize;
        long perBlock = clusterSize / RefcountTable.REFCOUNT_BYTES;
        long tableClusters = 1, blocks = 1;
        for (int round = 0; round < 64; round++) {
            long total = 1 + tableClusters + blocks + l1Clusters;
            long b = (total + perBlock - 1) / perBlock;
            long t = (b * 8 + clusterSize - 1) / clusterSize;
            if (b == blocks && t == tableClusters) {
                break;
            }
            blocks = b;
            tableClusters = t;
        }
        long total = 1 + tableClusters + blocks + l1Clusters;
        long tableOffset = clusterSize;
        long l1Offset = (1 + tableClusters + blocks) << bits;
        ByteBuffer header = Qcow2Header.encodeV3(bits, size, (int) l1Size, l1Offset, tableOffset, (int) tableClusters,
                backing);
        if (backing.isPresent() && !Files.exists(BackingChain.resolve(path, backing.get().path()))) {
            throw new ImageException(Kind.IO, where + "backing file " + backing.get().path() + " not found at "
                    + BackingChain.resolve(path, backing.get().path()));
        }
        HostFile file = HostFile.create(path);
        try (file) {
            file.write(0, header);
            ByteBuffer table = ByteBuffer.allocate((int) (tableClusters << bits)).order(ByteOrder.BIG_ENDIAN);
            for (int i = 0; i < blocks; i++) {
                table.putLong(i * 8, (1 + tableClusters + i) << bits);
            }
            file.write(tableOffset, table);
            ByteBuffer counts = ByteBuffer.allocate((int) (blocks << bits)).order(ByteOrder.BIG_ENDIAN);
            for (int c = 0; c < total; c++) {
                counts.putShort(c * RefcountTable.REFCOUNT_BYTES, (short) 1);
            }
            file.write((1 + tableClusters) << bits, counts);
            ByteBuffer zeroes = ByteBuffer.allocate((int) Math.min(l1Clusters << bits, 1 << 20));
            for (long at = 0; at < l1Clusters << bits; at += zeroes.capacity()) {
                zeroes.clear().limit((int) Math.min(zeroes.capacity(), (l1Clusters << bits) - at));
                file.write(l1Offset + at, zeroes);
            }
            file.sync();
        } catch (ImageException e) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException d) {
                e.addSuppressed(d);
            }
            throw e;
        }
    }
}
