package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.util.HexFormat;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class Qcow2HeaderTest {
    /** The first 0x48 bytes of `qemu-img create -f qcow2 -o compat=0.10 a.qcow2 1M` (64 KiB clusters). */
    static final String V2 = ""
            + "514649fb 00000002"                   // magic, version 2
            + "0000000000000000 00000000"           // backing_file_offset, backing_file_size
            + "00000010"                            // cluster_bits 16
            + "0000000000100000"                    // size 1 MiB
            + "00000000 00000001"                   // crypt_method, l1_size
            + "0000000000030000"                    // l1_table_offset
            + "0000000000010000 00000001"           // refcount_table_offset, refcount_table_clusters
            + "00000000 0000000000000000";          // nb_snapshots, snapshots_offset

    /** A v3 header (104 bytes) with a backing format extension, the end marker and the backing name. */
    static final String V3_BACKING = ""
            + "514649fb 00000003"
            + "0000000000000080 00000008"           // backing name at 0x80, 8 bytes
            + "0000000c"                            // cluster_bits 12
            + "0000000000400000"                    // size 4 MiB
            + "00000000 00000002"                   // l1_size 2 (4 KiB clusters map 2 MiB per L2 table)
            + "0000000000003000"
            + "0000000000001000 00000001"
            + "00000000 0000000000000000"
            + "0000000000000000 0000000000000001 0000000000000000" // incompatible, compatible (lazy), autoclear
            + "00000004 00000068"                   // refcount_order 4, header_length 104
            + "e2792aca 00000003 7261770000000000"  // backing format "raw", padded to 8
            + "00000000 00000000"                   // end of extensions
            + "626173652e726177";                   // "base.raw" at 0x80

    static ByteBuffer bytes(String hex) {
        return ByteBuffer.wrap(HexFormat.of().parseHex(hex.replace(" ", "")));
    }

    @Test
    void shouldParseVersion2Header() throws Exception {
        Qcow2Header h = Qcow2Header.parse(bytes(V2), "a.qcow2");
        assertEquals(2, h.version());
        assertEquals(65536, h.clusterSize());
        assertEquals(1 << 20, h.size());
        assertEquals(0x30000, h.l1TableOffset());
        assertEquals(0x10000, h.refcountTableOffset());
        assertEquals(16, h.refcountBits(), "v2 is always 16-bit");
        assertEquals(72, h.headerLength());
        assertEquals(Optional.empty(), h.backingFile());
    }

    @Test
    void shouldParseVersion3HeaderWithBackingAndFormatExtension() throws Exception {
        Qcow2Header h = Qcow2Header.parse(bytes(V3_BACKING), "b.qcow2");
        assertEquals(3, h.version());
        assertEquals(4096, h.clusterSize());
        assertEquals(Optional.of("base.raw"), h.backingFile());
        assertEquals(Optional.of("raw"), h.backingFormat());
        assertEquals(Qcow2Header.COMPAT_LAZY_REFCOUNTS, h.compatibleFeatures());
        assertEquals(104, h.headerLength());
    }

    @Test
    void shouldRoundTripTheHeaderFerryWrites() throws Exception {
        ByteBuffer encoded = Qcow2Header.encodeV3(16, 1L << 30, 2, 0x30000, 0x10000, 1,
                Optional.of(new Backing("../base.qcow2", "qcow2")));
        Qcow2Header h = Qcow2Header.parse(encoded, "new.qcow2");
        assertEquals(Optional.of("../base.qcow2"), h.backingFile());
        assertEquals(Optional.of("qcow2"), h.backingFormat());
        assertEquals(1L << 30, h.size());
        assertEquals(4, h.refcountOrder());
    }

    @Test
    void shouldRejectBadMagicVersionAndClusterBits() {
        ByteBuffer badMagic = bytes(V2).put(0, (byte) 0);
        assertEquals(Kind.INVALID_FORMAT, assertThrows(ImageException.class, () -> Qcow2Header.parse(badMagic, "x")).kind());
        ByteBuffer v4 = bytes(V2).putInt(Qcow2Header.VERSION_OFFSET, 4);
        assertEquals(Kind.UNSUPPORTED, assertThrows(ImageException.class, () -> Qcow2Header.parse(v4, "x")).kind());
        ByteBuffer huge = bytes(V2).putInt(Qcow2Header.CLUSTER_BITS_OFFSET, 22);
        assertTrue(assertThrows(ImageException.class, () -> Qcow2Header.parse(huge, "x")).getMessage()
                .contains("cluster_bits=22"));
        ByteBuffer smallL1 = bytes(V2).putLong(Qcow2Header.SIZE_OFFSET, 1L << 40);
        assertEquals(Kind.INVALID_FORMAT, assertThrows(ImageException.class, () -> Qcow2Header.parse(smallL1, "x")).kind());
        ByteBuffer truncated = ByteBuffer.wrap(new byte[40]);
        assertEquals(Kind.INVALID_FORMAT, assertThrows(ImageException.class, () -> Qcow2Header.parse(truncated, "x")).kind());
    }

    @Test
    void shouldRejectExtensionRunningPastTheBackingName() {
        ByteBuffer b = bytes(V3_BACKING).putInt(0x6c, 200); // format extension claims 200 bytes
        assertEquals(Kind.INVALID_FORMAT, assertThrows(ImageException.class, () -> Qcow2Header.parse(b, "x")).kind());
    }

    @Test
    void shouldNameUnknownFeatureBitsFromTheFeatureNameTable() throws Exception {
        ByteBuffer b = ByteBuffer.allocate(4096).put(bytes(V3_BACKING).limit(0x68)).putLong(0x48, 1L << 9);
        b.putLong(Qcow2Header.BACKING_FILE_OFFSET_OFFSET, 0);
        b.putInt(0x68, Qcow2Header.EXT_FEATURE_NAMES).putInt(0x6c, 48);
        b.put(0x70, (byte) 0).put(0x71, (byte) 9).put(0x72, "frobnicate".getBytes());
        Qcow2Header h = Qcow2Header.parse(b.clear(), "x");
        assertEquals("bit 9 (frobnicate)", h.featureNames().describe(Qcow2Header.FeatureNames.TYPE_INCOMPATIBLE,
                h.incompatibleFeatures()));
    }
}
