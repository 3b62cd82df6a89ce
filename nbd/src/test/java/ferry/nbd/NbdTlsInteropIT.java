package ferry.nbd;

import static org.junit.jupiter.api.Assertions.*;

import ferry.image.raw.RawImage;
import ferry.nbd.tls.OpensslCerts;
import ferry.tls.TlsCredentials;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Our NbdServer with TLS (verify-peer=on), driven by QEMU 7.2 (qemu-img, qemu-io with
 * {@code --object tls-creds-x509,...,endpoint=client}) and libnbd 1.14 (nbdinfo, nbdcopy with
 * {@code nbds+unix://...&tls-certificates=DIR}), with certificates that openssl makes here.
 * QEMU checks the server certificate against a host name even on a unix socket: {@code tls-hostname=localhost}.
 */
@Tag("interop")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class NbdTlsInteropIT {
    static final String SIZE = "67108864";
    @TempDir static Path tmp;   // shared by the tests: the certificates and the server are made once, so no test
                                // relies on what another wrote to the disk
    Path disk;
    RawImage image;
    NbdServer server;
    Path socket;
    OpensslCerts ca;
    Path clientDir;     // ca-cert.pem + an ECDSA client pair from the server's CA
    Path impostorDir;   // ca-cert.pem (the server's CA) + a client pair from another CA of the same name
    Path noCertDir;     // ca-cert.pem only
    final List<String> serverLog = new CopyOnWriteArrayList<>();
    final Handler logHandler = new Handler() {
        @Override public void publish(LogRecord r) { serverLog.add(r.getMessage()); }
        @Override public void flush() { }
        @Override public void close() { }
    };
    String tlsUri;

    @BeforeAll
    void serve() throws IOException {
        Tools.require("openssl");
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        ca = OpensslCerts.ca(tmp.resolve("ca"), "Ferry interop CA");
        Path serverDir = ca.serverDir(tmp.resolve("server"));
        clientDir = ca.clientDir(tmp.resolve("client"), ca.caCert(), "interop client");
        // An impostor CA that bears the real one's name: gnutls offers its client certificate (the
        // issuer is one the server asks for), so only our server's chain check can refuse it.
        OpensslCerts impostor = OpensslCerts.ca(tmp.resolve("impostor-ca"), "Ferry interop CA");
        impostorDir = impostor.clientDir(tmp.resolve("impostor"), ca.caCert(), "interop client");
        noCertDir = Files.createDirectories(tmp.resolve("no-cert"));
        Files.copy(ca.caCert(), noCertDir.resolve("ca-cert.pem"));

        disk = tmp.resolve("disk.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "64M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0xa1 0 1M", "-c", "write -P 0xb2 32M 4M", disk.toString()).orFail();
        image = RawImage.open(disk, false);
        socket = tmp.resolve("nbd.sock");
        Logger.getLogger(Connection.class.getName()).addHandler(logHandler);
        server = NbdServer.unix(socket, List.of(new NbdExport("disk", image, false)))
                .tls(TlsCredentials.load("tls0", serverDir, ferry.tls.TlsEndpoint.SERVER, true, true)).start();
        tlsUri = "nbds+unix:///disk?socket=" + socket + "&tls-certificates=" + clientDir;
    }

    @AfterAll
    void stop() throws IOException {
        Logger.getLogger(Connection.class.getName()).removeHandler(logHandler);
        if (server != null) {
            server.close();
            image.close();
        }
    }

    /** A QEMU command line opening the export through TLS with the client credentials in {@code dir}. */
    private List<String> qemu(String tool, Path dir, String... commands) {
        return qemuWith(tool, dir, "", commands);
    }

    /** As {@link #qemu}, with more properties for the tls-creds-x509 object ({@code ",sanity-check=off"}). */
    private List<String> qemuWith(String tool, Path dir, String objectOptions, String... commands) {
        List<String> c = new ArrayList<>(List.of(tool));
        if (tool.equals("qemu-img")) {
            c.addAll(List.of(commands));
        }
        c.addAll(List.of("--object", "tls-creds-x509,id=tls0,dir=" + dir + ",endpoint=client" + objectOptions, "--image-opts",
                "driver=nbd,server.type=unix,server.path=" + socket + ",export=disk,tls-creds=tls0,tls-hostname=localhost"));
        if (tool.equals("qemu-io")) {
            for (String command : commands) {
                c.addAll(List.of("-c", command));
            }
        }
        return c;
    }

    @Test
    void qemuImgSeesTheExportThroughTls() {
        String info = Tools.run(60, qemu("qemu-img", clientDir, "info", "--output=json")).orFail().stdout();
        assertTrue(info.contains("\"virtual-size\": " + SIZE), info);
    }

    /** ECDSA is the default above; Ed25519 and RSA-PSS client keys work too (plain RSA ones do not: gnutls 3.7 sends none). */
    @ParameterizedTest
    @EnumSource(value = OpensslCerts.Key.class, names = {"ED25519", "RSA_PSS"})
    void clientKeysOtherThanEcdsaWorkWithQemuAndLibnbd(OpensslCerts.Key key) throws IOException {
        Path dir = ca.clientDir(tmp.resolve("client-" + key), ca.caCert(), "client " + key, key);
        Tools.run(60, qemu("qemu-img", dir, "info")).orFail();
        Tools.require("nbdinfo");
        Tools.run(30, "nbdinfo", "--size", "nbds+unix:///disk?socket=" + socket + "&tls-certificates=" + dir).orFail();
    }

    @Test
    void qemuIoWritesAndReadsThroughTls() throws IOException {
        String out = Tools.run(60, qemu("qemu-io", clientDir, "write -P 0x5a 3M 1M", "write -z 8M 64k", "flush",
                "read -P 0x5a 3M 1M", "read -P 0 8M 64k")).orFail().stdout();
        assertFalse(out.contains("Pattern verification failed"), out);
        image.flush();
        Tools.run(60, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0x5a 3M 1M", disk.toString()).orFail();
    }

    @Test
    void nbdinfoConnectsWithTls() {
        Tools.require("nbdinfo");
        String info = Tools.run(30, "nbdinfo", tlsUri).orFail().stdout();
        assertTrue(info.contains("with TLS"), info);
        assertEquals(SIZE, Tools.run(30, "nbdinfo", "--size", tlsUri).orFail().stdout().trim());
    }

    @Test
    void nbdcopyCopiesBothWaysThroughTls() throws IOException {
        Tools.require("nbdcopy");
        Path in = tmp.resolve("in.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", in.toString(), "64M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0x77 10M 6M", "-c", "write -P 0x78 40M 1M", in.toString()).orFail();
        Tools.run(120, "nbdcopy", in.toString(), tlsUri).orFail();
        image.flush();
        assertEquals(-1, Files.mismatch(in, disk));
        Path out = tmp.resolve("out.raw");
        Tools.run(120, "nbdcopy", tlsUri, out.toString()).orFail();
        assertEquals(-1, Files.mismatch(disk, out));
    }

    @Test
    void plaintextClientsAreRefusedWithTlsRequiredAndTheServerGoesOn() {
        String plain = "nbd+unix:///disk?socket=" + socket;
        Tools.Result qemu = Tools.run(60, "qemu-img", "info", plain);
        assertNotEquals(0, qemu.exitCode());
        assertTrue(qemu.stderr().contains("TLS negotiation required") && qemu.stderr().contains("TLS required: send STARTTLS first"),
                qemu.stderr());
        Tools.require("nbdinfo");
        Tools.Result libnbd = Tools.run(60, "env", "LIBNBD_DEBUG=1", "nbdinfo", plain);
        assertNotEquals(0, libnbd.exitCode());
        assertTrue(libnbd.stderr().contains("server error message: TLS required: send STARTTLS first"), libnbd.stderr());
        Tools.run(60, qemu("qemu-img", clientDir, "info")).orFail();
    }

    @Test
    void clientsWithoutACertificateFromTheCaAreRefusedByTheServerWhichGoesOn() throws Exception {
        byte[] before = Files.readAllBytes(disk);
        // QEMU checks its own certificate against its ca-cert.pem first; sanity-check=off lets the impostor try
        record Attempt(List<String> command, String serverSays) {}
        List<Attempt> attempts = List.of(
                new Attempt(qemuWith("qemu-io", impostorDir, ",sanity-check=off", "write -P 0x99 0 64k"), "(certificate_unknown)"),
                new Attempt(List.of("nbdinfo", "nbds+unix:///disk?socket=" + socket + "&tls-certificates=" + impostorDir), "(certificate_unknown)"),
                new Attempt(qemu("qemu-io", noCertDir, "write -P 0x99 0 64k"), "(certificate_required)"));
        Tools.require("nbdinfo");
        for (Attempt a : attempts) {
            serverLog.clear();
            Tools.Result r = Tools.run(60, a.command());
            String all = r.stdout() + r.stderr();
            assertNotEquals(0, r.exitCode(), all);
            assertFalse(all.contains("wrote 65536/65536"), all);
            String closed = awaitClosedLine();
            assertTrue(closed.contains("tls handshake failed: " + a.serverSays()), a.command() + "\n" + closed);
        }
        image.flush();
        assertArrayEquals(before, Files.readAllBytes(disk));
        assertEquals(SIZE, Tools.run(30, "nbdinfo", "--size", tlsUri).orFail().stdout().trim());
    }

    private String awaitClosedLine() throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline) {
            for (String line : serverLog) {
                if (line.contains("nbd connection closed")) {
                    return line;
                }
            }
            Thread.sleep(20);
        }
        return "no connection closed within 10 s: " + serverLog;
    }

    @Test
    void overTcpClientsCheckTheServerCertificateAgainstTheAddress() throws IOException {
        try (NbdServer tcp = NbdServer.tcp("127.0.0.1", 0, List.of(new NbdExport("disk", image, true)))
                .tls(TlsCredentials.load("tls0", tmp.resolve("server"), ferry.tls.TlsEndpoint.SERVER, true, true)).start()) {
            Tools.run(60, "qemu-img", "info", "--object", "tls-creds-x509,id=tls0,dir=" + clientDir + ",endpoint=client",
                    "--image-opts", "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=" + tcp.port()
                            + ",export=disk,tls-creds=tls0").orFail();
            Tools.require("nbdinfo");
            assertEquals(SIZE, Tools.run(30, "nbdinfo", "--size",
                    "nbds://127.0.0.1:" + tcp.port() + "/disk?tls-certificates=" + clientDir).orFail().stdout().trim());
            // the certificate names localhost and 127.0.0.1, not 127.0.0.2 (also this host)
            Tools.Result wrongName = Tools.run(60, "qemu-img", "info", "--object", "tls-creds-x509,id=tls0,dir=" + clientDir
                    + ",endpoint=client", "--image-opts", "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port="
                    + tcp.port() + ",export=disk,tls-creds=tls0,tls-hostname=ferry.example");
            assertNotEquals(0, wrongName.exitCode());
            assertTrue(wrongName.stderr().contains("does not match the hostname"), wrongName.stderr());
        }
    }

    @Test
    void verifyPeerOffServesQemuWithoutAClientCertificate() throws IOException {
        Path open = tmp.resolve("open.sock");
        Path serverDir = tmp.resolve("server");
        try (NbdServer lenient = NbdServer.unix(open, List.of(new NbdExport("disk", image, true)))
                .tls(TlsCredentials.load("tls0", serverDir, ferry.tls.TlsEndpoint.SERVER, false, true)).start()) {
            String info = Tools.run(60, "qemu-img", "info", "--output=json", "--object",
                    "tls-creds-x509,id=tls0,dir=" + noCertDir + ",endpoint=client", "--image-opts",
                    "driver=nbd,path=" + lenient.socketPath() + ",export=disk,tls-creds=tls0,tls-hostname=localhost").orFail().stdout();
            assertTrue(info.contains("\"virtual-size\": " + SIZE), info);
        }
    }
}
