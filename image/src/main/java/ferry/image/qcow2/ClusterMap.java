package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Guest cluster to L2 entry: the active L1 table (kept whole in memory) and the L2 tables (through
 * {@link L2Cache}). Changes are written through at once; callers order them (docs/qcow2.md).
 *
 * <p>Threads: lookups from any thread holding {@link Qcow2Image}'s read or write lock; changes only
 * under its write lock.
 */
final class ClusterMap {
    private final HostFile file;
    private final int clusterBits;
    private final int l2Entries;
    private final long l1Offset;
    private final long[] l1;
    private final L2Cache cache;

    private ClusterMap(HostFile file, int clusterBits, long l1Offset, long[] l1, L2Cache cache) {
        this.file = file;
        this.clusterBits = clusterBits;
        this.l2Entries = (1 << clusterBits) / 8;
        this.l1Offset = l1Offset;
        this.l1 = l1;
        this.cache = cache;
    }

    static ClusterMap load(HostFile file, Qcow2Header header) throws ImageException {
        ByteBuffer raw = ByteBuffer.allocate(header.l1Size() * 8).order(ByteOrder.BIG_ENDIAN);
        file.read(header.l1TableOffset(), raw);
        long[] l1 = new long[header.l1Size()];
        for (int i = 0; i < l1.length; i++) {
            l1[i] = raw.getLong(i * 8);
        }
        return new ClusterMap(file, header.clusterBits(), header.l1TableOffset(), l1,
                new L2Cache(file, header.clusterSize(), L2Cache.DEFAULT_BUDGET_BYTES));
    }

    int l2Entries() {
        return l2Entries;
    }

    L2Cache cache() {
        return cache;
    }

    /** The host offset of the L2 table covering guest cluster {@code guestCluster}, or 0 when there is none. */
    long l2Offset(long guestCluster) throws ImageException {
        int l1Index = (int) (guestCluster / l2Entries);
        if (l1Index >= l1.length) {
            throw new ImageException(Kind.OUT_OF_BOUNDS, "lookup failed: path=" + file.path() + " cluster="
                    + guestCluster + ": beyond the L1 table (l1_size=" + l1.length + ")");
        }
        long offset = L2Entry.hostOffset(l1[l1Index]);
        if ((offset & ((1L << clusterBits) - 1)) != 0) {
            throw new ImageException(Kind.CORRUPT, "lookup failed: path=" + file.path() + " l1_index=" + l1Index
                    + ": L2 table offset 0x" + Long.toHexString(offset) + " is not cluster aligned");
        }
        return offset;
    }

    /** The L2 entry of a guest cluster; 0 (unallocated) when its L2 table does not exist. */
    long entry(long guestCluster) throws ImageException {
        long l2 = l2Offset(guestCluster);
        if (l2 == 0) {
            return 0;
        }
        return cache.table(l2).getLong((int) (guestCluster % l2Entries) * 8);
    }

    /** Writes an L2 entry; the L2 table must exist. */
    void setEntry(long guestCluster, long entry) throws ImageException {
        long l2 = l2Offset(guestCluster);
        if (l2 == 0) {
            throw new IllegalStateException("no L2 table for cluster " + guestCluster);
        }
        int at = (int) (guestCluster % l2Entries) * 8;
        cache.table(l2).putLong(at, entry);
        file.write(l2 + at, ByteBuffer.allocate(8).putLong(0, entry));
    }

    /** Writes a zeroed L2 table into a freshly allocated cluster (not yet referenced by L1). */
    void writeNewTable(long hostOffset) throws ImageException {
        ByteBuffer table = ByteBuffer.allocate(1 << clusterBits).order(ByteOrder.BIG_ENDIAN);
        file.write(hostOffset, table.duplicate());
        cache.put(hostOffset, table);
    }

    /** Points the L1 entry covering {@code guestCluster} at an L2 table (refcount 1, so COPIED). */
    void setL1(long guestCluster, long l2HostOffset) throws ImageException {
        int l1Index = (int) (guestCluster / l2Entries);
        long entry = L2Entry.normal(l2HostOffset);
        file.write(l1Offset + l1Index * 8L, ByteBuffer.allocate(8).putLong(0, entry));
        l1[l1Index] = entry; // after the write: a failed write leaves memory agreeing with the file
    }
}
