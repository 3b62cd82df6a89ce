package ferry.cli;

import static ferry.cli.VmHosts.awaitEnd;
import static ferry.cli.VmHosts.ferry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.raw.RawImage;
import ferry.testkit.Tools;
import ferry.tls.CertificateMaker;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A writing guest migrates with its disk over TLS 1.3 between two {@code ferry run} processes, set up
 * QEMU's way: the destination starts with {@code -incoming defer}, gets {@code migrate_set_parameter
 * tls-creds} and {@code tls-authz}, then {@code migrate_incoming}; the source has client credentials.
 * A source without TLS is refused first (one line on each side, source VM running on), then the TLS
 * migration completes and the guest's records verify on the destination's disk.
 */
@Tag("vm")
class MigrationTlsIT {
    private static final long DISK_SIZE = 128L << 20;
    private static final String WORKLOAD = "write,rate=2M,seconds=600";
    private static Path repo;
    private static Path guest;

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuest() throws Exception {
        Tools.require("qemu-system-x86_64");
        Tools.require("openssl");
        repo = Path.of("..").toAbsolutePath().normalize();
        assertTrue(Files.exists(repo.resolve("cli/target/ferry.jar")), "the packaged jar is missing");
        Tools.run(300, repo.resolve("guest/build.sh").toString()).orFail();
        guest = repo.resolve("guest/out");
    }

    private List<String> vmArgs(Path disk, Path pki, String endpoint) {
        return new ArrayList<>(List.of("-name", "mig-tls", "-m", "192", "-kernel", guest.resolve("vmlinuz").toString(),
                "-initrd", guest.resolve("initramfs.cpio.gz").toString(),
                "-append", "console=ttyS0 quiet ferry.workload=" + WORKLOAD,
                "-drive", "file=" + disk + ",format=raw,if=virtio,id=disk0",
                "-object", "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=" + endpoint));
    }

    private static long heartbeat(LocalHost host) throws Exception {
        String line = host.lastSerialLine("heartbeat seq=");
        return line == null ? -1 : Long.parseLong(line.replaceAll(".*heartbeat seq=(\\d+).*", "$1"));
    }

    @Test
    void writingGuestMigratesInsideTlsAfterAPlaintextSourceWasRefused() throws Exception {
        Path pki = tmp.resolve("pki");
        CertificateMaker.make(pki, new CertificateMaker.Request(List.of("localhost", "127.0.0.1"), "O=Ferry Tests,CN=source.test", 2,
                Optional.empty()));
        Path sourceDisk = tmp.resolve("src/disk.raw");
        Files.createDirectories(sourceDisk.getParent());
        try (RawImage image = RawImage.create(sourceDisk, DISK_SIZE)) {
            // empty: the guest writes its records
        }
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        List<String> destinationArgs = vmArgs(tmp.resolve("dst/disk.raw"), pki, "server");
        destinationArgs.addAll(List.of("-incoming", "defer", "-object", "authz-simple,id=auth0,identity=O=Ferry Tests,,CN=source.test"));
        try (LocalHost source = LocalHost.start("source", ferry(), tmp.resolve("src"),
                vmArgs(sourceDisk, pki, "client"));
             LocalHost destination = LocalHost.start("dst", ferry(), tmp.resolve("dst"), destinationArgs)) {
            assertEquals("", destination.monitor("migrate_set_parameter tls-creds tls0"));
            assertEquals("", destination.monitor("migrate_set_parameter tls-authz auth0"));
            assertEquals("", destination.monitor("migrate_incoming tcp:127.0.0.1:" + port));
            assertTrue(destination.monitor("info migrate_parameters").contains("tls-creds: 'tls0'"));
            source.awaitSerial("heartbeat seq=", 120_000);

            // a source without TLS: refused before HELLO, one line on each side, the guest writes on
            assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
            InfoMigrateText refused = awaitEnd(source, 30_000);
            assertEquals("failed", refused.status());
            assertTrue(refused.field("ferry error").contains("this destination accepts TLS only (tls-creds tls0)"), refused.fields().toString());
            assertEquals("VM status: running", source.monitor("info status"));
            assertTrue(Files.readString(destination.ferryLog()).contains("refused an incoming migration from"),
                    "the destination's log names the refusal");
            assertEquals("VM status: paused (inmigrate)", destination.monitor("info status"));

            assertEquals("", source.monitor("migrate_set_parameter tls-creds tls0"));
            assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
            InfoMigrateText done = awaitEnd(source, 120_000);
            assertEquals("completed", done.status(), done.fields().toString());
            assertTrue(Files.readString(destination.ferryLog()).contains("over TLS 1.3"), "the session ran inside TLS 1.3");
            long seqAtSwitchover = heartbeat(source);
            long deadline = System.currentTimeMillis() + 30_000;
            while (heartbeat(destination) < seqAtSwitchover + 50 && System.currentTimeMillis() < deadline) {
                Thread.sleep(250);
            }
            assertTrue(heartbeat(destination) >= seqAtSwitchover + 50, "the guest does not write on at the destination");
            assertEquals("", destination.monitor("stop"));
            VerifyReport report = RecordVerifier.verify(tmp.resolve("dst/disk.raw"));
            assertTrue(report.ok(), report.toString());
            assertTrue(report.highestSeq() > seqAtSwitchover, report + " vs heartbeat " + seqAtSwitchover);
        }
    }
}
