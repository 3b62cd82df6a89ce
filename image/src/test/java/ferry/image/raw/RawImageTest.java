package ferry.image.raw;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import ferry.image.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class RawImageTest {
    private static final int KiB = 1024;
    private static final int MiB = 1024 * KiB;

    private Path dir;

    /** Under target/, on the real disk: tmpfs would not show ext4's hole and block behaviour. */
    @BeforeEach
    void makeDir() throws IOException {
        dir = ferry.testkit.DiskDirs.create("raw-image-test");
    }

    @AfterEach
    void removeDir() throws IOException {
        ferry.testkit.DiskDirs.delete(dir);
    }

    @Test
    void shouldReadBackWritesAtOddOffsetsThroughHeapAndDirectBuffers() throws Exception {
        long size = 3L * MiB + 7;
        byte[] model = new byte[(int) size];
        Random random = new Random(42);
        try (RawImage image = RawImage.create(dir.resolve("a.raw"), size)) {
            assertEquals(size, image.size());
            assertEquals(size, Files.size(image.path()));
            long[][] writes = {{1, 511}, {4095, 2}, {65537, 70000}, {size - 13, 13}, {100_003, MiB + 333}, {0, 1}};
            for (int i = 0; i < writes.length; i++) {
                byte[] data = new byte[(int) writes[i][1]];
                random.nextBytes(data);
                System.arraycopy(data, 0, model, (int) writes[i][0], data.length);
                ByteBuffer src = i % 2 == 0 ? ByteBuffer.wrap(data) : ByteBuffer.allocateDirect(data.length).put(data).flip();
                image.write(writes[i][0], src);
                assertFalse(src.hasRemaining(), "write consumes the buffer");
            }
            ByteBuffer heap = ByteBuffer.allocate((int) size);
            image.read(0, heap);
            assertFalse(heap.hasRemaining(), "read fills the buffer");
            assertArrayEquals(model, heap.array());

            ByteBuffer direct = ByteBuffer.allocateDirect(70001);
            image.read(65536, direct);
            byte[] got = new byte[70001];
            direct.flip().get(got);
            assertArrayEquals(Arrays.copyOfRange(model, 65536, 65536 + 70001), got);
        }
        try (BlockImage reopened = Images.open(dir.resolve("a.raw"), "raw", true)) {
            ByteBuffer all = ByteBuffer.allocate((int) size);
            reopened.read(0, all);
            assertArrayEquals(model, all.array());
            assertEquals("raw", reopened.format());
            assertTrue(reopened.describe().contains("a.raw"), reopened.describe());
        }
    }

    @Test
    void shouldPunchHoleKeepingSizeWhenZeroingWithUnmap() throws Exception {
        try (RawImage image = RawImage.create(dir.resolve("z.raw"), 4 * MiB)) {
            image.write(0, ByteBuffer.wrap(filled(2 * MiB, (byte) 0x5a)));
            image.flush();
            long blocksBefore = blocks(image.path());
            image.writeZeroes(100, MiB + 1000, true);   // unaligned edges: the kernel zeroes the partial blocks
            image.flush();
            assertEquals(4 * MiB, Files.size(image.path()));
            assertTrue(blocks(image.path()) < blocksBefore, "punch frees blocks: " + blocks(image.path()) + " < " + blocksBefore);
            byte[] expected = filled(2 * MiB, (byte) 0x5a);
            Arrays.fill(expected, 100, 100 + MiB + 1000, (byte) 0);
            assertArrayEquals(expected, read(image, 0, 2 * MiB));
            List<Extent> extents = image.extents(0, 4 * MiB);
            assertCovers(extents, 0, 4 * MiB);
            assertTrue(extents.stream().anyMatch(e -> e.type() == Extent.Type.HOLE && e.offset() <= 4096 && e.end() >= MiB),
                    "the punched middle is a hole: " + extents);
        }
    }

    @Test
    void shouldZeroWithoutUnmapKeepingBlocksAllocated() throws Exception {
        try (RawImage image = RawImage.create(dir.resolve("n.raw"), 4 * MiB)) {
            image.write(0, ByteBuffer.wrap(filled(2 * MiB, (byte) 0x11)));
            image.flush();
            long blocksBefore = blocks(image.path());
            image.writeZeroes(4097, MiB, false);
            image.flush();
            assertTrue(blocks(image.path()) >= blocksBefore, "NO_HOLE keeps allocation");
            byte[] expected = filled(2 * MiB, (byte) 0x11);
            Arrays.fill(expected, 4097, 4097 + MiB, (byte) 0);
            assertArrayEquals(expected, read(image, 0, 2 * MiB));
            image.writeZeroes(3 * MiB, MiB, false);   // in a hole: must still read as zeroes
            assertArrayEquals(new byte[MiB], read(image, 3 * MiB, MiB));
        }
    }

    @Test
    void shouldTrimToZeroesAndFreeBlocks() throws Exception {
        try (RawImage image = RawImage.create(dir.resolve("t.raw"), 2 * MiB)) {
            image.write(0, ByteBuffer.wrap(filled(2 * MiB, (byte) 0xee)));
            image.flush();
            long blocksBefore = blocks(image.path());
            image.trim(MiB, MiB);
            image.flush();
            assertTrue(blocks(image.path()) < blocksBefore, "trim frees blocks");
            assertEquals(2 * MiB, image.size());
            assertArrayEquals(new byte[MiB], read(image, MiB, MiB));
            assertArrayEquals(filled(MiB, (byte) 0xee), read(image, 0, MiB));
            assertEquals(List.of(new Extent(0, MiB, Extent.Type.DATA), new Extent(MiB, MiB, Extent.Type.HOLE)),
                    image.extents(0, 2 * MiB));
        }
    }

    @Test
    void shouldMapDataAndHolesAfterWritesAndPunches() throws Exception {
        try (RawImage image = RawImage.create(dir.resolve("m.raw"), 8 * MiB)) {
            assertEquals(List.of(new Extent(0, 8 * MiB, Extent.Type.HOLE)), image.extents(0, 8 * MiB));
            image.write(MiB, ByteBuffer.wrap(filled(64 * KiB, (byte) 1)));
            image.write(4 * MiB, ByteBuffer.wrap(filled(MiB, (byte) 2)));
            image.write(8 * MiB - 4 * KiB, ByteBuffer.wrap(filled(4 * KiB, (byte) 3)));
            image.trim(4 * MiB + 256 * KiB, 256 * KiB);
            assertEquals(List.of(
                    new Extent(0, MiB, Extent.Type.HOLE),
                    new Extent(MiB, 64 * KiB, Extent.Type.DATA),
                    new Extent(MiB + 64 * KiB, 3 * MiB - 64 * KiB, Extent.Type.HOLE),
                    new Extent(4 * MiB, 256 * KiB, Extent.Type.DATA),
                    new Extent(4 * MiB + 256 * KiB, 256 * KiB, Extent.Type.HOLE),
                    new Extent(4 * MiB + 512 * KiB, 512 * KiB, Extent.Type.DATA),
                    new Extent(5 * MiB, 3 * MiB - 4 * KiB, Extent.Type.HOLE),
                    new Extent(8 * MiB - 4 * KiB, 4 * KiB, Extent.Type.DATA)), image.extents(0, 8 * MiB));
            // a sub-range starting inside data and ending inside a hole is clipped at both ends
            assertEquals(List.of(
                    new Extent(MiB + 4 * KiB, 60 * KiB, Extent.Type.DATA),
                    new Extent(MiB + 64 * KiB, 100, Extent.Type.HOLE)), image.extents(MiB + 4 * KiB, 60 * KiB + 100));
            assertEquals(List.of(), image.extents(8 * MiB, 0));
        }
    }

    @Test
    void shouldRejectOutOfBoundsRangesWithoutTouchingTheFile() throws Exception {
        try (RawImage image = RawImage.create(dir.resolve("b.raw"), MiB)) {
            long[][] bad = {{-1, 10}, {MiB - 10, 11}, {MiB + 1, 0}, {Long.MAX_VALUE, 4096}, {10, Long.MAX_VALUE}};
            for (long[] range : bad) {
                if (range[1] <= 4096) {   // a ByteBuffer cannot be Long.MAX_VALUE long
                    ImageException e = assertThrows(ImageException.class,
                            () -> image.write(range[0], ByteBuffer.wrap(filled((int) range[1], (byte) 9))));
                    assertEquals(Kind.OUT_OF_BOUNDS, e.kind(), e.getMessage());
                }
                assertEquals(Kind.OUT_OF_BOUNDS, assertThrows(ImageException.class,
                        () -> image.writeZeroes(range[0], range[1], false)).kind());
                assertEquals(Kind.OUT_OF_BOUNDS, assertThrows(ImageException.class,
                        () -> image.trim(range[0], range[1])).kind());
                assertEquals(Kind.OUT_OF_BOUNDS, assertThrows(ImageException.class,
                        () -> image.extents(range[0], range[1])).kind());
            }
            ImageException e = assertThrows(ImageException.class, () -> image.read(MiB - 1, ByteBuffer.allocate(2)));
            assertEquals(Kind.OUT_OF_BOUNDS, e.kind());
            assertTrue(e.getMessage().startsWith("read failed: path=" + image.path() + " offset=0xfffff length=2"), e.getMessage());
            assertEquals(List.of(new Extent(0, MiB, Extent.Type.HOLE)), image.extents(0, MiB), "nothing was written");
            assertEquals(MiB, Files.size(image.path()), "the file did not grow");
        }
    }

    @Test
    void shouldRefuseChangesToReadOnlyImage() throws Exception {
        Path path = dir.resolve("ro.raw");
        try (RawImage image = RawImage.create(path, MiB)) {
            image.write(0, ByteBuffer.wrap(filled(4096, (byte) 7)));
        }
        try (RawImage image = RawImage.open(path, true)) {
            assertTrue(image.readOnly());
            assertEquals(Kind.READ_ONLY, assertThrows(ImageException.class, () -> image.write(0, ByteBuffer.allocate(1))).kind());
            assertEquals(Kind.READ_ONLY, assertThrows(ImageException.class, () -> image.writeZeroes(0, 4096, true)).kind());
            assertEquals(Kind.READ_ONLY, assertThrows(ImageException.class, () -> image.trim(0, 4096)).kind());
            assertArrayEquals(filled(4096, (byte) 7), read(image, 0, 4096));
        }
    }

    @Test
    void shouldRefuseToOverwriteAnExistingFileAndReportMissingOnes() throws Exception {
        Path existing = dir.resolve("exists.raw");
        Files.writeString(existing, "keep me");
        ImageException e = assertThrows(ImageException.class, () -> RawImage.create(existing, MiB));
        assertTrue(e.getMessage().contains("File exists (EEXIST)"), e.getMessage());
        assertEquals("keep me", Files.readString(existing));

        ImageException missing = assertThrows(ImageException.class, () -> RawImage.open(dir.resolve("nope.raw"), false));
        assertEquals(Kind.IO, missing.kind());
        assertTrue(missing.getMessage().matches("open failed: path=.*nope\\.raw: No such file or directory \\(ENOENT\\)"),
                missing.getMessage());
    }

    @Test
    void shouldRejectUnknownFormats() throws Exception {
        ImageException e = assertThrows(ImageException.class, () -> Images.open(dir.resolve("x"), "vmdk", false));
        assertEquals(Kind.UNSUPPORTED, e.kind());
        assertTrue(e.getMessage().startsWith("unsupported image format: vmdk"), e.getMessage());
        assertEquals(Kind.UNSUPPORTED, assertThrows(ImageException.class, () -> Images.open(dir.resolve("x"), null, false)).kind());
    }

    @Test
    void shouldFailCleanlyAfterClose() throws Exception {
        RawImage image = RawImage.create(dir.resolve("c.raw"), MiB);
        image.close();
        image.close();   // idempotent
        ImageException e = assertThrows(ImageException.class, () -> image.read(0, ByteBuffer.allocate(1)));
        assertEquals(Kind.IO, e.kind());
        assertTrue(e.getMessage().contains("EBADF"), e.getMessage());
    }

    @Test
    void shouldReportNoSpaceAndKeepEarlierData() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "mounting a tmpfs needs root");
        Path mount = Files.createDirectory(dir.resolve("tiny"));
        int mounted = run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount.toString());
        assumeTrue(mounted == 0, "mount -t tmpfs not permitted here");
        try {
            try (RawImage image = RawImage.create(mount.resolve("big.raw"), 8 * MiB)) {
                byte[] first = filled(64 * KiB, (byte) 0xab);
                image.write(0, ByteBuffer.wrap(first));
                ImageException e = null;
                for (long offset = 64 * KiB; offset < 8 * MiB && e == null; offset += 64 * KiB) {
                    try {
                        image.write(offset, ByteBuffer.wrap(filled(64 * KiB, (byte) 0xcd)));
                    } catch (ImageException failure) {
                        e = failure;
                    }
                }
                assertTrue(e != null, "a 1 MiB tmpfs cannot hold 8 MiB");
                assertEquals(Kind.NO_SPACE, e.kind(), e.getMessage());
                assertTrue(e.getMessage().matches("write failed: path=.*big\\.raw offset=0x[0-9a-f]+ length=65536: "
                        + "No space left on device \\(ENOSPC\\)"), e.getMessage());
                assertArrayEquals(first, read(image, 0, 64 * KiB), "data written before ENOSPC is intact");
            }
        } finally {
            assertEquals(0, run("umount", mount.toString()), "umount " + mount);
        }
    }

    static void assertCovers(List<Extent> extents, long offset, long length) {
        long position = offset;
        for (Extent extent : extents) {
            assertEquals(position, extent.offset(), "extents are contiguous: " + extents);
            position = extent.end();
        }
        assertEquals(offset + length, position, "extents cover the range: " + extents);
    }

    static byte[] filled(int length, byte value) {
        byte[] bytes = new byte[length];
        Arrays.fill(bytes, value);
        return bytes;
    }

    static byte[] read(BlockImage image, long offset, int length) throws ImageException {
        ByteBuffer buffer = ByteBuffer.allocate(length);
        image.read(offset, buffer);
        return buffer.array();
    }

    /** 512-byte blocks allocated to the file, as {@code stat -c %b} reports them. */
    static long blocks(Path path) throws Exception {
        Process process = new ProcessBuilder("stat", "-c", "%b", path.toString()).redirectErrorStream(true).start();
        String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(process.waitFor(10, TimeUnit.SECONDS) && process.exitValue() == 0, "stat: " + out);
        return Long.parseLong(out);
    }

    private static int run(String... command) throws Exception {
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        process.getInputStream().readAllBytes();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            return -1;
        }
        return process.exitValue();
    }

    @Test
    void shouldLeaveNoFileBehindWhenTheFileSystemRefusesTheSize() throws Exception {
        Path huge = dir.resolve("huge.raw");
        long size = 1L << 50;                                   // 1 PiB: ext4 and xfs on small disks say EFBIG
        try {
            RawImage.create(huge, size).close();
            Files.delete(huge);                                 // this file system takes it (tmpfs, large xfs): nothing to check
            assumeTrue(false, "the file system accepts a sparse 1 PiB file");
        } catch (ImageException e) {
            assertFalse(Files.exists(huge), "a failed create left " + huge + ": " + e.getMessage());
        }
    }
}
