package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class Qcow2ImageTest {
    static final int MiB = 1 << 20;
    @TempDir Path tmp;

    @ParameterizedTest
    @ValueSource(ints = {512, 4096, 65536, 2 * MiB})
    void shouldReadBackRandomWritesZeroesAndTrimsAfterReopen(int clusterSize) throws Exception {
        Path disk = tmp.resolve("a.qcow2");
        byte[] model = new byte[8 * MiB];
        try (Qcow2Image image = Qcow2Image.create(disk, model.length, clusterSize, Optional.empty())) {
            new RandomOps(clusterSize, model, clusterSize).run(image, clusterSize > 65536 ? 60 : 300);
            assertArrayEquals(model, RandomOps.readAll(image));
        }
        try (Qcow2Image image = Qcow2Image.open(disk, true)) {
            assertArrayEquals(model, RandomOps.readAll(image));
        }
    }

    @Test
    void shouldGrowRefcountTableWhenFileOutgrowsIt() throws Exception {
        // 512 B clusters: one refcount table cluster covers 64 blocks * 256 clusters = 8 MiB of file.
        Path disk = tmp.resolve("grow.qcow2");
        byte[] model = new byte[12 * MiB];
        new Random(7).nextBytes(model);
        try (Qcow2Image image = Qcow2Image.create(disk, model.length, 512, Optional.empty())) {
            int tableClusters = image.header().refcountTableClusters();
            for (int at = 0; at < model.length; at += MiB) {
                image.write(at, ByteBuffer.wrap(model, at, MiB));
            }
            assertArrayEquals(model, RandomOps.readAll(image));
            assertEquals(tableClusters, image.header().refcountTableClusters(), "header record is the opening one");
        }
        try (Qcow2Image image = Qcow2Image.open(disk, false)) {
            assertTrue(image.header().refcountTableClusters() > 1, "table grew");
            assertArrayEquals(model, RandomOps.readAll(image));
        }
    }

    @Test
    void shouldReuseTrimmedClusters() throws Exception {
        Path disk = tmp.resolve("reuse.qcow2");
        try (Qcow2Image image = Qcow2Image.create(disk, 16 * MiB, 65536, Optional.empty())) {
            image.write(0, ByteBuffer.allocate(8 * MiB));
            long full = Files.size(disk);
            image.trim(0, 8 * MiB);
            image.write(8 * MiB, ByteBuffer.allocate(8 * MiB));
            assertEquals(full, Files.size(disk), "trimmed clusters were reused, the file did not grow");
        }
    }

    @Test
    void shouldReportExtentsByClusterStateMerged() throws Exception {
        Path disk = tmp.resolve("ext.qcow2");
        int c = 65536;
        try (Qcow2Image image = Qcow2Image.create(disk, 64L * c, c, Optional.empty())) {
            image.write(0, ByteBuffer.allocate(2 * c));
            image.writeZeroes(4L * c, 2L * c, false);
            image.write(10L * c, ByteBuffer.allocate(c));
            image.writeZeroes(10L * c, c, false); // allocated cluster keeps its host cluster, flag zero
            assertEquals(List.of(new Extent(0, 2L * c, Extent.Type.DATA), new Extent(2L * c, 8L * c, Extent.Type.HOLE),
                    new Extent(10L * c, c, Extent.Type.ZERO), new Extent(11L * c, 53L * c, Extent.Type.HOLE)),
                    image.extents(0, 64L * c));
        }
    }

    @Test
    void shouldReadThroughRelativeBackingChainAndCopyOnWrite() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("chain"));
        byte[] base = new byte[4 * MiB];
        new Random(3).nextBytes(base);
        Files.write(dir.resolve("base.raw"), base);
        Qcow2Image.create(dir.resolve("mid.qcow2"), base.length, 4096, Optional.of(new Backing("base.raw", "raw"))).close();
        byte[] model = base.clone();
        try (Qcow2Image mid = Qcow2Image.open(dir.resolve("mid.qcow2"), false)) {
            new RandomOps(11, model, 4096).run(mid, 50);
        }
        try (Qcow2Image top = Qcow2Image.create(dir.resolve("top.qcow2"), base.length, 65536,
                Optional.of(new Backing("mid.qcow2", "qcow2")))) {
            assertArrayEquals(model, RandomOps.readAll(top));
            top.write(100, ByteBuffer.wrap(new byte[] {1, 2, 3})); // partial cluster: the rest comes from below
            model[100] = 1;
            model[101] = 2;
            model[102] = 3;
            new RandomOps(12, model, 65536).run(top, 100);
            assertArrayEquals(model, RandomOps.readAll(top));
            BlockImage mid = top.backing().orElseThrow();
            assertEquals("qcow2", mid.format());
            assertEquals("raw", mid.backing().orElseThrow().format());
        }
    }

    @Test
    void shouldReadZeroesPastTheEndOfAShorterBacking() throws Exception {
        Files.write(tmp.resolve("short.raw"), new byte[] {9, 9, 9, 9});
        try (Qcow2Image top = Qcow2Image.create(tmp.resolve("long.qcow2"), MiB, 4096,
                Optional.of(new Backing("short.raw", "raw")))) {
            ByteBuffer b = ByteBuffer.allocate(8);
            top.read(0, b);
            assertArrayEquals(new byte[] {9, 9, 9, 9, 0, 0, 0, 0}, b.array());
            assertEquals(Extent.Type.BACKING, top.extents(0, MiB).getFirst().type());
        }
    }

    @Test
    void shouldRefuseWritesOnReadOnlyAndOutOfBoundsRequests() throws Exception {
        Path disk = tmp.resolve("ro.qcow2");
        Qcow2Image.create(disk, MiB, 65536, Optional.empty()).close();
        try (Qcow2Image image = Qcow2Image.open(disk, true)) {
            assertEquals(Kind.READ_ONLY, assertThrows(ImageException.class,
                    () -> image.write(0, ByteBuffer.allocate(1))).kind());
            assertEquals(Kind.OUT_OF_BOUNDS, assertThrows(ImageException.class,
                    () -> image.read(MiB - 1, ByteBuffer.allocate(2))).kind());
        }
    }

    @Test
    void shouldRefuseImagesWithFeaturesItDoesNotWrite() throws Exception {
        assertRefused(Qcow2Header.INCOMPATIBLE_FEATURES_OFFSET, 8, Qcow2Header.INCOMPAT_DIRTY, Kind.UNSUPPORTED, true, "qemu-img check -r all");
        assertRefused(Qcow2Header.INCOMPATIBLE_FEATURES_OFFSET, 8, Qcow2Header.INCOMPAT_CORRUPT, Kind.CORRUPT, true, "corrupt");
        assertRefused(Qcow2Header.INCOMPATIBLE_FEATURES_OFFSET, 8, Qcow2Header.INCOMPAT_EXTL2, Kind.UNSUPPORTED, false, "extended L2");
        assertRefused(Qcow2Header.INCOMPATIBLE_FEATURES_OFFSET, 8, Qcow2Header.INCOMPAT_DATA_FILE, Kind.UNSUPPORTED, false, "external data");
        assertRefused(Qcow2Header.INCOMPATIBLE_FEATURES_OFFSET, 8, 1L << 40, Kind.UNSUPPORTED, false, "bit 40");
        assertRefused(Qcow2Header.CRYPT_METHOD_OFFSET, 4, 2, Kind.UNSUPPORTED, false, "encrypted");
        assertRefused(Qcow2Header.NB_SNAPSHOTS_OFFSET, 4, 1, Kind.UNSUPPORTED, true, "snapshots");
        assertRefused(Qcow2Header.REFCOUNT_ORDER_OFFSET, 4, 5, Kind.UNSUPPORTED, true, "refcount_bits=32");
    }

    private void assertRefused(int offset, int width, long value, Kind kind, boolean readOnlyOk, String text)
            throws Exception {
        Path disk = tmp.resolve("f" + offset + "-" + value + ".qcow2");
        Qcow2Image.create(disk, MiB, 65536, Optional.empty()).close();
        try (FileChannel ch = FileChannel.open(disk, StandardOpenOption.WRITE)) {
            ByteBuffer b = width == 8 ? ByteBuffer.allocate(8).putLong(0, value) : ByteBuffer.allocate(4).putInt(0, (int) value);
            ch.write(b, offset);
        }
        ImageException e = assertThrows(ImageException.class, () -> Qcow2Image.open(disk, false));
        assertEquals(kind, e.kind(), e.getMessage());
        assertTrue(e.getMessage().contains(text), e.getMessage());
        if (readOnlyOk) {
            Qcow2Image.open(disk, true).close();
        } else {
            assertThrows(ImageException.class, () -> Qcow2Image.open(disk, true));
        }
    }

    @Test
    void shouldRefuseBadCreateArguments() {
        assertThrows(ImageException.class, () -> Qcow2Image.create(tmp.resolve("x"), MiB, 1000, Optional.empty()));
        assertThrows(ImageException.class, () -> Qcow2Image.create(tmp.resolve("y"), 1000, 4096, Optional.empty()));
        assertThrows(ImageException.class, () -> Qcow2Image.create(tmp.resolve("z"), MiB, 4096,
                Optional.of(new Backing("missing.raw", "raw"))));
    }

    @Test
    void shouldServeConcurrentReadersAndWritersOnDisjointRanges() throws Exception {
        Path disk = tmp.resolve("mt.qcow2");
        int threads = 4, span = 2 * MiB;
        try (Qcow2Image image = Qcow2Image.create(disk, (long) threads * span, 4096, Optional.empty())) {
            byte[][] models = new byte[threads][span];
            Thread[] workers = new Thread[threads];
            Throwable[] failures = new Throwable[threads];
            for (int t = 0; t < threads; t++) {
                int id = t;
                workers[t] = Thread.ofPlatform().name("qcow2-test-" + t).start(() -> {
                    try {
                        Random r = new Random(id);
                        for (int i = 0; i < 200; i++) {
                            int off = r.nextInt(span - 20000);
                            byte[] data = new byte[1 + r.nextInt(20000)];
                            r.nextBytes(data);
                            image.write((long) id * span + off, ByteBuffer.wrap(data));
                            System.arraycopy(data, 0, models[id], off, data.length);
                            if (i % 50 == 0) {
                                image.trim((long) id * span, 8192);
                                java.util.Arrays.fill(models[id], 0, 8192, (byte) 0);
                            }
                        }
                    } catch (Throwable e) {
                        failures[id] = e;
                    }
                });
            }
            for (int t = 0; t < threads; t++) {
                workers[t].join(60_000);
                if (failures[t] != null) {
                    throw new AssertionError("worker " + t, failures[t]);
                }
                ByteBuffer b = ByteBuffer.allocate(span);
                image.read((long) t * span, b);
                assertArrayEquals(models[t], b.array(), "range of worker " + t);
            }
        }
    }
}
