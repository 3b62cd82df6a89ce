package ferry.migration;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * A digest per granule of one disk ({@link GranuleHash}: XXH64 folded to 32 bits), of the last content
 * sent (source) or written (destination).
 * Before the destination VM may resume, both sides compare digests over groups of
 * {@link #GROUP_GRANULES} granule digests: 4 bytes per group, e.g. 1 KiB per GiB at 4 KiB granules.
 * Untouched granules keep 0 on both sides. A mismatch means the copies differ and the switchover
 * is aborted with the source VM resuming.
 *
 * <h2>Design notes</h2>
 * The granule digests live in pages of one group each ({@link #GROUP_GRANULES} ints, 4 KiB), made on
 * the first granule recorded in that group; a group never touched has the digest of 1024 zeroes,
 * computed once. Memory therefore follows the bytes that moved, not the disk's size: a fixed 4 bytes
 * per group for the page table (16 MiB for a 16 TiB disk at 4 KiB granules) plus 4 KiB per group
 * touched (1/1024 of the data sent at 4 KiB granules). A flat {@code int[]} per granule needed 16 GiB
 * for that disk (and could not even index it), and the destination allocated it from the peer's HELLO.
 * {@link #pageBytesInUse()} says what the pages hold now, for the heap budget.
 *
 * <p>For the destination's resume journal ({@link ResumeJournal}) the digests also remember which groups
 * changed since the last {@link #takeChangedPages()}: one bit per group in a {@link BitSet}, which grows
 * to the highest group changed: at most 512 KiB for a 16 TiB disk at 4 KiB granules (4 Mi groups),
 * beside the page table's 16 MiB. A checkpoint then writes only the pages that changed, and
 * {@link #loadPage} puts a journal's pages back without marking them. {@link #touchedGranules()} is kept
 * as a count, so what a destination already holds is known without a scan.
 *
 * <p>Threads: one writer (the copier or the receiver thread) at a time; {@link #takeChangedPages()} is
 * called by that same thread, and the pages it returns are copies that another thread may keep.
 */
public final class GranuleDigests {
    public static final int GROUP_GRANULES = 1024;
    /** Heap per page: one group's granule digests. */
    public static final int PAGE_BYTES = GROUP_GRANULES * Integer.BYTES;

    private final int granuleSize;
    private final long diskSize;
    private final long granules;
    private final int[][] pages;   // pages[group] == null: every granule of the group still 0
    private final BitSet changed = new BitSet();   // groups set since the last takeChangedPages()
    private long pagesInUse;
    private long touched;          // granules whose digest is not 0
    private boolean lastTouched;   // whether the last granule (maybe short) is one of them

    /**
     * A copy of one group's {@link #GROUP_GRANULES} granule digests (0 = untouched): what a checkpoint
     * writes to the resume journal. The array belongs to the page; neither side changes it afterwards.
     */
    public record Page(int group, int[] digests) {
        public Page {
            if (group < 0 || digests.length != GROUP_GRANULES) {
                throw new IllegalArgumentException("bad page: group=" + group + " digests=" + digests.length);
            }
        }
    }

    public GranuleDigests(long diskSize, int granuleSize) {
        if (diskSize < 0 || granuleSize <= 0) {
            throw new IllegalArgumentException("bad disk: size=" + diskSize + " granule=" + granuleSize);
        }
        long count = (diskSize + granuleSize - 1) / granuleSize;
        long groups = groups(diskSize, granuleSize);
        if (groups > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("too many granules: size=" + diskSize + " granule=" + granuleSize);
        }
        this.granuleSize = granuleSize;
        this.diskSize = diskSize;
        this.granules = count;
        this.pages = new int[(int) groups][];
    }

    /** How many groups a disk of {@code diskSize} bytes has at {@code granuleSize}. */
    public static long groups(long diskSize, int granuleSize) {
        long count = (diskSize + granuleSize - 1) / granuleSize;
        return (count + GROUP_GRANULES - 1) / GROUP_GRANULES;
    }

    /** Heap the fixed part takes (the page table and, at most, the change marks), before any granule is recorded. */
    public static long tableBytes(long diskSize, int granuleSize) {
        long groups = groups(diskSize, granuleSize);
        return groups * 8 + 16 + (groups + 63) / 64 * 8;
    }

    /** Heap every page would take if every granule were recorded. */
    public static long allPagesBytes(long diskSize, int granuleSize) {
        return groups(diskSize, granuleSize) * (PAGE_BYTES + 16);
    }

    public int granuleSize() {
        return granuleSize;
    }

    /** How many granules the disk has (the last one may be short). */
    public long granules() {
        return granules;
    }

    /** How many groups, so pages, the disk has. */
    public int groupCount() {
        return pages.length;
    }

    /** Heap the pages take now. */
    public long pageBytesInUse() {
        return pagesInUse * (PAGE_BYTES + 16);
    }

    /** Bytes in granule {@code granule} (the last one may be short). */
    public int granuleLength(long granule) {
        return (int) Math.min(granuleSize, diskSize - granule * granuleSize);
    }

    private void set(long granule, int digest) {
        if (granule < 0 || granule >= granules) {
            throw new IndexOutOfBoundsException("granule " + granule + " of " + granules);
        }
        int group = (int) (granule / GROUP_GRANULES);
        int[] page = pages[group];
        if (page == null) {
            page = new int[GROUP_GRANULES];
            pages[group] = page;
            pagesInUse++;
        }
        int index = (int) (granule % GROUP_GRANULES);
        if (page[index] == 0) {
            touched++;                 // digests are never 0 (digestOf), so a granule is touched once
            lastTouched |= granule == granules - 1;
        }
        page[index] = digest;
        changed.set(group);
    }

    /**
     * Copies of the pages of the groups that changed since the last call, in group order, and forgets
     * the changes: a resume checkpoint writes these to the journal.
     */
    public List<Page> takeChangedPages() {
        List<Page> out = new ArrayList<>(changed.cardinality());
        for (int g = changed.nextSetBit(0); g >= 0; g = changed.nextSetBit(g + 1)) {
            int[] page = pages[g];
            out.add(new Page(g, page == null ? new int[GROUP_GRANULES] : page.clone()));
        }
        changed.clear();
        return out;
    }

    /**
     * Sets a whole group's digests, as a resume journal holds them; not marked changed (the journal
     * already has it). An all-zero page leaves the group untouched (no page). Digests past the last
     * granule must be 0.
     */
    public void loadPage(int group, int[] digests) {
        if (group < 0 || group >= pages.length || digests.length != GROUP_GRANULES) {
            throw new IllegalArgumentException("bad page: group " + group + " of " + pages.length + ", "
                    + digests.length + " digests (" + GROUP_GRANULES + " expected)");
        }
        long first = (long) group * GROUP_GRANULES;
        int inGroup = (int) Math.min(GROUP_GRANULES, granules - first);
        int count = 0;
        for (int i = 0; i < GROUP_GRANULES; i++) {
            if (digests[i] != 0) {
                if (i >= inGroup) {
                    throw new IllegalArgumentException("bad page: group " + group + " has a digest for granule "
                            + (first + i) + ", past the disk's last granule " + (granules - 1));
                }
                count++;
            }
        }
        int[] old = pages[group];
        if (old != null) {
            touched -= Arrays.stream(old).filter(d -> d != 0).count();
            pagesInUse--;
        }
        pages[group] = count == 0 ? null : digests.clone();
        if (count != 0) {
            pagesInUse++;
        }
        touched += count;
        if (first + inGroup == granules) {
            lastTouched = digests[inGroup - 1] != 0;
        }
        changed.clear(group);
    }

    /** How many granules have been recorded (have a digest other than 0). */
    public long touchedGranules() {
        return touched;
    }

    /** The bytes the recorded granules cover: {@link #touchedGranules()} granules, the last one maybe short. */
    public long touchedBytes() {
        long bytes = touched * granuleSize;
        return lastTouched ? bytes - granuleSize + granuleLength(granules - 1) : bytes;
    }

    /** Records the content of the granules that {@code data} (position..limit) holds, starting at {@code firstGranule}. */
    public void recordData(long firstGranule, ByteBuffer data) {
        ByteBuffer view = data.duplicate();
        long granule = firstGranule;
        while (view.hasRemaining()) {
            int length = Math.min(granuleLength(granule), view.remaining());
            ByteBuffer slice = view.slice(view.position(), length);
            set(granule, digestOf(GranuleHash.xxh64(slice)));
            view.position(view.position() + length);
            granule++;
        }
    }

    /** Records that {@code [firstGranule, firstGranule + count)} now read as zeroes. */
    public void recordZero(long firstGranule, long count) {
        for (long g = firstGranule; g < firstGranule + count; g++) {
            set(g, zeroDigest(granuleLength(g)));
        }
    }

    /** The digest {@link #recordData} keeps for one granule holding {@code data} (position..limit). */
    public static int digestOfGranule(ByteBuffer data) {
        return digestOf(GranuleHash.xxh64(data));
    }

    /** The digest recorded for {@code granule}; 0 when it was never recorded. */
    public int digest(long granule) {
        int[] page = pages[(int) (granule / GROUP_GRANULES)];
        return page == null ? 0 : page[(int) (granule % GROUP_GRANULES)];
    }

    /** The first recorded granule at or after {@code from}, or -1 (a resume samples granules the destination holds). */
    public long nextRecorded(long from) {
        for (long granule = Math.max(0, from); granule < granules; ) {
            int group = (int) (granule / GROUP_GRANULES);
            int[] page = pages[group];
            if (page == null) {
                granule = (long) (group + 1) * GROUP_GRANULES;
                continue;
            }
            for (int i = (int) (granule % GROUP_GRANULES); i < GROUP_GRANULES && granule < granules; i++, granule++) {
                if (page[i] != 0) {
                    return granule;
                }
            }
        }
        return -1;
    }

    /** The per-group digests sent in DISKS_DONE. */
    public int[] groupDigests() {
        int groups = pages.length;
        int[] out = new int[groups];
        ByteBuffer bytes = ByteBuffer.allocate(PAGE_BYTES);
        CRC32C crc = new CRC32C();
        int untouched = 0;
        boolean untouchedKnown = false;
        for (int g = 0; g < groups; g++) {
            int inGroup = (int) Math.min(GROUP_GRANULES, granules - (long) g * GROUP_GRANULES);
            int[] page = pages[g];
            if (page == null && inGroup == GROUP_GRANULES && untouchedKnown) {
                out[g] = untouched;
                continue;
            }
            bytes.clear();
            for (int i = 0; i < inGroup; i++) {
                bytes.putInt(page == null ? 0 : page[i]);
            }
            bytes.flip();
            crc.reset();
            crc.update(bytes);
            out[g] = (int) crc.getValue();
            if (page == null && inGroup == GROUP_GRANULES) {
                untouched = out[g];
                untouchedKnown = true;
            }
        }
        return out;
    }

    /** The first group whose digest differs, or -1. */
    public static int firstMismatch(int[] ours, int[] theirs) {
        if (ours.length != theirs.length) {
            return Math.min(ours.length, theirs.length);
        }
        int mismatch = Arrays.mismatch(ours, theirs);
        return mismatch;
    }

    /** Byte range a group covers, for messages. */
    public String describeGroup(int group) {
        long start = (long) group * GROUP_GRANULES * granuleSize;
        long end = Math.min(diskSize, start + (long) GROUP_GRANULES * granuleSize);
        return String.format("bytes 0x%x..0x%x", start, end);
    }

    /** A granule's XXH64 (which covers its length too), folded to 32 bits; never 0, which means "never sent". */
    private static int digestOf(long hash) {
        int digest = (int) (hash ^ (hash >>> 32));
        return digest == 0 ? 1 : digest;
    }

    private static final int[] ZERO_DIGEST_CACHE = new int[2];
    private static final int[] ZERO_LENGTH_CACHE = {-1, -1};

    private static int zeroDigest(int length) {
        int slot = length == 4096 ? 0 : 1;
        synchronized (ZERO_DIGEST_CACHE) {
            if (ZERO_LENGTH_CACHE[slot] != length) {
                ZERO_DIGEST_CACHE[slot] = digestOf(GranuleHash.xxh64(ByteBuffer.allocate(length)));
                ZERO_LENGTH_CACHE[slot] = length;
            }
            return ZERO_DIGEST_CACHE[slot];
        }
    }
}
