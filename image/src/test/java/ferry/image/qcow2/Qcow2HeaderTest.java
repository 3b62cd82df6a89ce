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

    /** One header field set to a hostile value: field offset, width in bytes, value. */
    private record Hostile(String what, int offset, int width, long value) {}

    @Test
    void shouldRefuseHostileHeaderFieldsWithAnImageExceptionEveryTime() {
        long max = Long.MAX_VALUE;
        for (Hostile h : java.util.List.of(
                new Hostile("backing offset + size wraps past 2^63", 8, 8, max - 3),
                new Hostile("backing offset negative", 8, 8, -8),
                new Hostile("backing offset past the cluster", 8, 8, 1L << 40),
                new Hostile("backing offset inside the header", 8, 8, 16),
                new Hostile("backing size negative", 16, 4, -1),
                new Hostile("backing size over 1023", 16, 4, 1024),
                new Hostile("backing size past the buffer", 16, 4, 1000),
                new Hostile("cluster bits huge", 20, 4, 63),
                new Hostile("cluster bits negative", 20, 4, -1),
                new Hostile("size negative", 24, 8, -1),
                new Hostile("size huge", 24, 8, max),
                new Hostile("l1 size negative", 36, 4, -1),
                new Hostile("l1 size huge", 36, 4, Integer.MAX_VALUE),
                new Hostile("l1 offset unaligned", 40, 8, 1),
                new Hostile("l1 offset negative", 40, 8, Long.MIN_VALUE),
                new Hostile("refcount table offset negative", 48, 8, -4096),
                new Hostile("refcount table clusters huge", 56, 4, Integer.MAX_VALUE),
                new Hostile("refcount table clusters negative", 56, 4, -1),
                new Hostile("refcount order 7", 96, 4, 7),
                new Hostile("refcount order negative", 96, 4, -1),
                new Hostile("header length huge", 100, 4, Integer.MAX_VALUE),
                new Hostile("header length negative", 100, 4, -8),
                new Hostile("header length unaligned", 100, 4, 105),
                new Hostile("extension length wraps", 0x6c, 4, 0xfffffff8L),
                new Hostile("extension length past the end", 0x6c, 4, 0x7ffffff0L),
                new Hostile("version 4", 4, 4, 4))) {
            ByteBuffer b = bytes(V3_BACKING);
            if (h.width() == 8) {
                b.putLong(h.offset(), h.value());
            } else {
                b.putInt(h.offset(), (int) h.value());
            }
            ImageException e = assertThrows(ImageException.class, () -> Qcow2Header.parse(b, "x"), h.what());
            assertTrue(e.getMessage().startsWith("open qcow2 failed: path=x"), h.what() + ": " + e.getMessage());
        }
    }

    /**
     * Random bytes written over random places of both fixtures, 200 000 times: parse returns a header or
     * throws an ImageException, nothing else (an IndexOutOfBoundsException used to escape from the backing name).
     */
    @Test
    void shouldOnlyEverThrowImageExceptionOnMutatedHeaders() {
        java.util.Random random = new java.util.Random(10);
        byte[][] seeds = {HexFormat.of().parseHex(V2.replace(" ", "")), HexFormat.of().parseHex(V3_BACKING.replace(" ", ""))};
        long[] interesting = {0, 1, -1, 8, 0x68, 0x80, 1023, 1024, 4096, 1L << 31, Long.MAX_VALUE, Long.MIN_VALUE, Long.MAX_VALUE - 7};
        int parsed = 0, refused = 0;
        for (int i = 0; i < 200_000; i++) {
            byte[] seed = seeds[random.nextInt(seeds.length)];
            byte[] bytes = java.util.Arrays.copyOf(seed, random.nextInt(4) == 0 ? random.nextInt(seed.length + 64) : seed.length);
            ByteBuffer b = ByteBuffer.wrap(bytes);
            for (int m = 1 + random.nextInt(4); m > 0 && bytes.length > 8; m--) {
                int at = random.nextInt(bytes.length - 7) & ~3;       // fields are 4-aligned
                switch (random.nextInt(3)) {
                    case 0 -> bytes[random.nextInt(bytes.length)] = (byte) random.nextInt(256);
                    case 1 -> b.putInt(at, (int) interesting[random.nextInt(interesting.length)]);
                    default -> b.putLong(at, interesting[random.nextInt(interesting.length)]);
                }
            }
            if (bytes.length >= 4 && random.nextBoolean()) {
                b.putInt(0, Qcow2Header.MAGIC);                        // keep most cases past the magic check
            }
            try {
                Qcow2Header.parse(b, "fuzz");
                parsed++;
            } catch (ImageException e) {
                refused++;
            } catch (RuntimeException e) {
                throw new AssertionError("case " + i + ": " + HexFormat.of().formatHex(bytes) + " threw " + e, e);
            }
        }
        assertTrue(parsed > 100 && refused > 100_000, "parsed=" + parsed + " refused=" + refused);
    }

    /** The same over whole files: Qcow2Image.open, a read and the allocation map of 2 000 mutated images. */
    @Test
    void shouldOpenMutatedImagesOrRefuseThemWithAnImageException(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
        java.nio.file.Path good = tmp.resolve("good.qcow2");
        try (Qcow2Image image = Qcow2Image.create(good, 4L << 20, 4096, Optional.empty())) {
            image.write(8192, ByteBuffer.wrap(new byte[] {1, 2, 3}));
        }
        byte[] seed = java.nio.file.Files.readAllBytes(good);
        java.util.Random random = new java.util.Random(11);
        long[] interesting = {0, 1, -1, 4096, 1L << 31, Long.MAX_VALUE, Long.MIN_VALUE, 1L << 40};
        java.nio.file.Path file = tmp.resolve("fuzz.qcow2");
        for (int i = 0; i < 2_000; i++) {
            byte[] bytes = seed.clone();
            ByteBuffer b = ByteBuffer.wrap(bytes);
            for (int m = 1 + random.nextInt(3); m > 0; m--) {
                int at = random.nextInt(random.nextBoolean() ? 112 : bytes.length - 8) & ~3;
                switch (random.nextInt(3)) {
                    case 0 -> bytes[at + random.nextInt(4)] = (byte) random.nextInt(256);
                    case 1 -> b.putInt(at, (int) interesting[random.nextInt(interesting.length)]);
                    default -> b.putLong(at, interesting[random.nextInt(interesting.length)]);
                }
            }
            java.nio.file.Files.write(file, bytes);
            try (Qcow2Image image = Qcow2Image.open(file, true)) {
                image.read(0, ByteBuffer.allocate(16384));
                image.extents(0, image.size());
            } catch (ImageException e) {
                // refused cleanly
            } catch (RuntimeException | OutOfMemoryError e) {
                throw new AssertionError("case " + i + " threw " + e, e);
            }
        }
    }
}
