package ferry.cli;

import static ferry.cli.VmHosts.awaitEnd;
import static ferry.cli.VmHosts.ferry;
import static ferry.cli.VmHosts.freePort;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.raw.RawImage;
import ferry.testkit.Tools;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code ferry attach} to QEMUs that Ferry did not start: a writing guest started by hand with
 * {@code -qmp unix:PATH,server,nowait} migrates with its disk into a second hand-started QEMU waiting with
 * {@code -incoming defer} (its image created empty, of the same size), and the guest's records verify there;
 * Ferry never stops either QEMU except on {@code quit}. Also: a VM whose {@code ferry run} was killed is
 * taken back through the QMP socket left in the runtime directory.
 */
@Tag("vm")
class AttachIT {
    private static final long DISK_SIZE = 64L << 20;
    private static final String NAME = "attachit-" + ProcessHandle.current().pid();
    private static Path repo;
    private static Path guest;

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuest() {
        Tools.require("qemu-system-x86_64");
        repo = Path.of(System.getProperty("user.dir")).toAbsolutePath().getParent();
        assertTrue(Files.isRegularFile(repo.resolve("cli/target/ferry.jar")), "run after package");
        Tools.run(300, "bash", repo.resolve("guest/build.sh").toString()).orFail();
        guest = repo.resolve("guest/out");
    }

    /** A QEMU started by hand, as a user or a script would: the demo guest writing, QMP on DIR/qemu.sock, serial to DIR/serial.log. */
    private Process handStarted(Path dir, Path disk, String... more) throws IOException {
        Files.createDirectories(dir);
        List<String> command = new ArrayList<>(List.of("qemu-system-x86_64", "-name", NAME, "-machine", "pc", "-accel", "tcg",
                "-m", "128", "-nodefaults", "-display", "none", "-kernel", guest.resolve("vmlinuz").toString(),
                "-initrd", guest.resolve("initramfs.cpio.gz").toString(),
                "-append", "console=ttyS0 quiet ferry.workload=write,rate=1M,seconds=600",
                "-drive", "file=" + disk + ",format=raw,if=virtio,id=disk0",
                "-serial", "file:" + dir.resolve("serial.log"), "-qmp", "unix:" + dir.resolve("qemu.sock") + ",server,nowait"));
        command.addAll(List.of(more));
        return new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(dir.resolve("qemu.log").toFile()).start();
    }

    private static void awaitSocket(Path socket, Process qemu) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        while (!Files.exists(socket) && System.currentTimeMillis() < deadline) {
            assertTrue(qemu.isAlive(), "QEMU exited before opening " + socket);
            Thread.sleep(50);
        }
        Thread.sleep(200);                                 // QEMU binds, then listens
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void attachMigratesAHandStartedQemuIntoAnotherAndItsRecordsVerify() throws Exception {
        Path sourceDisk = tmp.resolve("src/disk.raw");
        Path destinationDisk = tmp.resolve("dst/disk.raw");
        Files.createDirectories(sourceDisk.getParent());
        Files.createDirectories(destinationDisk.getParent());
        RawImage.create(sourceDisk, DISK_SIZE).close();
        RawImage.create(destinationDisk, DISK_SIZE).close();     // with attach, QEMU opens it: it must exist
        Process sourceQemu = handStarted(tmp.resolve("src"), sourceDisk);
        Process destinationQemu = handStarted(tmp.resolve("dst"), destinationDisk, "-incoming", "defer");
        int port = freePort();
        try {
            awaitSocket(tmp.resolve("src/qemu.sock"), sourceQemu);
            awaitSocket(tmp.resolve("dst/qemu.sock"), destinationQemu);
            try (LocalHost source = LocalHost.attach("source", ferry(), tmp.resolve("src"),
                    List.of("--qmp", tmp.resolve("src/qemu.sock").toString()));
                 LocalHost destination = LocalHost.attach("destination", ferry(), tmp.resolve("dst"),
                         List.of("--qmp", tmp.resolve("dst/qemu.sock").toString(), "-incoming", "tcp:127.0.0.1:" + port))) {
                source.awaitSerial("heartbeat seq=", 120_000);
                assertEquals("VM status: running", source.monitor("info status"));
                assertEquals("VM status: paused (inmigrate)", destination.monitor("info status"));
                assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
                InfoMigrateText done = awaitEnd(source, 150_000);
                assertEquals("completed", done.status(), done.fields().toString());
                assertEquals("VM status: paused (postmigrate)", source.monitor("info status"));
                assertEquals("VM status: running", destination.monitor("info status"));
                long seq = heartbeat(source);
                long deadline = System.currentTimeMillis() + 60_000;
                while (heartbeat(destination) <= seq && System.currentTimeMillis() < deadline) {
                    Thread.sleep(250);
                }
                assertTrue(heartbeat(destination) > seq, "the guest does not write on the destination");
                assertEquals("", destination.monitor("stop"));
                VerifyReport report = RecordVerifier.verify(destinationDisk);
                assertTrue(report.ok() && report.highestSeq() > seq, report + " vs heartbeat " + seq);

                source.monitor("quit");                          // quit: the one way Ferry stops a QEMU it attached to
                assertEquals(0, source.awaitExit(30_000), read(source.ferryLog()));
                assertTrue(sourceQemu.waitFor(30, TimeUnit.SECONDS), "the source QEMU did not quit");
            }
            assertTrue(destinationQemu.isAlive(), "ferry attach stopped the QEMU it attached to when it was stopped itself");
        } finally {
            sourceQemu.destroyForcibly().waitFor();
            destinationQemu.destroyForcibly().waitFor();
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void attachTakesBackAVmWhoseFerryRunWasKilled() throws Exception {
        Path disk = tmp.resolve("run/disk.raw");
        Files.createDirectories(disk.getParent());
        RawImage.create(disk, DISK_SIZE).close();
        List<String> args = List.of("-name", NAME, "-m", "128", "-kernel", guest.resolve("vmlinuz").toString(),
                "-initrd", guest.resolve("initramfs.cpio.gz").toString(),
                "-append", "console=ttyS0 quiet ferry.workload=write,rate=256k,seconds=600",
                "-drive", "file=" + disk + ",format=raw,if=virtio,id=disk0");
        Path qmpSocket;
        long qemuPid;
        try (LocalHost run = LocalHost.start("run", ferry(), tmp.resolve("run"), args)) {
            run.awaitSerial("heartbeat seq=", 120_000);
            try (Stream<Path> dirs = Files.list(tmp.resolve("run/run"))) {
                Path runtime = dirs.filter(d -> d.getFileName().toString().startsWith("ferry-")).findFirst().orElseThrow();
                qmpSocket = runtime.resolve("qmp.sock");
                qemuPid = Long.parseLong(Files.readString(runtime.resolve("qemu.pid")).strip());
            }
            run.process().destroyForcibly().waitFor();       // kill -9: QEMU goes on
        }
        try {
            assertTrue(ProcessHandle.of(qemuPid).map(ProcessHandle::isAlive).orElse(false), "QEMU died with ferry run");
            try (LocalHost back = LocalHost.attach("back", ferry(), tmp.resolve("back"), List.of("--qmp", qmpSocket.toString()))) {
                assertEquals("VM status: running", back.monitor("info status"));
                long before = heartbeatIn(tmp.resolve("run/serial.log"));
                long deadline = System.currentTimeMillis() + 30_000;
                while (heartbeatIn(tmp.resolve("run/serial.log")) <= before && System.currentTimeMillis() < deadline) {
                    Thread.sleep(250);
                }
                assertTrue(heartbeatIn(tmp.resolve("run/serial.log")) > before, "the guest stopped writing");
                back.monitor("quit");
                assertEquals(0, back.awaitExit(30_000), read(back.ferryLog()));
            }
            long deadline = System.currentTimeMillis() + 30_000;
            while (ProcessHandle.of(qemuPid).map(ProcessHandle::isAlive).orElse(false) && System.currentTimeMillis() < deadline) {
                Thread.sleep(100);
            }
            assertTrue(ProcessHandle.of(qemuPid).map(p -> !p.isAlive()).orElse(true), "quit through ferry attach did not end QEMU");
            assertTrue(RecordVerifier.verify(disk).ok());
        } finally {
            ProcessHandle.of(qemuPid).ifPresent(ProcessHandle::destroyForcibly);
        }
    }

    private static long heartbeat(LocalHost host) throws IOException {
        String line = host.lastSerialLine("heartbeat seq=");
        return line == null ? -1 : Long.parseLong(line.replaceAll(".*heartbeat seq=(\\d+).*", "$1"));
    }

    private static long heartbeatIn(Path serial) throws IOException {
        long seq = -1;
        for (String line : Files.readAllLines(serial, java.nio.charset.StandardCharsets.ISO_8859_1)) {
            if (line.contains("heartbeat seq=")) {
                seq = Long.parseLong(line.replaceAll(".*heartbeat seq=(\\d+).*", "$1"));
            }
        }
        return seq;
    }

    private static String read(Path file) throws IOException {
        return Files.exists(file) ? Files.readString(file) : "";
    }
}
