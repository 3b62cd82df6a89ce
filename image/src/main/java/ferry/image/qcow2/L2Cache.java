package ferry.image.qcow2;

import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Design notes
 *
 * <p>What: the L2 tables Ferry has read lately, keyed by their host offset, least recently used
 * first out. Each entry is the whole table (one cluster) as a big-endian buffer; lookups decode the
 * 8-byte entry they need ({@code getLong(index * 8)}), so there is no second copy in another form.
 *
 * <p>Write-through, never write-back: {@link ClusterMap} changes an entry in the cached table and
 * writes the same 8 bytes to the file at once, in the order docs/qcow2.md gives for crash safety.
 * The cache is therefore never dirty: eviction is dropping a reference, a crash loses nothing the file
 * does not already have, and {@code flush()} is a plain fsync. The price is one small pwrite per
 * changed entry, which is cheap next to the data write it follows and the fsync that orders it.
 *
 * <p>Size: a budget in bytes rather than tables, so the cache covers the same amount of guest disk
 * whatever the cluster size. An L2 table of a cluster of {@code c} bytes maps {@code c * c / 8} bytes of
 * guest disk: with the default 64 KiB clusters one table maps 512 MiB, and the 8 MiB default budget
 * (128 tables) maps 64 GiB, enough for a whole migration pass over common disks without re-reading
 * a table. With 2 MiB clusters the floor of 4 tables still maps 2 TiB. With 512 B clusters one table
 * maps only 32 KiB, so the budget (16384 tables) maps 512 MiB.
 *
 * <p>Threads: any caller thread. Lookups come from readers holding {@link Qcow2Image}'s read lock,
 * changes only from the writer holding its write lock; the monitor here only keeps the map itself
 * consistent while several readers load tables at once. A buffer taken out stays valid after it is
 * evicted (eviction does not recycle it), so a reader never sees a table change identity under it.
 */
final class L2Cache {
    static final long DEFAULT_BUDGET_BYTES = 8L * 1024 * 1024;
    static final int MIN_TABLES = 4;

    private final HostFile file;
    private final int clusterSize;
    private final int capacity;
    private final Map<Long, ByteBuffer> tables;
    private long hits, misses;

    L2Cache(HostFile file, int clusterSize, long budgetBytes) {
        this.file = file;
        this.clusterSize = clusterSize;
        this.capacity = (int) Math.max(MIN_TABLES, budgetBytes / clusterSize);
        this.tables = new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, ByteBuffer> eldest) {
                return size() > capacity;
            }
        };
    }

    /** The L2 table at {@code hostOffset}, read from the file on a miss. */
    synchronized ByteBuffer table(long hostOffset) throws ImageException {
        ByteBuffer table = tables.get(hostOffset);
        if (table != null) {
            hits++;
            return table;
        }
        misses++;
        table = ByteBuffer.allocate(clusterSize).order(ByteOrder.BIG_ENDIAN);
        file.read(hostOffset, table);
        table.clear();
        tables.put(hostOffset, table);
        return table;
    }

    /** Installs a table Ferry has just written (a new, zeroed L2 table), saving the read. */
    synchronized void put(long hostOffset, ByteBuffer table) {
        tables.put(hostOffset, table);
    }

    int capacity() {
        return capacity;
    }

    synchronized long hits() {
        return hits;
    }

    synchronized long misses() {
        return misses;
    }
}
