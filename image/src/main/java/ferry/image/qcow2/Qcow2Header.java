package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Optional;

/**
 * The qcow2 file header and the header extensions Ferry reads, big-endian. Layout and meaning of every
 * field: QEMU's {@code docs/interop/qcow2.txt} (https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.txt);
 * which parts Ferry implements: docs/qcow2.md.
 * <pre>
 *  | magic "QFI\xfb" u32 | version u32 | backing_file_offset u64 | backing_file_size u32 | cluster_bits u32 |
 *  0                     4             8                         16                      20                 24
 *  | size u64 | crypt_method u32 | l1_size u32 | l1_table_offset u64 | refcount_table_offset u64 |
 *  24         32                 36            40                    48                          56
 *  | refcount_table_clusters u32 | nb_snapshots u32 | snapshots_offset u64 |            (v2 ends at 72)
 *  56                            60                 64                     72
 *  | incompatible_features u64 | compatible_features u64 | autoclear_features u64 | refcount_order u32 |
 *  72                          80                        88                       96                   100
 *  | header_length u32 | [compression_type u8 at 104 when header_length > 104] | header extensions ...
 *  100                 104
 * </pre>
 * A header extension is {@code | type u32 | length u32 | data, padded to a multiple of 8 |}; type 0 ends
 * the list. The backing file name follows the extensions inside the first cluster.
 */
public record Qcow2Header(
        int version,
        long backingFileOffset,
        int backingFileSize,
        int clusterBits,
        long size,
        int cryptMethod,
        int l1Size,
        long l1TableOffset,
        long refcountTableOffset,
        int refcountTableClusters,
        int nbSnapshots,
        long snapshotsOffset,
        long incompatibleFeatures,
        long compatibleFeatures,
        long autoclearFeatures,
        int refcountOrder,
        int headerLength,
        int compressionType,
        Optional<String> backingFile,
        Optional<String> backingFormat,
        boolean hasExternalDataFileExtension,
        FeatureNames featureNames) {

    public static final int MAGIC = 0x514649fb; // "QFI\xfb"
    public static final int MAGIC_OFFSET = 0, VERSION_OFFSET = 4, BACKING_FILE_OFFSET_OFFSET = 8,
            BACKING_FILE_SIZE_OFFSET = 16, CLUSTER_BITS_OFFSET = 20, SIZE_OFFSET = 24, CRYPT_METHOD_OFFSET = 32,
            L1_SIZE_OFFSET = 36, L1_TABLE_OFFSET_OFFSET = 40, REFCOUNT_TABLE_OFFSET_OFFSET = 48,
            REFCOUNT_TABLE_CLUSTERS_OFFSET = 56, NB_SNAPSHOTS_OFFSET = 60, SNAPSHOTS_OFFSET_OFFSET = 64,
            INCOMPATIBLE_FEATURES_OFFSET = 72, COMPATIBLE_FEATURES_OFFSET = 80, AUTOCLEAR_FEATURES_OFFSET = 88,
            REFCOUNT_ORDER_OFFSET = 96, HEADER_LENGTH_OFFSET = 100, COMPRESSION_TYPE_OFFSET = 104;
    public static final int V2_HEADER_LENGTH = 72, V3_HEADER_LENGTH = 104;

    public static final long INCOMPAT_DIRTY = 1L, INCOMPAT_CORRUPT = 1L << 1, INCOMPAT_DATA_FILE = 1L << 2,
            INCOMPAT_COMPRESSION = 1L << 3, INCOMPAT_EXTL2 = 1L << 4;
    /** Every incompatible bit the spec defines; any other bit makes the image unreadable for Ferry. */
    public static final long INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
    public static final long COMPAT_LAZY_REFCOUNTS = 1L;

    public static final int EXT_END = 0x00000000, EXT_BACKING_FORMAT = 0xe2792aca, EXT_FEATURE_NAMES = 0x6803f857,
            EXT_BITMAPS = 0x23852875, EXT_CRYPTO = 0x0537be77, EXT_DATA_FILE = 0x44415441;

    public static final int MIN_CLUSTER_BITS = 9, MAX_CLUSTER_BITS = 21, MAX_BACKING_FILE_SIZE = 1023;
    /** QEMU's implementation limit on the L1 table: 32 MiB, i.e. 4 Mi entries. */
    public static final int MAX_L1_ENTRIES = 32 * 1024 * 1024 / 8;
    /** QEMU's implementation limit on the refcount table: 8 MiB. */
    public static final long MAX_REFCOUNT_TABLE_BYTES = 8L * 1024 * 1024;

    public int clusterSize() {
        return 1 << clusterBits;
    }

    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /**
     * Parses the first cluster of an image (or at least its first {@code 1 << cluster_bits} bytes, as
     * far as the file has them). Checks everything that would make later offsets meaningless; feature
     * policy (what Ferry refuses) is {@link Qcow2Image}'s.
     */
    public static Qcow2Header parse(ByteBuffer firstCluster, String path) throws ImageException {
        ByteBuffer b = firstCluster.duplicate().order(ByteOrder.BIG_ENDIAN);
        int limit = b.limit();
        if (limit < V2_HEADER_LENGTH || b.getInt(MAGIC_OFFSET) != MAGIC) {
            throw invalid(path, "no qcow2 magic");
        }
        int version = b.getInt(VERSION_OFFSET);
        if (version != 2 && version != 3) {
            throw new ImageException(Kind.UNSUPPORTED, "open qcow2 failed: path=" + path + " version=" + version
                    + ": only versions 2 and 3 exist");
        }
        int clusterBits = b.getInt(CLUSTER_BITS_OFFSET);
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
            throw new ImageException(Kind.UNSUPPORTED, "open qcow2 failed: path=" + path + " cluster_bits="
                    + clusterBits + ": cluster size must be 512 B .. 2 MiB");
        }
        int clusterSize = 1 << clusterBits;
        long incompatible = 0, compatible = 0, autoclear = 0;
        int refcountOrder = 4, headerLength = V2_HEADER_LENGTH, compressionType = 0;
        if (version == 3) {
            if (limit < V3_HEADER_LENGTH) {
                throw invalid(path, "version 3 header truncated");
            }
            incompatible = b.getLong(INCOMPATIBLE_FEATURES_OFFSET);
            compatible = b.getLong(COMPATIBLE_FEATURES_OFFSET);
            autoclear = b.getLong(AUTOCLEAR_FEATURES_OFFSET);
            refcountOrder = b.getInt(REFCOUNT_ORDER_OFFSET);
            headerLength = b.getInt(HEADER_LENGTH_OFFSET);
            if (headerLength < V3_HEADER_LENGTH || headerLength % 8 != 0 || headerLength > clusterSize
                    || headerLength > limit) {
                throw invalid(path, "header_length=" + headerLength);
            }
            if (refcountOrder > 6 || refcountOrder < 0) {
                throw invalid(path, "refcount_order=" + refcountOrder);
            }
            if (headerLength > COMPRESSION_TYPE_OFFSET) {
                compressionType = b.get(COMPRESSION_TYPE_OFFSET) & 0xff;
            }
        }
        long size = b.getLong(SIZE_OFFSET);
        if (size < 0) {
            throw invalid(path, "size=" + size);
        }
        int l1Size = b.getInt(L1_SIZE_OFFSET);
        long l1Offset = b.getLong(L1_TABLE_OFFSET_OFFSET);
        long refcountTableOffset = b.getLong(REFCOUNT_TABLE_OFFSET_OFFSET);
        int refcountTableClusters = b.getInt(REFCOUNT_TABLE_CLUSTERS_OFFSET);
        long l2Coverage = (long) clusterSize * (clusterSize / 8);
        long neededL1 = size / l2Coverage + (size % l2Coverage != 0 ? 1 : 0);   // no size + coverage - 1: it wraps near 2^63
        if (l1Size < 0 || l1Size > MAX_L1_ENTRIES || l1Size < neededL1) {
            throw invalid(path, "l1_size=" + l1Size + " needed=" + neededL1);
        }
        if (l1Offset % clusterSize != 0 || l1Offset < 0 || (l1Size > 0 && l1Offset == 0)) {
            throw invalid(path, "l1_table_offset=0x" + Long.toHexString(l1Offset));
        }
        if (refcountTableOffset % clusterSize != 0 || refcountTableOffset <= 0 || refcountTableClusters <= 0
                || (long) refcountTableClusters * clusterSize > MAX_REFCOUNT_TABLE_BYTES) {
            throw invalid(path, "refcount_table_offset=0x" + Long.toHexString(refcountTableOffset)
                    + " refcount_table_clusters=" + refcountTableClusters);
        }
        long backingOffset = b.getLong(BACKING_FILE_OFFSET_OFFSET);
        int backingSize = b.getInt(BACKING_FILE_SIZE_OFFSET);
        Optional<String> backingFile = Optional.empty();
        if (backingOffset != 0) {
            // Subtract, never add: a backing_file_offset near 2^63 plus the size wraps negative and passed.
            if (backingSize < 0 || backingSize > MAX_BACKING_FILE_SIZE || backingOffset < headerLength
                    || backingOffset > Math.min(clusterSize, limit) - backingSize) {
                throw invalid(path, "backing_file_offset=" + backingOffset + " backing_file_size=" + backingSize);
            }
            backingFile = Optional.of(string(b, (int) backingOffset, backingSize));
        }
        int extensionsEnd = backingOffset != 0 ? (int) backingOffset : Math.min(clusterSize, limit);
        Extensions ext = readExtensions(b, headerLength, extensionsEnd, path);
        return new Qcow2Header(version, backingOffset, backingSize, clusterBits, size, b.getInt(CRYPT_METHOD_OFFSET),
                l1Size, l1Offset, refcountTableOffset, refcountTableClusters, b.getInt(NB_SNAPSHOTS_OFFSET),
                b.getLong(SNAPSHOTS_OFFSET_OFFSET), incompatible, compatible, autoclear, refcountOrder, headerLength,
                compressionType, backingFile, ext.backingFormat, ext.dataFile, ext.names);
    }

    private record Extensions(Optional<String> backingFormat, boolean dataFile, FeatureNames names) {}

    private static Extensions readExtensions(ByteBuffer b, int start, int end, String path) throws ImageException {
        Optional<String> backingFormat = Optional.empty();
        boolean dataFile = false;
        FeatureNames names = FeatureNames.NONE;
        int pos = start;
        while (pos + 8 <= end) {
            int type = b.getInt(pos);
            long length = Integer.toUnsignedLong(b.getInt(pos + 4));
            if (type == EXT_END) {
                break;
            }
            if (pos + 8 + length > end) {
                throw invalid(path, "header extension 0x" + Integer.toHexString(type) + " length=" + length
                        + " runs past offset " + end);
            }
            int data = pos + 8;
            switch (type) {
                case EXT_BACKING_FORMAT -> backingFormat = Optional.of(string(b, data, (int) length));
                case EXT_FEATURE_NAMES -> names = FeatureNames.parse(b, data, (int) length);
                case EXT_DATA_FILE -> dataFile = true;
                default -> { } // bitmaps, crypto and unknown extensions: policy is decided from the feature bits
            }
            pos = data + (int) ((length + 7) & ~7L);
        }
        return new Extensions(backingFormat, dataFile, names);
    }

    private static String string(ByteBuffer b, int offset, int length) {
        byte[] bytes = new byte[length];
        b.get(offset, bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static ImageException invalid(String path, String detail) {
        return new ImageException(Kind.INVALID_FORMAT, "open qcow2 failed: path=" + path + ": bad header: " + detail);
    }

    /**
     * Encodes a version 3 header for a new image: header, the backing format extension (if any), the
     * end marker, then the backing file name, all inside the first cluster.
     */
    static ByteBuffer encodeV3(int clusterBits, long size, int l1Size, long l1Offset, long refcountTableOffset,
            int refcountTableClusters, Optional<Backing> backing) throws ImageException {
        int clusterSize = 1 << clusterBits;
        ByteBuffer b = ByteBuffer.allocate(clusterSize).order(ByteOrder.BIG_ENDIAN);
        b.putInt(MAGIC_OFFSET, MAGIC).putInt(VERSION_OFFSET, 3).putInt(CLUSTER_BITS_OFFSET, clusterBits)
                .putLong(SIZE_OFFSET, size).putInt(L1_SIZE_OFFSET, l1Size).putLong(L1_TABLE_OFFSET_OFFSET, l1Offset)
                .putLong(REFCOUNT_TABLE_OFFSET_OFFSET, refcountTableOffset)
                .putInt(REFCOUNT_TABLE_CLUSTERS_OFFSET, refcountTableClusters)
                .putInt(REFCOUNT_ORDER_OFFSET, 4).putInt(HEADER_LENGTH_OFFSET, V3_HEADER_LENGTH);
        int pos = V3_HEADER_LENGTH;
        if (backing.isPresent()) {
            byte[] format = backing.get().format().getBytes(StandardCharsets.UTF_8);
            byte[] name = backing.get().path().getBytes(StandardCharsets.UTF_8);
            int needed = pos + 8 + ((format.length + 7) & ~7) + 8 + name.length;
            if (name.length > MAX_BACKING_FILE_SIZE || needed > clusterSize) {
                throw new ImageException(Kind.UNSUPPORTED, "create qcow2 failed: backing=" + backing.get().path()
                        + " cluster_size=" + clusterSize + ": backing file name of " + name.length
                        + " bytes does not fit in the first cluster (at most 1023 bytes and " + clusterSize + " in all)");
            }
            b.putInt(pos, EXT_BACKING_FORMAT).putInt(pos + 4, format.length).put(pos + 8, format);
            pos += 8 + ((format.length + 7) & ~7);
            b.putInt(pos, EXT_END).putInt(pos + 4, 0);
            pos += 8;
            b.putLong(BACKING_FILE_OFFSET_OFFSET, pos).putInt(BACKING_FILE_SIZE_OFFSET, name.length).put(pos, name);
        }
        return b;
    }

    /** The feature name table extension: names for feature bits, for error messages. */
    public record FeatureNames(java.util.Map<Integer, String> names) {
        static final FeatureNames NONE = new FeatureNames(java.util.Map.of());
        public static final int TYPE_INCOMPATIBLE = 0, TYPE_COMPATIBLE = 1, TYPE_AUTOCLEAR = 2, ENTRY_LENGTH = 48;

        static FeatureNames parse(ByteBuffer b, int offset, int length) {
            java.util.Map<Integer, String> names = new java.util.HashMap<>();
            for (int e = offset; e + ENTRY_LENGTH <= offset + length; e += ENTRY_LENGTH) {
                int type = b.get(e) & 0xff, bit = b.get(e + 1) & 0xff;
                int n = 0;
                while (n < ENTRY_LENGTH - 2 && b.get(e + 2 + n) != 0) {
                    n++;
                }
                names.put(type << 8 | bit, string(b, e + 2, n));
            }
            return new FeatureNames(java.util.Map.copyOf(names));
        }

        /** The names of the set bits of a feature bitmap, e.g. {@code "bit 7 (foo), bit 9"}. */
        public String describe(int type, long bits) {
            StringBuilder s = new StringBuilder();
            for (int bit = 0; bit < 64; bit++) {
                if ((bits & (1L << bit)) != 0) {
                    s.append(s.isEmpty() ? "" : ", ").append("bit ").append(bit);
                    String name = names.get(type << 8 | bit);
                    if (name != null) {
                        s.append(" (").append(name).append(')');
                    }
                }
            }
            return s.toString();
        }
    }
}
