package ferry.tls;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.testkit.Tools;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLSocket;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Loading QEMU's layout, QEMU's sanity check, and JSSE handshakes with Ferry's policy and refusal lines. */
class TlsCredentialsTest {
    @TempDir static Path tmp;
    private static TestPki pki;

    @BeforeAll
    static void makeCertificates() throws Exception {
        pki = new TestPki(tmp);
    }

    /** Both sides' outcome: the server's handshake and the client's handshake plus one read. */
    private record Outcome(Throwable server, Throwable client, String serverPeerDn) {}

    private static Outcome handshake(TlsCredentials server, TlsCredentials client, String hostName) throws Exception {
        try (ServerSocket listener = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            CompletableFuture<String> accepted = CompletableFuture.supplyAsync(() -> {
                Socket raw = null;
                try {
                    raw = listener.accept();
                    SSLSocket tls = server.server(raw, new byte[0]);
                    tls.setSoTimeout(10_000);
                    tls.startHandshake();
                    String dn = server.verifyPeer() ? DistinguishedName.text(tls.getSession().getPeerPrincipal()
                            instanceof javax.security.auth.x500.X500Principal p ? p : null) : "";
                    tls.getOutputStream().write(1);
                    tls.getOutputStream().flush();
                    Thread.sleep(200);
                    return dn;
                } catch (Exception e) {
                    throw new java.util.concurrent.CompletionException(e);
                } finally {
                    if (raw != null) {
                        GracefulClose.close(raw, 2000);
                    }
                }
            });
            Throwable clientFailure = null;
            Socket raw = new Socket(InetAddress.getLoopbackAddress(), listener.getLocalPort());
            try {
                SSLSocket tls = client.client(raw, hostName, listener.getLocalPort());
                tls.setSoTimeout(10_000);
                tls.startHandshake();
                assertEquals(1, tls.getInputStream().read());          // TLS 1.3: a refused client certificate shows here
                assertEquals("TLSv1.3", tls.getSession().getProtocol());
            } catch (IOException e) {
                clientFailure = e;
            } finally {
                GracefulClose.close(raw, 2000);
            }
            try {
                return new Outcome(null, clientFailure, accepted.get(20, TimeUnit.SECONDS));
            } catch (java.util.concurrent.ExecutionException e) {
                return new Outcome(e.getCause().getCause() != null ? e.getCause().getCause() : e.getCause(), clientFailure, null);
            }
        }
    }

    private static String refusal(Throwable failure) {
        for (Throwable t = failure; t != null; t = t.getCause()) {
            if (t instanceof TlsCredentials.PeerCertificateRefused r) {
                return r.getMessage();
            }
        }
        return String.valueOf(failure);
    }

    @Test
    void shouldHandshakeTls13WithMutualCertificates() throws Exception {
        Outcome outcome = handshake(TestPki.server(pki.good), TestPki.client(pki.good), "localhost");
        assertEquals(null, outcome.server());
        assertEquals(null, outcome.client());
        assertEquals(TestPki.CLIENT_DN, outcome.serverPeerDn());
        assertEquals(null, handshake(TestPki.server(pki.good), TestPki.client(pki.good), "127.0.0.1").client(), "IP SAN");
    }

    @Test
    void shouldMakeEnginesWithTheSamePolicyForStartTls() throws Exception {
        javax.net.ssl.SSLEngine server = TestPki.server(pki.good).serverEngine();
        assertTrue(server.getNeedClientAuth());
        assertEquals(List.of("TLSv1.3"), List.of(server.getEnabledProtocols()));
        assertTrue(!TlsCredentials.load("tls0", pki.good, TlsEndpoint.SERVER, false, false).serverEngine().getNeedClientAuth());
        javax.net.ssl.SSLEngine client = TestPki.client(pki.good).clientEngine("localhost");
        assertTrue(client.getUseClientMode());
        assertEquals("HTTPS", client.getSSLParameters().getEndpointIdentificationAlgorithm());
        assertThrows(TlsException.class, () -> TestPki.server(pki.good).clientEngine("localhost"));
        assertTrue(TestPki.server(pki.good).describe().contains("endpoint=server verify-peer=on subject=CN=localhost"),
                TestPki.server(pki.good).describe());
    }

    @Test
    void shouldRefuseAServerFromAnotherCaWithOneLine() throws Exception {
        Outcome outcome = handshake(TestPki.server(pki.otherCa), TestPki.client(pki.good), "localhost");
        assertTrue(refusal(outcome.client()).matches("the server certificate 'CN=localhost' is not signed by a CA in .*good/ca-cert.pem"
                + " \\(its issuer is 'CN=Ferry CA localhost'\\)"), refusal(outcome.client()));
        assertTrue(String.valueOf(outcome.server()).contains("certificate_unknown"), String.valueOf(outcome.server()));
    }

    /** A client directory with the good CA's ca-cert.pem and another directory's client pair. */
    private static Path mixed(String name, Path pair) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve(name));
        Files.copy(pki.good.resolve("ca-cert.pem"), dir.resolve("ca-cert.pem"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        for (String file : List.of("client-cert.pem", "client-key.pem")) {
            Files.copy(pair.resolve(file), dir.resolve(file), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        return dir;
    }

    @Test
    void shouldRefuseAClientFromAnotherCa() throws Exception {
        Outcome outcome = handshake(TestPki.server(pki.good), TestPki.client(mixed("foreign-client", pki.otherCa)), "localhost");
        assertTrue(refusal(outcome.server()).startsWith("the client certificate 'O=Ferry Tests,CN=source.test' is not signed by a CA in"),
                refusal(outcome.server()));
        assertTrue(String.valueOf(outcome.client()).contains("certificate_unknown"), String.valueOf(outcome.client()));
    }

    @Test
    void shouldRefuseExpiredCertificates() throws Exception {
        Outcome server = handshake(TestPki.server(pki.expired), TestPki.client(pki.good), "localhost");
        assertTrue(refusal(server.client()).startsWith("the server certificate 'CN=localhost' expired on "), refusal(server.client()));
        assertTrue(String.valueOf(server.server()).contains("certificate_expired"), String.valueOf(server.server()));
        Outcome client = handshake(TestPki.server(pki.good), TestPki.client(pki.expired), "localhost");
        assertTrue(refusal(client.server()).startsWith("the client certificate 'O=Ferry Tests,CN=source.test' expired on "),
                refusal(client.server()) + " / client: " + client.client());
        // JSSE's server sends certificate_unknown for every refused client certificate: the source cannot tell why
        assertTrue(String.valueOf(client.client()).contains("certificate_unknown"), String.valueOf(client.client()));
    }

    @Test
    void shouldRefuseAServerCertificateForAnotherHost() throws Exception {
        Outcome outcome = handshake(TestPki.server(pki.otherHost), TestPki.client(pki.good), "localhost");
        assertEquals("the server certificate 'CN=elsewhere.test' is not for host 'localhost' (it names DNS:elsewhere.test)",
                refusal(outcome.client()));
        Outcome byIp = handshake(TestPki.server(pki.otherHost), TestPki.client(pki.good), "127.0.0.1");
        assertEquals("the server certificate 'CN=elsewhere.test' is not for host '127.0.0.1' (it names DNS:elsewhere.test)",
                refusal(byIp.client()));
    }

    @Test
    void shouldRequireAClientCertificateWhenVerifyPeerIsOn() throws Exception {
        Path anonymous = tmp.resolve("anonymous");
        Files.createDirectories(anonymous);
        Files.copy(pki.good.resolve("ca-cert.pem"), anonymous.resolve("ca-cert.pem"));
        Outcome outcome = handshake(TestPki.server(pki.good), TestPki.client(anonymous), "localhost");
        assertTrue(String.valueOf(outcome.server()).contains("Empty client certificate chain")
                || refusal(outcome.server()).contains("sent no certificate"), String.valueOf(outcome.server()));
        assertTrue(String.valueOf(outcome.client()).contains("certificate_required"), String.valueOf(outcome.client()));
        TlsCredentials lenient = TlsCredentials.load("tls0", pki.good, TlsEndpoint.SERVER, false, true);
        assertEquals(null, handshake(lenient, TestPki.client(anonymous), "localhost").client(), "verify-peer=off asks for none");
    }

    /** A warm-up round over two pipes: a handshake, then {@code bytes} from client to server; counts what arrived. */
    private static final class PipeRound implements TlsWarmUp.Round {
        final AtomicLong received = new AtomicLong();
        final AtomicInteger rounds = new AtomicInteger();
        private final int bytes;

        PipeRound(int bytes) {
            this.bytes = bytes;
        }

        @Override
        public void run(SSLEngine clientEngine, SSLEngine serverEngine) throws IOException, InterruptedException {
            rounds.incrementAndGet();
            TlsChannelTest.End[] net = TlsChannelTest.End.pair(1 << 16);
            TlsChannel client = new TlsChannel(net[0], clientEngine, ByteBuffer.allocate(0));
            TlsChannel server = new TlsChannel(net[1], serverEngine, ByteBuffer.allocate(0));
            CompletableFuture<Integer> reader = CompletableFuture.supplyAsync(() -> {
                try {
                    server.handshake();
                    ByteBuffer buffer = ByteBuffer.allocate(bytes);
                    while (buffer.hasRemaining() && server.read(buffer) >= 0) {
                        // until the round's bytes are in
                    }
                    return buffer.position();
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
            client.handshake();
            client.write(ByteBuffer.allocate(bytes));
            received.addAndGet(reader.join());
            client.close();
            server.close();
        }
    }

    @Test
    void shouldWarmUpInRoundsWithEnginesThatHoldTheHostsOwnKey() throws Exception {
        PipeRound server = new PipeRound(1 << 20);
        TestPki.server(pki.good).warmUp(server, 3);
        assertEquals(3, server.rounds.get());
        assertEquals(3L << 20, server.received.get());
        PipeRound client = new PipeRound(1 << 16);
        TestPki.client(pki.good).warmUp(client, 2);
        assertEquals(2L << 16, client.received.get());
        Path anonymous = Files.createDirectories(tmp.resolve("anonymous-warm"));
        Files.copy(pki.good.resolve("ca-cert.pem"), anonymous.resolve("ca-cert.pem"), StandardCopyOption.REPLACE_EXISTING);
        PipeRound none = new PipeRound(1);
        TestPki.client(anonymous).warmUp(none, 2);                  // no key of its own: nothing to do
        assertEquals(0, none.rounds.get());
    }

    @Test
    void shouldLoadWhatQemuLoadsAndSanityCheckLikeQemu() throws Exception {
        TlsCredentials server = TlsCredentials.load("tls0", pki.good, TlsEndpoint.SERVER, true, true);
        assertEquals("CN=localhost", DistinguishedName.text(server.certificate().orElseThrow()));
        TlsCredentials client = TlsCredentials.load("tls0", pki.good, TlsEndpoint.CLIENT, true, true);
        assertEquals("O=Ferry Tests,CN=source.test", DistinguishedName.text(client.certificate().orElseThrow()));

        TlsException expired = assertThrows(TlsException.class,
                () -> TlsCredentials.load("tls0", pki.expired, TlsEndpoint.SERVER, true, true));
        assertEquals(TlsException.Kind.SANITY, expired.kind());
        assertTrue(expired.getMessage().contains("server-cert.pem has expired"), expired.getMessage());

        Path mixed = tmp.resolve("mixed");
        Files.createDirectories(mixed);
        Files.copy(pki.good.resolve("ca-cert.pem"), mixed.resolve("ca-cert.pem"));
        Files.copy(pki.otherCa.resolve("server-cert.pem"), mixed.resolve("server-cert.pem"));
        Files.copy(pki.otherCa.resolve("server-key.pem"), mixed.resolve("server-key.pem"));
        TlsException foreign = assertThrows(TlsException.class, () -> TlsCredentials.load("tls0", mixed, TlsEndpoint.SERVER, true, true));
        assertTrue(foreign.getMessage().contains("is not issued by a CA in"), foreign.getMessage());

        Files.copy(pki.good.resolve("server-key.pem"), mixed.resolve("server-key.pem"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.copy(pki.good.resolve("server-cert.pem"), mixed.resolve("server-cert.pem"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.copy(pki.otherCa.resolve("server-key.pem"), mixed.resolve("server-key.pem"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        TlsException wrongKey = assertThrows(TlsException.class, () -> TlsCredentials.load("tls0", mixed, TlsEndpoint.SERVER, true, true));
        assertTrue(wrongKey.getMessage().contains("private key does not belong to the certificate"), wrongKey.getMessage());

        Path empty = Files.createDirectories(tmp.resolve("empty"));
        TlsException missing = assertThrows(TlsException.class, () -> TlsCredentials.load("tls0", empty, TlsEndpoint.CLIENT, true, true));
        assertEquals(TlsException.Kind.FILE, missing.kind());
        assertTrue(missing.getMessage().startsWith("Unable to access credentials " + empty.resolve("ca-cert.pem")), missing.getMessage());
        assertThrows(TlsException.class, () -> TestPki.server(pki.good).client(new Socket(), "x", 1), "a server's credentials cannot connect");
    }

    @Test
    void shouldReadPkcs1AndSec1KeysAndRefuseEncryptedOnes() throws Exception {
        Path keys = Files.createDirectories(tmp.resolve("keys"));
        Tools.run(60, "openssl", "genrsa", "-traditional", "-out", keys.resolve("rsa1.pem").toString(), "2048").orFail();
        Tools.run(60, "openssl", "ecparam", "-name", "prime256v1", "-genkey", "-out", keys.resolve("sec1.pem").toString()).orFail();
        Tools.run(60, "openssl", "genpkey", "-algorithm", "ed25519", "-out", keys.resolve("ed.pem").toString()).orFail();
        Tools.run(60, "openssl", "genpkey", "-algorithm", "RSA", "-aes-128-cbc", "-pass", "pass:x", "-out",
                keys.resolve("enc.pem").toString()).orFail();
        assertEquals("RSA", PemFiles.privateKey(keys.resolve("rsa1.pem")).getAlgorithm());
        assertTrue(Files.readString(keys.resolve("sec1.pem")).contains("BEGIN EC PARAMETERS"));
        assertEquals("EC", PemFiles.privateKey(keys.resolve("sec1.pem")).getAlgorithm());
        assertEquals("EdDSA", PemFiles.privateKey(keys.resolve("ed.pem")).getAlgorithm());
        TlsException encrypted = assertThrows(TlsException.class, () -> PemFiles.privateKey(keys.resolve("enc.pem")));
        assertEquals(TlsException.Kind.UNSUPPORTED, encrypted.kind());
        TlsException notPem = assertThrows(TlsException.class, () -> PemFiles.certificates(keys.resolve("rsa1.pem")));
        assertEquals(TlsException.Kind.FORMAT, notPem.kind());
    }

    @Test
    void shouldMakeCertificatesWithTheRequestedSubjectAndNeverOverwrite() throws Exception {
        Path dir = tmp.resolve("made");
        List<Path> made = CertificateMaker.make(dir, new CertificateMaker.Request(List.of("dst.example", "10.0.0.2"),
                "C=GB,O=Example\\, Inc.,CN=src.example", 30, Optional.empty()));
        assertEquals(6, made.size());
        assertEquals("rw-------", java.nio.file.attribute.PosixFilePermissions.toString(
                Files.getPosixFilePermissions(dir.resolve("server-key.pem"))));
        TlsCredentials client = TlsCredentials.load("c", dir, TlsEndpoint.CLIENT, true, true);
        assertEquals("C=GB,O=Example\\, Inc.,CN=src.example", DistinguishedName.text(client.certificate().orElseThrow()));
        TlsCredentials server = TlsCredentials.load("s", dir, TlsEndpoint.SERVER, true, true);
        assertEquals("DNS:dst.example, IP:10.0.0.2", PeerTrust.names(server.certificate().orElseThrow()));
        assertThrows(java.nio.file.FileAlreadyExistsException.class, () -> CertificateMaker.make(dir,
                new CertificateMaker.Request(List.of("x"), "CN=x", 1, Optional.empty())));
        assertEquals("/C=GB/O=Example\\, Inc./CN=src.example", CertificateMaker.opensslSubject("C=GB,O=Example\\, Inc.,CN=src.example"));
        assertThrows(IllegalArgumentException.class, () -> CertificateMaker.opensslSubject("CN=a+UID=b"));
    }
}
