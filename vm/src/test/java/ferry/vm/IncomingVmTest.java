package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.qcow2.Qcow2Image;
import ferry.migration.MigrationException;
import ferry.migration.wire.Frame;
import ferry.migration.wire.MigrationWire;
import ferry.migration.wire.VmFingerprint;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The destination's checks of a HELLO, before QEMU starts (no QEMU needed). */
class IncomingVmTest {
    private static final long SIZE = 8L << 20;

    @TempDir Path tmp;

    private IncomingVm host(Path disk, String format, boolean overwrite) throws Exception {
        List<String> args = new java.util.ArrayList<>(List.of("-name", "in", "-drive", "file=" + disk + ",format=" + format,
                "-incoming", "tcp:127.0.0.1:4444", "--runtime-dir", tmp.resolve("run").toString()));
        if (overwrite) {
            args.add("--incoming-overwrite");
        }
        VmConfig config;
        try {
            config = VmConfigParser.parse(args);
        } catch (VmConfigParser.BadOptionException e) {
            throw new AssertionError("the test's options: " + e.getMessage(), e);
        }
        RuntimeDir runtime = RuntimeDir.create(tmp.resolve("run"), "in");
        return new IncomingVm(config, runtime, new QemuLauncher(config, runtime), ferry.migration.wire.VmFingerprint.of());
    }

    private static Frame.Hello incremental(String baseName) {
        Frame.BaseIdentity base = new Frame.BaseIdentity(baseName, SIZE, new byte[32]);
        return new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, true,
                List.of(new Frame.DiskOffer("disk0", SIZE, "qcow2", Optional.of(base))), ferry.migration.wire.VmFingerprint.of());
    }

    @Test
    void shouldDeleteNothingWhenTheBaseIsMissingEvenWithOverwrite() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        try (Qcow2Image image = Qcow2Image.create(disk, SIZE, 64 << 10, Optional.empty())) {
            image.write(0, ByteBuffer.wrap("precious".getBytes()));
        }
        byte[] before = Files.readAllBytes(disk);
        MigrationException refused = assertThrows(MigrationException.class,
                () -> host(disk, "qcow2", true).prepare(incremental("missing-base.raw")));
        assertTrue(refused.getMessage().contains("needs the source's base image on the destination too"), refused.getMessage());
        assertArrayEquals(before, Files.readAllBytes(disk), "--incoming-overwrite touched the disk before every check passed");
    }

    @Test
    void shouldDeleteNothingWhenTheBaseHasAnotherSize() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        Qcow2Image.create(disk, SIZE, 64 << 10, Optional.empty()).close();
        ferry.image.raw.RawImage.create(tmp.resolve("base.raw"), SIZE / 2).close();
        byte[] before = Files.readAllBytes(disk);
        MigrationException refused = assertThrows(MigrationException.class,
                () -> host(disk, "qcow2", true).prepare(incremental("base.raw")));
        assertTrue(refused.getMessage().contains("differs from the source's (size"), refused.getMessage());
        assertArrayEquals(before, Files.readAllBytes(disk));
    }

    @Test
    void shouldRefuseAnotherConfigurationBeforeCreatingAnything() throws Exception {
        Path disk = tmp.resolve("new/disk.raw");
        List<String> args = List.of("-name", "in", "-drive", "file=" + disk + ",format=raw", "-incoming", "tcp:127.0.0.1:4444",
                "--runtime-dir", tmp.resolve("run").toString());
        VmConfig config = VmConfigParser.parse(args);
        RuntimeDir runtime = RuntimeDir.create(tmp.resolve("run"), "in");
        VmFingerprint here = VmFingerprint.of(new VmFingerprint.Item("machine", "pc-i440fx-7.2"),
                new VmFingerprint.Item("memory", "128 MiB"));
        IncomingVm host = new IncomingVm(config, runtime, new QemuLauncher(config, runtime), here);
        Frame.Hello hello = new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false,
                List.of(new Frame.DiskOffer("disk0", SIZE, "raw", Optional.empty())),
                VmFingerprint.of(new VmFingerprint.Item("machine", "pc-i440fx-7.2"), new VmFingerprint.Item("memory", "256 MiB")));
        MigrationException refused = assertThrows(MigrationException.class, () -> host.prepare(hello));
        assertEquals("configuration differs from the source: memory 128 MiB here, 256 MiB on the source", refused.getMessage());
        assertFalse(Files.exists(disk.getParent()), "nothing is created before the configuration check");
    }

    /** What the source reads of a refusal names nothing of this host: no path, no size of its files. */
    private void assertNamesNothingHere(MigrationException refused) {
        assertFalse(refused.getMessage().contains(tmp.toString()), refused.getMessage());
        assertFalse(refused.getMessage().contains("/etc"), refused.getMessage());
    }

    @Test
    void shouldRefuseBaseNamesThatAreNotPlainFileNamesWithoutLookingThemUp() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        for (String name : List.of("/etc/shadow", "../../../../etc/hostname", "..", ".", "", "sub/base.raw", "a\nb", "a\\b")) {
            MigrationException refused = assertThrows(MigrationException.class, () -> host(disk, "qcow2", false).prepare(incremental(name)));
            assertTrue(refused.getMessage().contains("the source's base name is not a plain file name"), name + ": " + refused.getMessage());
            assertNamesNothingHere(refused);
            assertTrue(refused.localDetail().orElseThrow().contains("the source named its base"), refused.localDetail().orElseThrow());
        }
        assertFalse(Files.exists(disk));
    }

    @Test
    void shouldRefuseAFifoOrADirectoryAsBaseAtOnce() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        new ProcessBuilder("mkfifo", tmp.resolve("base.fifo").toString()).start().waitFor();
        Files.createDirectories(tmp.resolve("base.dir"));
        for (String name : List.of("base.fifo", "base.dir")) {
            MigrationException refused = org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(java.time.Duration.ofSeconds(10),
                    () -> assertThrows(MigrationException.class, () -> host(disk, "qcow2", false).prepare(incremental(name))));
            assertTrue(refused.getMessage().contains("it is not there"), refused.getMessage());
            assertTrue(refused.localDetail().orElseThrow().contains("is not a regular file"), refused.localDetail().orElseThrow());
            assertNamesNothingHere(refused);
        }
    }

    @Test
    void shouldRefuseABaseOtherThanTheOneTheOverlayHereSitsOn() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        ferry.image.raw.RawImage.create(tmp.resolve("mine.raw"), SIZE).close();
        ferry.image.raw.RawImage.create(tmp.resolve("other.raw"), SIZE).close();
        Qcow2Image.create(disk, SIZE, 64 << 10, Optional.of(new ferry.image.qcow2.Backing("mine.raw", "raw"))).close();
        MigrationException refused = assertThrows(MigrationException.class, () -> host(disk, "qcow2", true).prepare(incremental("other.raw")));
        assertTrue(refused.getMessage().contains("the source's base is not the base of the destination's overlay"), refused.getMessage());
        assertNamesNothingHere(refused);
    }

    @Test
    void shouldCheckAnExistingQcow2WithoutOpeningItForWriting() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        try (Qcow2Image image = Qcow2Image.create(disk, SIZE, 64 << 10, Optional.empty())) {
            image.write(0, ByteBuffer.wrap("precious".getBytes()));
        }
        try (var file = java.nio.channels.FileChannel.open(disk, java.nio.file.StandardOpenOption.WRITE)) {
            file.write(ByteBuffer.allocate(8).putLong(0, 1L), ferry.image.qcow2.Qcow2Header.AUTOCLEAR_FEATURES_OFFSET);   // QEMU's bitmaps bit
        }
        byte[] before = Files.readAllBytes(disk);
        Frame.Hello full = new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false,
                List.of(new Frame.DiskOffer("disk0", SIZE, "qcow2", Optional.empty())), VmFingerprint.of());
        MigrationException holdsData = assertThrows(MigrationException.class, () -> host(disk, "qcow2", false).prepare(full));
        assertTrue(holdsData.getMessage().contains("holds data; refusing to overwrite it"), holdsData.getMessage());
        assertNamesNothingHere(holdsData);
        Frame.Hello bigger = new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false,
                List.of(new Frame.DiskOffer("disk0", 2 * SIZE, "qcow2", Optional.empty())), VmFingerprint.of());
        MigrationException size = assertThrows(MigrationException.class, () -> host(disk, "qcow2", true).prepare(bigger));
        assertTrue(size.getMessage().contains("exists with a different size than the source's " + 2 * SIZE + " bytes"), size.getMessage());
        assertFalse(size.getMessage().contains(Long.toString(SIZE)), "this host's size stays here: " + size.getMessage());
        assertNamesNothingHere(size);
        assertArrayEquals(before, Files.readAllBytes(disk), "a refused image must stay byte for byte as it was (autoclear bits too)");
    }
}
