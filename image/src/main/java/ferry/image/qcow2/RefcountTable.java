package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Host cluster reference counts (qcow2.txt, "Host cluster management") with 16-bit entries
 * (refcount_order 4), and the allocator built on them. A cluster is free when its refcount is 0,
 * including every cluster of a range whose refcount block is not allocated yet.
 *
 * <p>Every change is written through to the file at once (never cached dirty), in the order
 * docs/qcow2.md gives: a new refcount block is written (counting itself) and synced before the table
 * entry that points at it; a grown refcount table is written and synced before the header points at
 * it. The caller syncs after {@link #allocate} and before anything refers to the cluster, and syncs
 * the change that drops a reference before calling {@link #release}.
 *
 * <p>Threads: only the thread holding {@link Qcow2Image}'s write lock.
 */
final class RefcountTable {
    /** Refcount blocks kept in memory: 4 MiB, i.e. 64 blocks of 64 KiB covering 128 TiB of image file. */
    static final long BLOCK_CACHE_BYTES = 4L * 1024 * 1024;
    static final int REFCOUNT_BYTES = 2, MAX_REFCOUNT = 0xffff;

    private final HostFile file;
    private final int clusterBits;
    private final int clusterSize;
    private final int entriesPerBlock;
    private long tableOffset;
    private int tableClusters;
    private long[] table;
    private final Map<Long, ByteBuffer> blocks;
    /** No cluster below this index is free (a lower bound for the next search). */
    private long freeHint;

    private RefcountTable(HostFile file, int clusterBits, long tableOffset, int tableClusters, long[] table) {
        this.file = file;
        this.clusterBits = clusterBits;
        this.clusterSize = 1 << clusterBits;
        this.entriesPerBlock = clusterSize / REFCOUNT_BYTES;
        this.tableOffset = tableOffset;
        this.tableClusters = tableClusters;
        this.table = table;
        int capacity = (int) Math.max(4, BLOCK_CACHE_BYTES / clusterSize);
        this.blocks = new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, ByteBuffer> eldest) {
                return size() > capacity;
            }
        };
    }

    static RefcountTable load(HostFile file, Qcow2Header header) throws ImageException {
        int clusterSize = header.clusterSize();
        ByteBuffer raw = ByteBuffer.allocate(header.refcountTableClusters() * clusterSize).order(ByteOrder.BIG_ENDIAN);
        file.read(header.refcountTableOffset(), raw);
        long[] table = new long[raw.capacity() / 8];
        for (int i = 0; i < table.length; i++) {
            table[i] = raw.getLong(i * 8);
            if ((table[i] & (clusterSize - 1)) != 0 || table[i] < 0) {
                throw new ImageException(Kind.CORRUPT, "open qcow2 failed: path=" + file.path()
                        + ": refcount table entry " + i + " is not cluster aligned: 0x" + Long.toHexString(table[i]));
            }
        }
        return new RefcountTable(file, header.clusterBits(), header.refcountTableOffset(),
                header.refcountTableClusters(), table);
    }

    int entriesPerBlock() {
        return entriesPerBlock;
    }

    long tableOffset() {
        return tableOffset;
    }

    int tableClusters() {
        return tableClusters;
    }

    /** Clusters whose refcounts the current table can describe. */
    long coveredClusters() {
        return (long) table.length * entriesPerBlock;
    }

    int refcount(long clusterIndex) throws ImageException {
        int tableIndex = (int) (clusterIndex / entriesPerBlock);
        if (tableIndex >= table.length || table[tableIndex] == 0) {
            return 0;
        }
        return block(table[tableIndex]).getShort((int) (clusterIndex % entriesPerBlock) * REFCOUNT_BYTES) & 0xffff;
    }

    /**
     * Finds a free cluster, sets its refcount to 1 (writing a new refcount block or a larger refcount
     * table first if needed) and returns its host offset. The caller syncs before referring to it.
     */
    long allocate() throws ImageException {
        long index = findFree(freeHint);
        if (index < 0) {
            grow();
            index = findFree(freeHint);
        }
        ensureBlock(index);
        set(index, 1);
        freeHint = index + 1;
        return index << clusterBits;
    }

    /**
     * Drops one reference from every cluster touched by {@code [hostOffset, hostOffset + length)}; a
     * cluster reaching 0 is free for reuse. The caller has already synced the change that removed the
     * reference, so a crash can at worst leak the cluster.
     */
    void release(long hostOffset, long length) throws ImageException {
        for (long c = hostOffset >> clusterBits; c <= (hostOffset + length - 1) >> clusterBits; c++) {
            int value = refcount(c);
            if (value == 0) {
                throw new ImageException(Kind.CORRUPT, "release failed: path=" + file.path() + " cluster=0x"
                        + Long.toHexString(c << clusterBits) + ": refcount is already 0");
            }
            set(c, value - 1);
            if (value == 1 && c < freeHint) {
                freeHint = c;
            }
        }
    }

    /** The first free cluster index at or after {@code from}, or -1 when the table covers none. */
    private long findFree(long from) throws ImageException {
        long index = from;
        while (index < coveredClusters()) {
            int tableIndex = (int) (index / entriesPerBlock);
            if (table[tableIndex] == 0) {
                return index;
            }
            ByteBuffer block = block(table[tableIndex]);
            for (int i = (int) (index % entriesPerBlock); i < entriesPerBlock; i++) {
                if (block.getShort(i * REFCOUNT_BYTES) == 0) {
                    return (long) tableIndex * entriesPerBlock + i;
                }
            }
            index = (long) (tableIndex + 1) * entriesPerBlock;
        }
        return -1;
    }

    /**
     * Makes sure the refcount block covering {@code clusterIndex} exists. A new block is placed inside
     * the range it covers (every cluster there is free, since no block counted them), counts itself,
     * and is synced before the table entry pointing at it is written.
     */
    private void ensureBlock(long clusterIndex) throws ImageException {
        int tableIndex = (int) (clusterIndex / entriesPerBlock);
        if (table[tableIndex] != 0) {
            return;
        }
        long first = (long) tableIndex * entriesPerBlock;
        long blockCluster = first == clusterIndex ? first + 1 : first;
        ByteBuffer block = ByteBuffer.allocate(clusterSize).order(ByteOrder.BIG_ENDIAN);
        block.putShort((int) (blockCluster - first) * REFCOUNT_BYTES, (short) 1);
        long blockOffset = blockCluster << clusterBits;
        file.write(blockOffset, block.duplicate());
        file.sync();
        blocks.put(blockOffset, block);
        writeTableEntry(tableIndex, blockOffset);
    }

    /**
     * Replaces the refcount table by one at least twice as large, placed after the clusters the old
     * one covers, together with the refcount blocks that count the new table and themselves. Order:
     * new blocks and table written and synced, then the header switched to the new table and synced,
     * then the old table's clusters released. A crash before the header write leaves the new clusters
     * unreferenced; after it, at worst the old table leaks.
     */
    private void grow() throws ImageException {
        int oldEntries = table.length;
        long start = coveredClusters();
        int newClusters = tableClusters;
        int newBlocks = 0;
        for (int round = 0; round < 64; round++) {
            long last = start + newClusters + newBlocks - 1;
            int blocksNeeded = (int) (last / entriesPerBlock) - oldEntries + 1;
            long entriesNeeded = last / entriesPerBlock + 1;
            int clustersNeeded = (int) Math.max(2L * tableClusters, (entriesNeeded * 8 + clusterSize - 1) / clusterSize);
            if (blocksNeeded == newBlocks && clustersNeeded == newClusters) {
                break;
            }
            newBlocks = blocksNeeded;
            newClusters = clustersNeeded;
        }
        if ((long) newClusters * clusterSize > Qcow2Header.MAX_REFCOUNT_TABLE_BYTES) {
            throw new ImageException(Kind.NO_SPACE, "allocate failed: path=" + file.path()
                    + ": refcount table would exceed QEMU's limit of 8 MiB (clusters=" + newClusters + ")");
        }
        long[] newTable = java.util.Arrays.copyOf(table, newClusters * clusterSize / 8);
        long end = start + newClusters + newBlocks;
        for (int j = 0; j < newBlocks; j++) {
            int blockIndex = oldEntries + j;
            long blockOffset = (start + newClusters + j) << clusterBits;
            ByteBuffer block = ByteBuffer.allocate(clusterSize).order(ByteOrder.BIG_ENDIAN);
            long first = (long) blockIndex * entriesPerBlock;
            for (long c = Math.max(first, start); c < Math.min(end, first + entriesPerBlock); c++) {
                block.putShort((int) (c - first) * REFCOUNT_BYTES, (short) 1);
            }
            file.write(blockOffset, block.duplicate());
            blocks.put(blockOffset, block);
            newTable[blockIndex] = blockOffset;
        }
        ByteBuffer raw = ByteBuffer.allocate(newClusters * clusterSize).order(ByteOrder.BIG_ENDIAN);
        for (int i = 0; i < newTable.length; i++) {
            raw.putLong(i * 8, newTable[i]);
        }
        long newOffset = start << clusterBits;
        file.write(newOffset, raw);
        file.sync();
        ByteBuffer fields = ByteBuffer.allocate(12).order(ByteOrder.BIG_ENDIAN).putLong(0, newOffset)
                .putInt(8, newClusters);
        file.write(Qcow2Header.REFCOUNT_TABLE_OFFSET_OFFSET, fields);
        file.sync();
        long oldOffset = tableOffset;
        int oldClusters = tableClusters;
        table = newTable;
        tableOffset = newOffset;
        tableClusters = newClusters;
        release(oldOffset, (long) oldClusters * clusterSize);
    }

    private void set(long clusterIndex, int value) throws ImageException {
        int tableIndex = (int) (clusterIndex / entriesPerBlock);
        long blockOffset = table[tableIndex];
        int at = (int) (clusterIndex % entriesPerBlock) * REFCOUNT_BYTES;
        block(blockOffset).putShort(at, (short) value);
        file.write(blockOffset + at, ByteBuffer.allocate(REFCOUNT_BYTES).putShort(0, (short) value));
    }

    private void writeTableEntry(int tableIndex, long blockOffset) throws ImageException {
        table[tableIndex] = blockOffset;
        file.write(tableOffset + tableIndex * 8L, ByteBuffer.allocate(8).putLong(0, blockOffset));
    }

    private ByteBuffer block(long blockOffset) throws ImageException {
        ByteBuffer block = blocks.get(blockOffset);
        if (block == null) {
            block = ByteBuffer.allocate(clusterSize).order(ByteOrder.BIG_ENDIAN);
            file.read(blockOffset, block);
            block.clear();
            blocks.put(blockOffset, block);
        }
        return block;
    }
}
