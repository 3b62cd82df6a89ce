package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.testkit.Tools;
import ferry.tls.CertificateMaker;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * QEMU 7.2 (GnuTLS) accepts what {@code ferry certs} makes: qemu-nbd serves with the server pair and
 * {@code --tls-authz} on an {@code authz-simple} whose identity is the subject exactly as Ferry prints
 * it, and qemu-img connects with the client pair over TLS, checking the host name. So the files, the
 * host name check and Ferry's DN form agree with QEMU's.
 */
@Tag("interop")
class CertsQemuIT {
    @TempDir Path tmp;

    @Test
    void qemuAcceptsTheCertificatesAndFerrysDnForm() throws Exception {
        Tools.require("openssl");
        Tools.require("qemu-nbd");
        Tools.require("qemu-img");
        Path pki = tmp.resolve("pki");
        String clientDn = "C=GB,L=London,O=Example\\, Inc.,CN=src.example";
        CertificateMaker.make(pki, new CertificateMaker.Request(List.of("localhost", "127.0.0.1"), clientDn, 2, Optional.empty()));
        Path image = tmp.resolve("disk.raw");
        Tools.run(30, "qemu-img", "create", "-q", "-f", "raw", image.toString(), "1M").orFail();

        assertEquals(0, info(pki, image, clientDn, "host=localhost").exitCode(), "QEMU accepts Ferry's files and DN form");
        assertEquals(0, info(pki, image, clientDn, "host=127.0.0.1").exitCode(), "the IP subjectAltName");
        Tools.Result wrongHost = info(pki, image, clientDn, "host=127.0.0.1,tls-hostname=other.example");
        assertTrue(wrongHost.stderr().contains("Certificate does not match the hostname other.example"), wrongHost.stderr());
        Tools.Result otherOrder = info(pki, image, "CN=src.example,O=Example\\, Inc.,L=London,C=GB", "host=localhost");
        assertTrue(otherOrder.exitCode() != 0, "QEMU 7.2 refuses the RDNs in the other order, as Ferry does");
    }

    /** qemu-img info over NBD+TLS against a qemu-nbd with authz-simple,identity=IDENTITY. */
    private Tools.Result info(Path pki, Path image, String identity, String where) throws Exception {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        Process nbd = new ProcessBuilder("qemu-nbd", "--object", "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=server",
                "--object", "authz-simple,id=auth0,identity=" + identity.replace(",", ",,"), "--tls-creds", "tls0",
                "--tls-authz", "auth0", "-f", "raw", "-b", "127.0.0.1", "-p", String.valueOf(port), "-t", image.toString())
                .redirectErrorStream(true).redirectOutput(tmp.resolve("qemu-nbd.log").toFile()).start();
        try {
            awaitListening(port, nbd);
            return Tools.run(60, "qemu-img", "info", "--object", "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=client",
                    "--image-opts", "driver=nbd," + where + ",port=" + port + ",tls-creds=tls0");
        } finally {
            nbd.destroy();
            nbd.waitFor(10, TimeUnit.SECONDS);
        }
    }

    private void awaitListening(int port, Process nbd) throws Exception {
        long deadline = System.currentTimeMillis() + 10_000;
        while (System.currentTimeMillis() < deadline) {
            try (Socket probe = new Socket("127.0.0.1", port)) {
                return;
            } catch (IOException e) {
                if (!nbd.isAlive()) {
                    throw new AssertionError("qemu-nbd exited: " + Files.readString(tmp.resolve("qemu-nbd.log")));
                }
                Thread.sleep(50);
            }
        }
        throw new AssertionError("qemu-nbd does not listen on " + port);
    }
}
