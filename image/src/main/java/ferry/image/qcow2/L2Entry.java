package ferry.image.qcow2;

/**
 * Decoding of L1 and L2 table entries (qcow2.txt, "Cluster mapping"). An L2 entry is a cluster
 * descriptor in bits 0-61, bit 62 set for compressed clusters and bit 63 ({@link #COPIED}) set for
 * standard clusters whose refcount is exactly one.
 * <pre>
 *  standard:   | 63 COPIED | 62 = 0 | 56-61 reserved | 9-55 host cluster offset | 1-8 reserved | 0 ZERO (v3) |
 *  compressed: | 63 = 0    | 62 = 1 | x-61 additional 512-byte sectors | 0..x-1 host byte offset |
 *              with x = 62 - (cluster_bits - 8)
 * </pre>
 */
public final class L2Entry {
    private L2Entry() {}

    public static final long COPIED = 1L << 63, COMPRESSED = 1L << 62, ZERO = 1L;
    /** Bits 9-55: the host cluster offset of a standard cluster or an L2 table (L1 entries). */
    public static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    public static final int COMPRESSED_SECTOR_SIZE = 512;

    public enum Kind {
        /** Reads from the backing file, or zeroes without one. */
        UNALLOCATED,
        /** Zero flag set, no host cluster. */
        ZERO_PLAIN,
        /** Zero flag set with a (preallocated) host cluster that holds a reference. */
        ZERO_ALLOCATED,
        /** Data in a host cluster. */
        NORMAL,
        /** Deflate-compressed data, see {@link #compressedOffset} and {@link #compressedLength}. */
        COMPRESSED
    }

    /** The kind of an entry; {@code zeroFlag} is false for version 2 images, where bit 0 means nothing. */
    public static Kind kind(long entry, boolean zeroFlag) {
        if ((entry & COMPRESSED) != 0) {
            return Kind.COMPRESSED;
        }
        boolean zero = zeroFlag && (entry & ZERO) != 0;
        long offset = entry & OFFSET_MASK;
        if (zero) {
            return offset == 0 ? Kind.ZERO_PLAIN : Kind.ZERO_ALLOCATED;
        }
        return offset == 0 ? Kind.UNALLOCATED : Kind.NORMAL;
    }

    public static long hostOffset(long entry) {
        return entry & OFFSET_MASK;
    }

    public static boolean copied(long entry) {
        return (entry & COPIED) != 0;
    }

    /** Bit x where the compressed sector count starts. */
    static int compressedShift(int clusterBits) {
        return 62 - (clusterBits - 8);
    }

    /** Host byte offset where the compressed data starts (not aligned). */
    public static long compressedOffset(long entry, int clusterBits) {
        return entry & ((1L << compressedShift(clusterBits)) - 1);
    }

    /** Number of 512-byte sectors the compressed data touches, counting the one holding its first byte. */
    public static int compressedSectors(long entry, int clusterBits) {
        long mask = (1L << (clusterBits - 8)) - 1;
        return (int) (((entry >>> compressedShift(clusterBits)) & mask) + 1);
    }

    /** Bytes from {@link #compressedOffset} to the end of the last sector: an upper bound of the data. */
    public static int compressedLength(long entry, int clusterBits) {
        long offset = compressedOffset(entry, clusterBits);
        return compressedSectors(entry, clusterBits) * COMPRESSED_SECTOR_SIZE
                - (int) (offset & (COMPRESSED_SECTOR_SIZE - 1));
    }

    /** A standard entry for a host cluster with refcount one. */
    public static long normal(long hostOffset) {
        return hostOffset | COPIED;
    }
}
