package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.Extent;
import ferry.testkit.Tools;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Ferry's qcow2 against QEMU's own tools: images either side writes, the other reads and checks. */
@Tag("interop")
class Qcow2QemuIT {
    static final int MiB = 1 << 20;
    static final int SIZE = 16 * MiB;
    @TempDir Path tmp;

    @BeforeEach
    void tools() {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
    }

    @ParameterizedTest(name = "{0} clusters, compat {1}, backing {2}")
    @CsvSource({"4096, 1.1, none", "65536, 1.1, none", "2097152, 1.1, none", "65536, 0.10, none",
            "65536, 1.1, raw", "65536, 1.1, qcow2", "4096, 0.10, qcow2"})
    void shouldStayCleanAndMatchRawReferenceAfterFerryWritesQemuImage(int clusterSize, String compat, String backing)
            throws Exception {
        String disk = tmp.resolve("disk.qcow2").toString();
        byte[] model = new byte[SIZE];
        List<String> create = new ArrayList<>(List.of("create", "-f", "qcow2", "-o",
                "cluster_size=" + clusterSize + ",compat=" + compat));
        if (!backing.equals("none")) {
            model = makeBase(backing);
            create.addAll(List.of("-b", "base." + backing, "-F", backing));
        }
        create.addAll(List.of(disk, String.valueOf(SIZE)));
        QemuTools.img(create.toArray(String[]::new)).orFail();
        try (Qcow2Image image = Qcow2Image.open(Path.of(disk), false)) {
            new RandomOps(clusterSize ^ compat.hashCode(), model, clusterSize).run(image, clusterSize > 65536 ? 60 : 250);
            assertArrayEquals(model, RandomOps.readAll(image));
            assertEquals(QemuTools.map(disk, !backing.equals("none")), image.extents(0, SIZE), "extents vs qemu-img map");
        }
        QemuTools.assertConsistent(disk, false);
        Path reference = tmp.resolve("reference.raw");
        Files.write(reference, model);
        QemuTools.img("compare", "-f", "qcow2", "-F", "raw", disk, reference.toString()).orFail();
    }

    /** A base image in the temp dir (relative name from the overlay), with a QEMU-written pattern; returns its content. */
    private byte[] makeBase(String format) throws Exception {
        byte[] content = new byte[SIZE];
        if (format.equals("raw")) {
            new Random(5).nextBytes(content);
            Arrays.fill(content, 3 * MiB, 5 * MiB, (byte) 0);
            Files.write(tmp.resolve("base.raw"), content);
        } else {
            String base = tmp.resolve("base.qcow2").toString();
            QemuTools.img("create", "-f", "qcow2", base, String.valueOf(SIZE)).orFail();
            QemuTools.io(base, "write -P 0x11 0 3M", "write -P 0x22 7M 1M", "write -P 0x33 12345 5000");
            Arrays.fill(content, 0, 3 * MiB, (byte) 0x11);
            Arrays.fill(content, 7 * MiB, 8 * MiB, (byte) 0x22);
            Arrays.fill(content, 12345, 12345 + 5000, (byte) 0x33);
        }
        return content;
    }

    @Test
    void shouldReadWhatQemuIoWrote() throws Exception {
        String disk = tmp.resolve("q.qcow2").toString();
        QemuTools.img("create", "-f", "qcow2", disk, String.valueOf(SIZE)).orFail();
        QemuTools.io(disk, "write -P 0x5a 1M 64k", "write -P 0x5b 3M 100", "write -P 0x77 8M 2M",
                "write -z 8M 512k", "discard 9M 64k");
        byte[] expected = new byte[SIZE];
        Arrays.fill(expected, MiB, MiB + 65536, (byte) 0x5a);
        Arrays.fill(expected, 3 * MiB, 3 * MiB + 100, (byte) 0x5b);
        Arrays.fill(expected, 8 * MiB + 512 * 1024, 10 * MiB, (byte) 0x77);
        Arrays.fill(expected, 9 * MiB, 9 * MiB + 65536, (byte) 0);
        try (Qcow2Image image = Qcow2Image.open(Path.of(disk), true)) {
            assertArrayEquals(expected, RandomOps.readAll(image));
            assertEquals(QemuTools.map(disk, false), image.extents(0, SIZE));
        }
    }

    @Test
    void shouldReadAndRewriteCompressedClustersFromQemuImgConvert() throws Exception {
        byte[] content = new byte[SIZE];
        Random random = new Random(9);
        for (int i = 0; i < content.length; i += 64) {
            Arrays.fill(content, i, i + 64, (byte) random.nextInt(4)); // compressible, not all zero
        }
        Path raw = tmp.resolve("plain.raw");
        Files.write(raw, content);
        String disk = tmp.resolve("c.qcow2").toString();
        QemuTools.img("convert", "-c", "-f", "raw", "-O", "qcow2", raw.toString(), disk).orFail();
        try (Qcow2Image image = Qcow2Image.open(Path.of(disk), false)) {
            assertArrayEquals(content, RandomOps.readAll(image));
            new RandomOps(21, content, 65536).run(image, 150); // rewrites and trims drop compressed clusters
            assertArrayEquals(content, RandomOps.readAll(image));
        }
        QemuTools.assertConsistent(disk, false);
        Files.write(raw, content);
        QemuTools.img("compare", "-f", "qcow2", "-F", "raw", disk, raw.toString()).orFail();
    }

    @Test
    void shouldFollowThreeLevelChainOfRelativePaths() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("vm"));
        byte[] model = new byte[SIZE];
        new Random(1).nextBytes(model);
        Files.write(dir.resolve("base.raw"), model);
        String l1 = dir.resolve("l1.qcow2").toString(), l2 = dir.resolve("l2.qcow2").toString(),
                top = dir.resolve("top.qcow2").toString();
        QemuTools.img("create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", l1).orFail();
        QemuTools.img("create", "-f", "qcow2", "-b", "l1.qcow2", "-F", "qcow2", "-o", "cluster_size=4096", l2).orFail();
        QemuTools.img("create", "-f", "qcow2", "-b", "l2.qcow2", "-F", "qcow2", top).orFail();
        QemuTools.io(l1, "write -P 0x01 0 1M");
        QemuTools.io(l2, "write -P 0x02 512k 1M", "write -z 4M 64k");
        QemuTools.io(top, "write -P 0x03 1M 4k");
        Arrays.fill(model, 0, MiB, (byte) 1);
        Arrays.fill(model, 512 * 1024, 512 * 1024 + MiB, (byte) 2);
        Arrays.fill(model, 4 * MiB, 4 * MiB + 65536, (byte) 0);
        Arrays.fill(model, MiB, MiB + 4096, (byte) 3);
        try (Qcow2Image image = Qcow2Image.open(Path.of(top), false)) {
            assertEquals(3, depth(image));
            assertArrayEquals(model, RandomOps.readAll(image));
            assertEquals(QemuTools.map(top, true), image.extents(0, SIZE));
            new RandomOps(31, model, 65536).run(image, 150);
        }
        QemuTools.assertConsistent(top, false);
        Path reference = tmp.resolve("ref.raw");
        Files.write(reference, model);
        QemuTools.img("compare", "-f", "qcow2", "-F", "raw", top, reference.toString()).orFail();
    }

    private static int depth(Qcow2Image image) {
        int depth = 0;
        for (var b = image.backing(); b.isPresent(); b = b.get().backing()) {
            depth++;
        }
        return depth;
    }

    @Test
    void shouldCreateImagesQemuAccepts() throws Exception {
        Path base = tmp.resolve("b.raw");
        Files.write(base, new byte[SIZE]);
        for (int clusterSize : new int[] {512, 65536, 2 * MiB}) {
            Path disk = tmp.resolve("ferry-" + clusterSize + ".qcow2");
            try (Qcow2Image image = Qcow2Image.create(disk, SIZE, clusterSize, Optional.of(new Backing("b.raw", "raw")))) {
                image.write(MiB, ByteBuffer.wrap(filled(65536, 0x5a)));
                image.writeZeroes(4 * MiB, 3 * MiB, true);
            }
            QemuTools.assertConsistent(disk.toString(), false);
            Tools.Result info = QemuTools.img("info", "--output=json", disk.toString()).orFail();
            assertTrue(info.stdout().contains("\"backing-filename-format\": \"raw\""), info.stdout());
            assertTrue(info.stdout().contains("\"cluster-size\": " + clusterSize), info.stdout());
            QemuTools.io(disk.toString(), "read -P 0x5a 1M 64k", "read -P 0 0 1M", "read -P 0 4M 3M");
        }
        Path big = tmp.resolve("big.qcow2");
        Qcow2Image.create(big, 1L << 40, 65536, Optional.empty()).close();
        QemuTools.assertConsistent(big.toString(), false);
    }

    private static byte[] filled(int length, int value) {
        byte[] b = new byte[length];
        Arrays.fill(b, (byte) value);
        return b;
    }

    @Test
    void shouldOpenImagesWithInternalSnapshotsReadOnly() throws Exception {
        String disk = tmp.resolve("snap.qcow2").toString();
        QemuTools.img("create", "-f", "qcow2", disk, String.valueOf(SIZE)).orFail();
        QemuTools.io(disk, "write -P 0x44 0 128k");
        QemuTools.img("snapshot", "-c", "s1", disk).orFail();
        try (Qcow2Image image = Qcow2Image.open(Path.of(disk), true)) {
            ByteBuffer b = ByteBuffer.allocate(65536);
            image.read(65536, b);
            assertArrayEquals(filled(65536, 0x44), b.array());
        }
        var e = org.junit.jupiter.api.Assertions.assertThrows(ferry.image.ImageException.class,
                () -> Qcow2Image.open(Path.of(disk), false));
        assertTrue(e.getMessage().contains("snapshots"), e.getMessage());
    }

    @Test
    void shouldRefuseToWriteImageWithOtherRefcountWidth() throws Exception {
        String disk = tmp.resolve("r8.qcow2").toString();
        QemuTools.img("create", "-f", "qcow2", "-o", "refcount_bits=8", disk, String.valueOf(SIZE)).orFail();
        QemuTools.io(disk, "write -P 0x12 0 64k");
        var e = org.junit.jupiter.api.Assertions.assertThrows(ferry.image.ImageException.class,
                () -> Qcow2Image.open(Path.of(disk), false));
        assertTrue(e.getMessage().contains("refcount_bits=8"), e.getMessage());
        try (Qcow2Image image = Qcow2Image.open(Path.of(disk), true)) {
            ByteBuffer b = ByteBuffer.allocate(65536);
            image.read(0, b);
            assertArrayEquals(filled(65536, 0x12), b.array());
            assertEquals(List.of(new Extent(0, 65536, Extent.Type.DATA), new Extent(65536, SIZE - 65536, Extent.Type.HOLE)),
                    image.extents(0, SIZE));
        }
    }
}
