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
        assertTrue(refused.getMessage().contains("needs the base image"), refused.getMessage());
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
}
