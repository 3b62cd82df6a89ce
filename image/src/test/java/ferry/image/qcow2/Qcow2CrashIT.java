package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.testkit.Tools;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Crash safety: a child JVM ({@link CrashWriter}) writes to an image and is killed with SIGKILL at a
 * seeded random moment; {@code qemu-img check} must then report no corruption (leaks are allowed),
 * and the image must open and read again. The next round goes on from the crashed image.
 */
@Tag("interop")
class Qcow2CrashIT {
    static final int ROUNDS = 6;
    @TempDir Path tmp;

    @Test
    void shouldLeaveConsistentImageWhenWriterIsKilledAtAnyMoment() throws Exception {
        Tools.require("qemu-img");
        Random random = new Random(20240607);
        // 512 B clusters make refcount blocks and refcount table growth frequent; 64 KiB is the default.
        for (int clusterSize : new int[] {512, 65536}) {
            Path disk = tmp.resolve("crash-" + clusterSize + ".qcow2");
            Qcow2Image.create(disk, 32L << 20, clusterSize, Optional.empty()).close();
            for (int round = 0; round < ROUNDS; round++) {
                long killAfterMs = 100 + random.nextInt(1200);
                runAndKill(disk, random.nextLong(), killAfterMs);
                Tools.Result check = QemuTools.img("check", "-f", "qcow2", disk.toString());
                assertTrue(check.exitCode() == 0 || check.exitCode() == 3, "round " + round + " cluster_size="
                        + clusterSize + " killed after " + killAfterMs + " ms: qemu-img check exited "
                        + check.exitCode() + "\n" + check.stdout() + check.stderr());
                try (Qcow2Image image = Qcow2Image.open(disk, true)) {
                    image.read(0, ByteBuffer.allocate((int) image.size()));
                }
            }
            QemuTools.img("check", "-r", "leaks", "-f", "qcow2", disk.toString());
            QemuTools.assertConsistent(disk.toString(), false);
        }
    }

    private static void runAndKill(Path disk, long seed, long killAfterMs) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process child = new ProcessBuilder(List.of(java, "-cp", System.getProperty("java.class.path"),
                CrashWriter.class.getName(), disk.toString(), Long.toString(seed)))
                .redirectErrorStream(true).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
            String line = out.readLine();
            assertEquals("ready", line, "child did not start");
            Thread.sleep(killAfterMs);
            if (!child.isAlive()) {
                throw new AssertionError("child ended before it was killed: "
                        + new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
            }
        } finally {
            child.destroyForcibly(); // SIGKILL on Linux
            assertTrue(child.waitFor(30, TimeUnit.SECONDS), "child did not die");
        }
    }
}
