package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.testkit.Tools;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What the migration VM tests share: the packaged jar, the demo guest (guest/README.md), the
 * arguments of a {@code ferry run} host, and bounded waits on the monitor and the serial console.
 * Every wait has a deadline: generous ones, as they only bound how long a test may hang.
 */
final class VmHosts {
    static final long DISK_SIZE = 256L << 20;
    /** Boots take ~10 s under TCG alone, 30 s and more when other VMs share the two cores. */
    static final long BOOT_TIMEOUT_MS = 120_000;
    static final Path REPO = Path.of("..").toAbsolutePath().normalize();
    static final Path GUEST = REPO.resolve("guest/out");

    private VmHosts() {}

    /** Checks the jar is packaged and builds the guest (idempotent, about 2 s). */
    static void buildGuest() {
        Tools.require("qemu-system-x86_64");
        Path jar = REPO.resolve("cli/target/ferry.jar");
        assertTrue(Files.exists(jar), "the packaged jar is missing (run after package): " + jar);
        Tools.run(300, REPO.resolve("guest/build.sh").toString()).orFail();
    }

    /** {@code ferry} as a user runs it: this JVM running the packaged jar, with extra JVM options. */
    static List<String> ferry(String... jvmOptions) {
        List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElse("java"));
        command.addAll(List.of(jvmOptions));
        command.addAll(List.of("--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-jar",
                REPO.resolve("cli/target/ferry.jar").toString()));
        return command;
    }

    /** The {@code ferry run} arguments of the demo guest with one {@code -drive} spec, as written. */
    static List<String> vmArgs(String name, String drive, String workload) {
        return new ArrayList<>(List.of("-name", name, "-m", "192", "-kernel", GUEST.resolve("vmlinuz").toString(),
                "-initrd", GUEST.resolve("initramfs.cpio.gz").toString(),
                "-append", "console=ttyS0 quiet ferry.workload=" + workload, "-drive", drive));
    }

    static String drive(Path disk, String format) {
        return "file=" + disk + ",format=" + format + ",if=virtio,id=disk0";
    }

    /** A destination host ({@code -incoming tcp:127.0.0.1:PORT}), returned once it listens. */
    static LocalHost destination(String role, Path dir, List<String> vmArgs, int port, String... jvmOptions) throws Exception {
        List<String> args = new ArrayList<>(vmArgs);
        args.addAll(List.of("-incoming", "tcp:127.0.0.1:" + port));
        LocalHost host = LocalHost.start(role, ferry(jvmOptions), dir, args);
        try {
            // The monitor comes up after the migration listener: once it answers, the port listens.
            assertEquals("VM status: paused (inmigrate)", host.monitor("info status"));
        } catch (IOException | InterruptedException | AssertionError e) {
            host.close();
            throw e;
        }
        return host;
    }

    static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0)) {
            return socket.getLocalPort();
        }
    }

    /** {@code info migrate} until it finishes, at most {@code timeoutMs}; the last report. */
    static InfoMigrateText awaitEnd(LocalHost source, long timeoutMs) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            InfoMigrateText info = InfoMigrateText.parse(source.monitor("info migrate"));
            if (List.of("completed", "failed", "cancelled").contains(info.status())) {
                return info;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("migration did not finish within " + timeoutMs + " ms: " + source.monitor("info migrate"));
    }

    /** The guest's last {@code heartbeat seq=N}: records 1..N are on its disk. -1 before the first. */
    static long heartbeat(LocalHost host) throws IOException {
        String line = host.lastSerialLine("heartbeat seq=");
        return line == null ? -1 : Long.parseLong(line.replaceAll(".*heartbeat seq=(\\d+).*", "$1"));
    }

    /** Waits until the guest's heartbeat passes {@code seq}: it runs and writes. */
    static void awaitWritesBeyond(LocalHost host, long seq, long timeoutMs, String what) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (heartbeat(host) <= seq && System.currentTimeMillis() < deadline) {
            Thread.sleep(250);
        }
        assertTrue(heartbeat(host) > seq, host.role() + ": the guest wrote no record after " + seq + " within "
                + timeoutMs + " ms: " + what);
    }

    /** The source VM runs and its guest still writes: the heartbeat moves on. */
    static void assertSourceRuns(LocalHost source, String after) throws Exception {
        assertEquals("VM status: running", source.monitor("info status"), "source VM not running after " + after);
        awaitWritesBeyond(source, heartbeat(source), 60_000, "the source guest stopped writing after " + after);
    }

    /**
     * A block migration that failed or was cancelled leaves the destination's partial state for {@code migrate -r}: its
     * image and the resume journal beside it, shown by {@code info migrate}; the next fresh migration discards it first.
     */
    static void awaitPartialKept(LocalHost destination, Path disk) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        String info = destination.monitor("info migrate");
        while (!info.contains("ferry resume: Partial state kept: migration ") && System.currentTimeMillis() < deadline) {
            Thread.sleep(100);
            info = destination.monitor("info migrate");
        }
        assertTrue(info.contains("ferry resume: Partial state kept: migration "), "the destination keeps no partial state: " + info);
        assertTrue(Files.exists(disk) && Files.exists(ferry.migration.ResumeJournal.pathFor(disk)),
                "the destination's partial state is not on disk: " + disk);
    }

    /**
     * A link an eighth as fast as the guest writes, measured over a few seconds now, so the guest
     * outruns it by construction rather than by an assumption about the machine's speed. Between
     * 8 KiB/s (where Ferry's throttle floor, a sixteenth of the link, still lets a record through
     * every 8 s) and 64 KiB/s; the guest outruns even the floor while it writes 4 records a second.
     */
    static String linkSlowerThanTheGuest(LocalHost source) throws Exception {
        long before = heartbeat(source);
        long startNs = System.nanoTime();
        Thread.sleep(3000);                                // heartbeats come once a second
        awaitWritesBeyond(source, before + 8, 60_000, "the guest hardly writes");
        long bytesPerSec = (heartbeat(source) - before) * 4096 * 1_000_000_000L / (System.nanoTime() - startNs);
        long link = Math.clamp(bytesPerSec / 8, 8 * 1024, 64 * 1024);
        return (link / 1024) + "k";
    }

    /** Waits until {@code info migrate} reports Ferry's write throttle on. */
    static void awaitThrottled(LocalHost source) throws Exception {
        long deadline = System.currentTimeMillis() + 90_000;
        InfoMigrateText info = InfoMigrateText.parse(source.monitor("info migrate"));
        while (info.field("ferry write throttle").equals("off") && System.currentTimeMillis() < deadline) {
            assertTrue(List.of("setup", "active").contains(info.status()), info.fields().toString());
            Thread.sleep(250);
            info = InfoMigrateText.parse(source.monitor("info migrate"));
        }
        assertNotEquals("off", info.field("ferry write throttle"), "a guest that outruns the link was never throttled: "
                + info.fields());
    }
}
