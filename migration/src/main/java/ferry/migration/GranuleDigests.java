package ferry.migration;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * A CRC32C per granule of one disk, of the last content sent (source) or written (destination).
 * Before the destination VM may resume, both sides compare digests over groups of
 * {@link #GROUP_GRANULES} granule digests: 4 bytes per group, e.g. 1 KiB per GiB at 4 KiB granules.
 * Untouched granules keep 0 on both sides. A mismatch means the copies differ and the switchover
 * is aborted with the source VM resuming.
 *
 * <p>Threads: one writer (the copier or the receiver thread) at a time.
 */
public final class GranuleDigests {
    public static final int GROUP_GRANULES = 1024;

    private final int granuleSize;
    private final long diskSize;
    private final int[] digests;

    public GranuleDigests(long diskSize, int granuleSize) {
        long count = (diskSize + granuleSize - 1) / granuleSize;
        if (count > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("too many granules: size=" + diskSize + " granule=" + granuleSize);
        }
        this.granuleSize = granuleSize;
        this.diskSize = diskSize;
        this.digests = new int[(int) count];
    }

    public int granuleSize() {
        return granuleSize;
    }

    /** Bytes in granule {@code granule} (the last one may be short). */
    public int granuleLength(long granule) {
        return (int) Math.min(granuleSize, diskSize - granule * granuleSize);
    }

    /** Records the content of the granules that {@code data} (position..limit) holds, starting at {@code firstGranule}. */
    public void recordData(long firstGranule, ByteBuffer data) {
        ByteBuffer view = data.duplicate();
        long granule = firstGranule;
        CRC32C crc = new CRC32C();
        while (view.hasRemaining()) {
            int length = Math.min(granuleLength(granule), view.remaining());
            ByteBuffer slice = view.slice(view.position(), length);
            crc.reset();
            crc.update(slice);
            digests[(int) granule] = digestOf((int) crc.getValue(), length);
            view.position(view.position() + length);
            granule++;
        }
    }

    /** Records that {@code [firstGranule, firstGranule + count)} now read as zeroes. */
    public void recordZero(long firstGranule, long count) {
        for (long g = firstGranule; g < firstGranule + count; g++) {
            digests[(int) g] = zeroDigest(granuleLength(g));
        }
    }

    /** The per-group digests sent in DISKS_DONE. */
    public int[] groupDigests() {
        int groups = (digests.length + GROUP_GRANULES - 1) / GROUP_GRANULES;
        int[] out = new int[groups];
        ByteBuffer bytes = ByteBuffer.allocate(GROUP_GRANULES * 4);
        CRC32C crc = new CRC32C();
        for (int g = 0; g < groups; g++) {
            bytes.clear();
            int from = g * GROUP_GRANULES;
            int to = Math.min(digests.length, from + GROUP_GRANULES);
            for (int i = from; i < to; i++) {
                bytes.putInt(digests[i]);
            }
            bytes.flip();
            crc.reset();
            crc.update(bytes);
            out[g] = (int) crc.getValue();
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

    private static int digestOf(int crc, int length) {
        int digest = crc ^ (length * 0x9E3779B1);
        return digest == 0 ? 1 : digest;      // 0 means "never sent"
    }

    private static final int[] ZERO_CRC_CACHE = new int[2];
    private static final int[] ZERO_LENGTH_CACHE = {-1, -1};

    private static int zeroDigest(int length) {
        int slot = length == 4096 ? 0 : 1;
        synchronized (ZERO_CRC_CACHE) {
            if (ZERO_LENGTH_CACHE[slot] != length) {
                CRC32C crc = new CRC32C();
                crc.update(ByteBuffer.allocate(length));
                ZERO_CRC_CACHE[slot] = digestOf((int) crc.getValue(), length);
                ZERO_LENGTH_CACHE[slot] = length;
            }
            return ZERO_CRC_CACHE[slot];
        }
    }
}
