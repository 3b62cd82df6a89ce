package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import ferry.image.Extent;
import ferry.image.raw.RawImage;
import ferry.testkit.Tools;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code ferry run} as a user runs it: the built jar in its own JVM ({@link LocalHost}), the demo guest
 * under TCG, its disk served by Ferry over NBD, the HMP-style monitor on a unix socket. Covers a guest
 * that writes and powers off (monitor commands while it runs, then host and guest verification of the
 * records), bad options, QEMU killed, Ferry killed, and SIGTERM. About a minute and a half on a 2-core machine.
 */
@Tag("vm")
class RunIT {
    private static final long DISK_BYTES = 256L << 20;
    /** Boots take ~10 s under TCG alone, 30 s and more when other VMs share the two cores. */
    private static final long BOOT_TIMEOUT_MS = 120_000;
    private static final long EXIT_TIMEOUT_MS = 60_000;
    private static final Pattern WRITE_DONE = Pattern.compile("phase=write-done seq=(\\d+) ");
    private static final Pattern HEARTBEAT = Pattern.compile("heartbeat seq=(\\d+) ");
    private static final Pattern VERIFY = Pattern.compile("verify records=(\\d+) highest-seq=(\\d+) bad=(\\d+)");
    private static final Pattern ALLOCATED = Pattern.compile("allocated: (\\d+) bytes");
    /** Unique per test JVM: other engineers run QEMU guests with their own names beside us. */
    private static final String NAME = "runit-" + ProcessHandle.current().pid();

    @TempDir static Path shared;
    private static Path guest;
    private static List<String> ferry;

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuestAndFindJar() {
        Tools.require("qemu-system-x86_64");
        Tools.require("gcc");
        Path repo = Path.of(System.getProperty("user.dir")).toAbsolutePath().getParent();
        guest = shared.resolve("guest");
        Tools.run(300, "bash", repo.resolve("guest/build.sh").toString(), guest.toString()).orFail();
        Path jar = repo.resolve("cli/target/ferry.jar");
        assertTrue(Files.isRegularFile(jar), "run after package: " + jar);
        List<String> command = new ArrayList<>(LocalHost.ferryCommand());
        command.set(command.size() - 1, jar.toString());              // ferryCommand() ends with the jar's path
        ferry = List.copyOf(command);
    }

    // ---- (a) a writing guest, the monitor while it writes, poweroff, then verify in a second boot --------------

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void shouldRunWritingGuestAnswerMonitorAndKeepEveryRecord() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        RawImage.create(disk, DISK_BYTES).close();
        long writeDoneSeq;
        try (LocalHost host = start("write", disk, "write,rate=2M,seconds=8")) {
            host.awaitSerial("heartbeat seq=", BOOT_TIMEOUT_MS);

            assertEquals("VM status: running", host.monitor("info status"));
            String version = host.monitor("info version");
            assertTrue(version.matches("Ferry \\S+ \\(QEMU \\d+\\.\\d+\\.\\d+.*\\)"), version);
            String help = host.monitor("help");
            assertTrue(help.lines().anyMatch(l -> l.startsWith("migrate [-d] [-b] [-i] [-r] uri -- ")), help);
            String cpus = host.monitor("info cpus");
            assertTrue(cpus.matches("(?s)\\* CPU #0: thread_id=\\d+.*"), "QEMU's own text: " + cpus);
            assertBlockAllocates(host, disk);

            String unknown = host.monitor("frobnicate");
            assertEquals("unknown command: 'frobnicate'", unknown, "QEMU 7.2's one line, not 15 lines of help");
            String badUri = host.monitor("migrate tcp:x");
            assertTrue(badUri.startsWith("Error: migrate: invalid migration URI 'tcp:x'"), badUri);
            assertTrue(badUri.contains("\nmigrate [-d] [-b] [-i] [-r] uri -- "), "followed by migrate's help: " + badUri);
            for (String reply : List.of(unknown, badUri)) {
                assertFalse(reply.contains("Exception") || reply.contains("\tat "), "no stack trace: " + reply);
            }

            assertEquals("", host.monitor("stop"));
            assertEquals("VM status: paused", host.monitor("info status"), "QEMU 7.2 after stop, not paused (paused)");
            assertEquals("", host.monitor("cont"));
            assertEquals("VM status: running", host.monitor("info status"));

            String done = host.awaitSerial("phase=write-done", BOOT_TIMEOUT_MS);
            assertEquals(0, host.awaitExit(EXIT_TIMEOUT_MS), "after the guest powered off: " + read(host.ferryLog()));
            assertTrue(read(host.ferryLog()).contains("ferry: " + NAME + "-write: QEMU exited (the guest powered off or quit)"),
                    read(host.ferryLog()));
            assertFalse(read(host.ferryLog()).contains("\tat "), "no stack trace: " + read(host.ferryLog()));
            assertCleanedUp(host);
            writeDoneSeq = seq(WRITE_DONE, done);
        }
        VerifyReport report = RecordVerifier.verify(disk);
        assertTrue(report.records() > 0, report.toString());
        assertEquals(0, report.badBlocks(), report.toString());
        assertEquals(writeDoneSeq, report.highestSeq(), "every record the guest completed is on the disk: " + report);

        try (LocalHost host = start("verify", disk, "verify")) {
            String verdict = host.awaitSerial("ferry-guest: verify records=", BOOT_TIMEOUT_MS);
            Matcher m = VERIFY.matcher(verdict);
            assertTrue(m.find(), verdict);
            assertEquals(report.records(), Long.parseLong(m.group(1)), verdict);
            assertEquals(writeDoneSeq, Long.parseLong(m.group(2)), verdict);
            assertEquals(0, Long.parseLong(m.group(3)), verdict);
            assertEquals(0, host.awaitExit(EXIT_TIMEOUT_MS), read(host.ferryLog()));
            assertEquals("ferry-guest: verify ok", host.lastSerialLine("ferry-guest: verify "), read(host.serialLog()));
            assertCleanedUp(host);
        }
    }

    /**
     * {@code info block} is QEMU's own (QEMU opens the disk itself) and names disk0's file as raw; the
     * guest's writes reach that file directly (within a few seconds).
     */
    private static void assertBlockAllocates(LocalHost host, Path disk) throws Exception {
        String block = host.monitor("info block");
        assertTrue(block.startsWith("disk0"), block);
        assertTrue(block.contains(disk + " (raw)"), block);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (allocatedBytes(disk) == 0) {
            if (System.nanoTime() > deadline) {
                fail("nothing allocated in " + disk + " 10 s into the writes: " + block);
            }
            Thread.sleep(250);
        }
    }

    private static long allocatedBytes(Path disk) throws IOException {
        try (RawImage image = RawImage.open(disk, true)) {
            long allocated = 0;
            for (var extent : image.extents(0, image.size())) {
                allocated += extent.type() == Extent.Type.DATA ? extent.length() : 0;
            }
            return allocated;
        }
    }

    // ---- (b) bad options ---------------------------------------------------------------------------------------

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void shouldRefuseBadOptionsWithOneLineAndStartNothing() throws Exception {
        Path runtime = tmp.resolve("run");
        Result noFormat = ferry("run", "--runtime-dir", runtime.toString(), "-drive", "file=x");
        assertEquals(2, noFormat.code(), noFormat.output());
        assertEquals(List.of("ferry run: -drive file=x: format= is required (raw or qcow2): Ferry never guesses formats"),
                noFormat.output().lines().toList());

        Result unknown = ferry("run", "--runtime-dir", runtime.toString(), "-drive", "file=x,format=raw", "-vga", "std");
        assertEquals(2, unknown.code(), unknown.output());
        assertEquals(1, unknown.output().lines().count(), unknown.output());
        assertTrue(unknown.output().startsWith("ferry run: unknown option -vga "), unknown.output());
        assertFalse(Files.exists(runtime), "nothing started, not even the runtime directory");

        Result missingDisk = ferry("run", "-name", NAME + "-b", "--runtime-dir", runtime.toString(),
                "-drive", "file=" + tmp.resolve("absent.raw") + ",format=raw");
        assertEquals(1, missingDisk.code(), missingDisk.output());
        assertTrue(missingDisk.output().contains("ferry run: " + NAME + "-b: disk disk0: " + tmp.resolve("absent.raw")
                + " does not exist"), missingDisk.output());
        assertFalse(missingDisk.output().contains("\tat "), "no stack trace: " + missingDisk.output());
        assertEquals(List.of(), list(runtime), "its runtime directory is removed");
    }

    // ---- (c) QEMU killed -----------------------------------------------------------------------------------------

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void shouldNoticeQemuKilledExitNonZeroAndCleanUp() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        RawImage.create(disk, DISK_BYTES).close();
        try (LocalHost host = start("qkill", disk, "idle")) {
            assertEquals("VM status: running", host.monitor("info status"));      // QEMU is up: the monitor starts after it
            ProcessHandle qemu = qemuOf(host, NAME + "-qkill");
            assertTrue(qemu.destroyForcibly());
            int code = host.awaitExit(EXIT_TIMEOUT_MS);
            String log = read(host.ferryLog());
            assertNotEquals(0, code, log);
            assertTrue(log.contains("ferry: " + NAME + "-qkill: QEMU exited unexpectedly with status 137 (signal 9)"), log);
            assertFalse(log.contains("\tat "), "no stack trace: " + log);
            assertCleanedUp(host);
            java.util.regex.Matcher named = Pattern.compile("its log: (\\S+)").matcher(log);
            assertTrue(named.find(), log);
            assertTrue(Files.isRegularFile(Path.of(named.group(1))), "the log the message names exists after exit: " + named.group(1));
        }
    }

    // ---- (d) Ferry killed ----------------------------------------------------------------------------------------

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void shouldKeepTheGuestRunningAndWritingWhenFerryIsKilled() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        RawImage.create(disk, DISK_BYTES).close();
        Path dir = tmp.resolve("fkill");
        long killedPid;
        String serial;
        try (LocalHost host = LocalHost.start("fkill", ferry, dir, args(NAME + "-fkill", disk, "write,rate=1M,seconds=300"))) {
            host.awaitSerial("heartbeat seq=", BOOT_TIMEOUT_MS);
            ProcessHandle qemu = qemuOf(host, NAME + "-fkill");
            killedPid = host.process().pid();
            host.process().destroyForcibly();
            assertTrue(host.process().waitFor(10, TimeUnit.SECONDS));
            long before = seq(HEARTBEAT, host.lastSerialLine("ferry-guest: heartbeat"));
            long deadline = System.currentTimeMillis() + 60_000;
            while (seq(HEARTBEAT, host.lastSerialLine("ferry-guest: heartbeat")) < before + 100
                    && System.currentTimeMillis() < deadline) {
                Thread.sleep(200);
            }
            assertTrue(qemu.isAlive(), "QEMU died with the killed ferry: the guest was lost");
            assertTrue(seq(HEARTBEAT, host.lastSerialLine("ferry-guest: heartbeat")) >= before + 100,
                    "the guest stopped writing after ferry was killed");

            Path runDir = dir.resolve("run").resolve("ferry-" + NAME + "-fkill-" + killedPid);
            assertTrue(Files.exists(runDir.resolve("qmp.sock")), "QEMU's QMP socket is gone: " + tree(dir));
            // The documented way back to a VM whose ferry died: QEMU's own QMP socket in the runtime directory.
            try (ferry.qmp.QmpClient qmp = new ferry.qmp.QmpClient(runDir.resolve("qmp.sock"))) {
                qmp.start(10_000);
                qmp.execute(new ferry.qmp.QmpCommand.Stop());
                long seqAtStop = seq(HEARTBEAT, host.lastSerialLine("ferry-guest: heartbeat"));
                qmp.execute(new ferry.qmp.QmpCommand.Quit());
                assertTrue(awaitGone(qemu.pid(), 20_000), "QEMU did not quit through its QMP socket");
                VerifyReport report = RecordVerifier.verify(disk);
                assertEquals(0, report.badBlocks(), report.toString());
                assertTrue(report.highestSeq() >= seqAtStop, "records written after ferry died are missing: " + report);
            }
        }
    }

    // ---- (e) SIGTERM ---------------------------------------------------------------------------------------------

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void shouldStopQemuAndFlushOnSigterm() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        RawImage.create(disk, DISK_BYTES).close();
        try (LocalHost host = start("term", disk, "write,rate=2M,seconds=300")) {
            host.awaitSerial("heartbeat seq=", BOOT_TIMEOUT_MS);
            ProcessHandle qemu = qemuOf(host, NAME + "-term");
            Thread.sleep(2_000);
            long heartbeatSeq = seq(HEARTBEAT, host.lastSerialLine("heartbeat seq="));
            host.process().destroy();                                            // SIGTERM
            int code = host.awaitExit(EXIT_TIMEOUT_MS);
            String log = read(host.ferryLog());
            assertEquals(0, code, "a clean stop on SIGTERM exits 0, as QEMU and qemu-nbd do: " + log);
            assertTrue(log.contains("ferry: " + NAME + "-term: terminating on signal 15 (SIGTERM)"), log);
            assertFalse(log.contains("\tat "), "no stack trace: " + log);
            assertTrue(awaitGone(qemu.pid(), 1_000), "QEMU was stopped before ferry exited");
            assertCleanedUp(host);
            assertTrue(Files.isRegularFile(host.qemuLog(NAME + "-term")), "QEMU's log is kept after ferry exits: "
                    + host.qemuLog(NAME + "-term"));

            VerifyReport report = RecordVerifier.verify(disk);
            assertEquals(0, report.badBlocks(), report.toString());
            assertTrue(report.highestSeq() >= heartbeatSeq, "records up to heartbeat seq " + heartbeatSeq
                    + " were acknowledged before SIGTERM, so they are on the disk: " + report);
        }
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    private LocalHost start(String label, Path disk, String workload) throws IOException {
        return LocalHost.start(label, ferry, tmp.resolve(label), args(NAME + "-" + label, disk, workload));
    }

    private static List<String> args(String name, Path disk, String workload) {
        return List.of("-name", name, "-m", "256", "-accel", "tcg",
                "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.cpio.gz").toString(),
                "-append", "console=ttyS0 quiet panic=-1 ferry.workload=" + workload,
                "-drive", "file=" + disk + ",format=raw,if=virtio,id=disk0", "--qemu-arg", "-no-reboot");
    }

    /** Ferry exited: its runtime directory and monitor socket are gone. */
    private static void assertCleanedUp(LocalHost host) throws IOException {
        Path runtime = host.dir().resolve("run");
        assertEquals(List.of(), list(runtime), () -> "runtime directory removed; left: " + tree(runtime) + "\n" + read(host.ferryLog()));
        assertFalse(Files.exists(host.dir().resolve("monitor.sock")), "monitor socket removed");
    }

    /** The QEMU child of this ferry, checked to be the one with our VM's unique name. */
    private static ProcessHandle qemuOf(LocalHost host, String name) {
        List<ProcessHandle> qemus = host.process().toHandle().descendants()
                .filter(p -> p.info().command().map(c -> c.contains("qemu-system")).orElse(false))
                .toList();
        assertEquals(1, qemus.size(), "one QEMU under ferry pid " + host.process().pid() + ": " + qemus);
        ProcessHandle qemu = qemus.getFirst();
        String[] arguments = qemu.info().arguments().orElseThrow();
        assertEquals(name, arguments[List.of(arguments).indexOf("-name") + 1], "our VM, not a neighbour's");
        return qemu;
    }

    /** Waits until {@code pid} is gone (or a zombie nobody reaped yet); true if it went. */
    private static boolean awaitGone(long pid, long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        do {
            if (!running(pid)) {
                return true;
            }
            Thread.sleep(100);
        } while (System.nanoTime() < deadline);
        return !running(pid);
    }

    private static boolean running(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            return stat.charAt(stat.lastIndexOf(')') + 2) != 'Z';
        } catch (IOException gone) {
            return false;
        }
    }

    private static long seq(Pattern pattern, String line) {
        Matcher m = pattern.matcher(line + " ");
        assertTrue(m.find(), line);
        return Long.parseLong(m.group(1));
    }

    private static List<String> list(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private static String tree(Path dir) {
        try (Stream<Path> files = Files.walk(dir)) {
            return files.map(Path::toString).toList().toString();
        } catch (IOException e) {
            return "(unreadable " + dir + ": " + e.getMessage() + ")";
        }
    }

    private static String read(Path file) {
        try {
            return Files.exists(file) ? Files.readString(file, StandardCharsets.ISO_8859_1) : "(no " + file + ")";
        } catch (IOException e) {
            return "(unreadable " + file + ": " + e.getMessage() + ")";
        }
    }

    private record Result(int code, String output) { }

    /** Runs {@code ferry ARGS} to its end (stdout and stderr together). */
    private static Result ferry(String... args) throws IOException, InterruptedException {
        List<String> command = new ArrayList<>(ferry);
        command.addAll(List.of(args));
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        byte[] output = process.getInputStream().readAllBytes();
        if (!process.waitFor(30, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor();
            fail("ferry " + String.join(" ", args) + " did not exit within 30 s");
        }
        return new Result(process.exitValue(), new String(output, StandardCharsets.UTF_8));
    }
}
