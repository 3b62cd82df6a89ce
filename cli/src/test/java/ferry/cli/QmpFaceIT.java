package ferry.cli;

import static ferry.cli.VmHosts.ferry;
import static ferry.cli.VmHosts.freePort;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.raw.RawImage;
import ferry.qmp.Json;
import ferry.qmp.JsonDecoder;
import ferry.testkit.Tools;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Ferry's QMP server tested for compatibility, not self-consistency: one QMP client script written from
 * QEMU's QMP specification alone ({@code cli/src/test/resources/qmp_client.py}, Python standard library)
 * runs the same steps against plain QEMU 7.2 and against {@code ferry run}'s QMP socket, and the replies
 * must have the same shapes (keys and JSON types). Then the same script migrates a writing guest with its
 * disk through Ferry's QMP socket, following it by events alone, and the guest's records verify on the
 * destination.
 */
@Tag("vm")
class QmpFaceIT {
    private static final long DISK_SIZE = 64L << 20;
    /** Unique per test JVM: other engineers run QEMU guests beside us. */
    private static final String NAME = "qmpit-" + ProcessHandle.current().pid();
    private static Path repo;
    private static Path guest;
    private static Path script;

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuest() {
        Tools.require("qemu-system-x86_64");
        Tools.require("python3");
        repo = Path.of(System.getProperty("user.dir")).toAbsolutePath().getParent();
        assertTrue(Files.isRegularFile(repo.resolve("cli/target/ferry.jar")), "run after package");
        Tools.run(300, "bash", repo.resolve("guest/build.sh").toString()).orFail();
        guest = repo.resolve("guest/out");
        script = repo.resolve("cli/src/test/resources/qmp_client.py");
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void scriptFromTheQmpSpecificationSeesTheSameReplyShapesFromFerryAsFromQemu() throws Exception {
        Path plainDisk = tmp.resolve("plain/disk.raw");
        Path ferryDisk = tmp.resolve("ferry/disk.raw");
        Files.createDirectories(plainDisk.getParent());
        Files.createDirectories(ferryDisk.getParent());
        RawImage.create(plainDisk, DISK_SIZE).close();
        RawImage.create(ferryDisk, DISK_SIZE).close();
        Path plainSocket = tmp.resolve("plain/qmp.sock");
        Process qemu = new ProcessBuilder("qemu-system-x86_64", "-name", NAME + "-plain", "-machine", "pc", "-accel", "tcg",
                "-m", "128", "-nodefaults", "-display", "none", "-drive", "file=" + plainDisk + ",format=raw,if=virtio,id=disk0",
                "-qmp", "unix:" + plainSocket + ",server,nowait").redirectErrorStream(true)
                .redirectOutput(tmp.resolve("plain/qemu.log").toFile()).start();
        Path unix = tmp.resolve("ferry/qmp.sock");
        Path chardev = tmp.resolve("ferry/qmp-chardev.sock");
        int tcpPort = freePort();
        try (LocalHost ferry = LocalHost.start("ferry", ferry(), tmp.resolve("ferry"), List.of("-name", NAME, "-m", "128",
                "-drive", "file=" + ferryDisk + ",format=raw,if=virtio",
                "-qmp", "unix:" + unix + ",server,nowait", "-qmp", "tcp:127.0.0.1:" + tcpPort + ",server,nowait",
                "-chardev", "socket,id=qmp2,path=" + chardev + ",server=on,wait=off", "-mon", "chardev=qmp2,mode=control"))) {
            awaitListening(plainSocket, qemu);
            assertEquals("VM status: running", ferry.monitor("info status"));     // the monitor starts after the QMP servers
            Json qemuShapes = steps(plainSocket.toString());
            for (String server : List.of(unix.toString(), "tcp:127.0.0.1:" + tcpPort, chardev.toString())) {
                Json ferryShapes = steps(server);
                assertCompatible("", qemuShapes, ferryShapes);
            }
        } finally {
            qemu.destroyForcibly().waitFor();
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void scriptFromTheQmpSpecificationMigratesAVmWithItsDiskFollowingItByEventsAlone() throws Exception {
        Path sourceDisk = tmp.resolve("src/disk.raw");
        Files.createDirectories(sourceDisk.getParent());
        RawImage.create(sourceDisk, DISK_SIZE).close();
        Path qmp = tmp.resolve("src/qmp.sock");
        Path destinationQmp = tmp.resolve("dst/qmp.sock");
        int port = freePort();
        try (LocalHost source = LocalHost.start("source", ferry(), tmp.resolve("src"), vmArgs(sourceDisk, "-qmp",
                "unix:" + qmp + ",server,nowait"));
             LocalHost destination = LocalHost.start("destination", ferry(), tmp.resolve("dst"),
                     vmArgs(tmp.resolve("dst/disk.raw"), "-qmp", "unix:" + destinationQmp + ",server,nowait", "-incoming", "defer"))) {
            source.awaitSerial("heartbeat seq=", 120_000);
            assertEquals("VM status: paused (inmigrate)", destination.monitor("info status"));
            // the destination the libvirt way: -incoming defer, then QMP migrate-incoming
            Tools.Result listen = Tools.run(30, "python3", script.toString(), "incoming", destinationQmp.toString(),
                    "tcp:127.0.0.1:" + port);
            assertEquals(0, listen.exitCode(), "migrate-incoming: " + listen.stdout() + listen.stderr());
            Tools.Result run = Tools.run(150, "python3", script.toString(), "migrate", qmp.toString(), "tcp:127.0.0.1:" + port, "140");
            assertEquals(0, run.exitCode(), "the script's migration: " + run.stdout() + run.stderr());
            Json.Obj seen = JsonDecoder.parse(run.stdout()).asObject();
            assertEquals(List.of("setup", "active", "completed"), strings(seen.array("statuses")), seen.toString());
            assertTrue(seen.number("passes") >= 1, "MIGRATION_PASS events: " + seen);
            Json.Obj info = seen.object("query-migrate");
            assertEquals("completed", info.string("status"), info.toString());
            assertEquals(DISK_SIZE, info.object("disk").number("total"), info.toString());
            assertEquals(0, info.object("disk").number("remaining"), info.toString());
            assertTrue(info.object("x-ferry").number("wire-bytes") > 0, info.toString());

            assertEquals("VM status: running", destination.monitor("info status"));
            long seq = heartbeat(source);
            long deadline = System.currentTimeMillis() + 60_000;
            while (heartbeat(destination) <= seq && System.currentTimeMillis() < deadline) {
                Thread.sleep(250);
            }
            assertTrue(heartbeat(destination) > seq, "the guest does not write on the destination");
            assertEquals("", destination.monitor("stop"));
            VerifyReport report = RecordVerifier.verify(tmp.resolve("dst/disk.raw"));
            assertTrue(report.ok() && report.records() > 0, report.toString());
        }
    }

    private List<String> vmArgs(Path disk, String... more) {
        List<String> args = new ArrayList<>(List.of("-name", NAME, "-m", "128", "-kernel", guest.resolve("vmlinuz").toString(),
                "-initrd", guest.resolve("initramfs.cpio.gz").toString(),
                "-append", "console=ttyS0 quiet ferry.workload=write,rate=1M,seconds=600",
                "-drive", "file=" + disk + ",format=raw,if=virtio,id=disk0"));
        args.addAll(List.of(more));
        return args;
    }

    private static long heartbeat(LocalHost host) throws IOException {
        String line = host.lastSerialLine("heartbeat seq=");
        return line == null ? -1 : Long.parseLong(line.replaceAll(".*heartbeat seq=(\\d+).*", "$1"));
    }

    /** The script's {@code steps} against one server: its shapes, after it checked the protocol rules itself. */
    private Json steps(String server) throws Exception {
        Tools.Result run = Tools.run(60, "python3", script.toString(), "steps", server);
        assertEquals(0, run.exitCode(), "qmp_client.py steps " + server + ": " + run.stderr() + run.stdout());
        return JsonDecoder.parse(run.stdout());
    }

    /**
     * Same keys and JSON types everywhere. One allowance, for the greeting's capabilities: an empty array
     * (Ferry offers no out-of-band execution) is an instance of any array type.
     */
    private static void assertCompatible(String path, Json qemu, Json ferry) throws Exception {
        if (qemu instanceof Json.Obj q && ferry instanceof Json.Obj f) {
            if (q.members().size() == 1 && q.has("array") && f.has("array")) {
                List<Json> ferryElements = f.array("array");
                if (!ferryElements.isEmpty()) {
                    assertEquals(q.array("array"), ferryElements, "array elements at " + path);
                }
                return;
            }
            assertEquals(q.members().keySet(), f.members().keySet(), "members at " + (path.isEmpty() ? "/" : path));
            for (Map.Entry<String, Json> member : q.members().entrySet()) {
                assertCompatible(path + "/" + member.getKey(), member.getValue(), f.members().get(member.getKey()));
            }
            return;
        }
        assertEquals(qemu, ferry, "type at " + path);
    }

    private static List<String> strings(List<Json> values) throws Exception {
        List<String> out = new ArrayList<>();
        for (Json value : values) {
            out.add(value.asString());
        }
        return out;
    }

    private static void awaitListening(Path socket, Process qemu) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < deadline) {
            if (!qemu.isAlive()) {
                throw new IOException("plain QEMU exited with " + qemu.exitValue());
            }
            if (Files.exists(socket)) {
                try (SocketChannel probe = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                    probe.connect(UnixDomainSocketAddress.of(socket));
                    return;
                } catch (IOException notYet) {
                    // QEMU binds before it listens
                }
            }
            Thread.sleep(50);
        }
        throw new IOException("plain QEMU did not listen on " + socket);
    }
}
