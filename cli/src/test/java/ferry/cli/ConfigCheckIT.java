package ferry.cli;

import static ferry.cli.VmHosts.ferry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.raw.RawImage;
import ferry.testkit.Tools;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The configuration check before any byte moves: a source with {@code -m 256} and a destination with
 * {@code -m 128} (the finding: this used to fail at the very end with "Broken pipe") is refused in
 * the handshake with one line that names the difference, before the destination creates its image, and
 * the source VM runs on.
 */
@Tag("vm")
class ConfigCheckIT {
    private static final long DISK_SIZE = 64L << 20;
    private static final String NAME = "configit-" + ProcessHandle.current().pid();
    private static Path repo;

    @TempDir Path tmp;

    @BeforeAll
    static void findJar() {
        Tools.require("qemu-system-x86_64");
        repo = Path.of(System.getProperty("user.dir")).toAbsolutePath().getParent();
        assertTrue(Files.isRegularFile(repo.resolve("cli/target/ferry.jar")), "run after package");
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void memoryMismatchIsRefusedBeforeTheDestinationCreatesItsImage() throws Exception {
        Path sourceDisk = tmp.resolve("src/disk.raw");
        Path destinationDisk = tmp.resolve("dst/disk.raw");
        Files.createDirectories(sourceDisk.getParent());
        RawImage.create(sourceDisk, DISK_SIZE).close();
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        try (LocalHost source = LocalHost.start("source", ferry(), tmp.resolve("src"), List.of("-name", NAME, "-m", "256",
                "-drive", "file=" + sourceDisk + ",format=raw,if=virtio"));
             LocalHost destination = LocalHost.start("destination", ferry(), tmp.resolve("dst"), List.of("-name", NAME,
                     "-m", "128", "-drive", "file=" + destinationDisk + ",format=raw,if=virtio", "-incoming", "tcp:127.0.0.1:" + port))) {
            assertEquals("VM status: running", source.monitor("info status"));
            assertEquals("VM status: paused (inmigrate)", destination.monitor("info status"));
            assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
            InfoMigrateText refused = VmHosts.awaitEnd(source, 60_000);
            assertEquals("failed", refused.status(), refused.fields().toString());
            String error = refused.field("ferry error");
            assertTrue(error.contains("configuration differs from the source: memory 128 MiB here, 256 MiB on the source"), error);
            assertEquals("handshake", refused.field("ferry phase"), refused.fields().toString());
            assertTrue(refused.number("ferry wire bytes") < 4096, "less than one granule on the wire (HELLO, ERROR): "
                    + refused.fields());
            assertFalse(Files.exists(destinationDisk), "the destination created its image before refusing");
            assertEquals("VM status: running", source.monitor("info status"));
            assertEquals("VM status: paused (inmigrate)", destination.monitor("info status"), "the destination waits on");
        }
    }
}
