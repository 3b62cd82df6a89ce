package ferry.cli;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ferry.testkit.Tools;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Drives {@code bin/ferry serve} as a process (needs cli/target/ferry.jar, which `mvn verify` packages first). */
@Tag("interop")
class ServeIT {
    @TempDir Path tmp;

    @Test
    void servesAnImageUntilSigtermThenFlushesAndRemovesTheSocket() throws Exception {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        Path root = Path.of(System.getProperty("user.dir")).getParent();
        Path launcher = root.resolve("bin/ferry");
        assumeTrue(Files.exists(root.resolve("cli/target/ferry.jar")), "cli/target/ferry.jar not built");
        Path disk = tmp.resolve("d.raw");
        Path socket = tmp.resolve("s.sock");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "16M").orFail();
        Process p = new ProcessBuilder(launcher.toString(), "serve", "--image", disk.toString(), "--socket", socket.toString(),
                "--export", "vda").redirectError(tmp.resolve("err.txt").toFile()).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()));
            String ready = out.readLine();
            assertNotNull(ready, "no ready line");
            String uri = "nbd+unix:///vda?socket=" + socket;
            assertTrue(ready.contains(uri), ready);
            Tools.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x6b 1M 1M", uri).orFail();
            Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x6b 1M 1M", uri).orFail();
        } finally {
            p.destroy();   // SIGTERM
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        }
        String err = Files.readString(tmp.resolve("err.txt"));
        assertTrue(err.contains("nbd connection opened"), err);
        assertTrue(err.contains("image flushed and closed"), err);
        assertFalse(Files.exists(socket), "socket removed");
        Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x6b 1M 1M", disk.toString()).orFail();
    }
}
