package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.dirty.DirtyTrackingImage;
import ferry.image.raw.RawImage;
import ferry.migration.stream.StreamSecurity;
import ferry.testkit.Tools;
import ferry.tls.AuthzList;
import ferry.tls.AuthzSimple;
import ferry.tls.Authorizer;
import ferry.tls.CertificateMaker;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS on the migration stream, in one JVM with the QEMU stand-ins (as MigrationLoopbackTest): a whole
 * migration inside TLS 1.3 with mutual certificates, and every refusal of docs/migration-protocol.md
 * "TLS": each ends at once with one clear line on both sides, before HELLO is read (nothing prepared on
 * the destination), the source VM runs on, and the same listener then takes the right source.
 * Certificates are made with openssl ({@link CertificateMaker}).
 */
class MigrationTlsTest {
    private static final long DISK_SIZE = 8L << 20;
    private static final String SOURCE_DN = "O=Ferry Tests,CN=source.test";

    @TempDir static Path pki;
    private static Path good;
    private static Path otherCa;
    private static Path expired;
    private static Path otherHost;

    @TempDir Path tmp;
    private Path srcDir;
    private Path dstDir;
    private RawImage sourceRaw;
    private FakeQemu.Destination host;
    private MigrationDestination destination;

    @BeforeAll
    static void makeCertificates() throws Exception {
        Tools.require("openssl");
        good = make("good", List.of("localhost", "127.0.0.1"), SOURCE_DN, 2, Optional.empty());
        otherCa = make("other-ca", List.of("localhost", "127.0.0.1"), SOURCE_DN, 2, Optional.empty());
        expired = make("expired", List.of("localhost", "127.0.0.1"), SOURCE_DN, -1, Optional.of(good));
        otherHost = make("other-host", List.of("elsewhere.test"), "O=Ferry Tests,CN=intruder.test", 2, Optional.of(good));
    }

    private static Path make(String name, List<String> hosts, String clientDn, int days, Optional<Path> ca) throws Exception {
        Path dir = pki.resolve(name);
        CertificateMaker.make(dir, new CertificateMaker.Request(hosts, clientDn, days, ca));
        return dir;
    }

    @BeforeEach
    void setUp() throws Exception {
        srcDir = Files.createDirectories(tmp.resolve("src"));
        dstDir = Files.createDirectories(tmp.resolve("dst"));
        sourceRaw = RawImage.create(srcDir.resolve("disk0.raw"), DISK_SIZE);
        byte[] chunk = new byte[1 << 20];
        new Random(5).nextBytes(chunk);
        sourceRaw.write(1L << 20, ByteBuffer.wrap(chunk));
        host = new FakeQemu.Destination(dstDir);
    }

    @AfterEach
    void tearDown() throws Exception {
        if (destination != null) {
            destination.close();
        }
        sourceRaw.close();
    }

    private static TlsCredentials server(Path dir) throws Exception {
        return TlsCredentials.load("tls0", dir, TlsEndpoint.SERVER, true, false);
    }

    private static TlsCredentials client(Path dir) throws Exception {
        return TlsCredentials.load("tls0", dir, TlsEndpoint.CLIENT, true, false);
    }

    private void listen(StreamSecurity security) throws Exception {
        destination = new MigrationDestination("127.0.0.1", 0, host, security);
        destination.start();
    }

    private void listenTls(Path dir, Optional<Authorizer> authz) throws Exception {
        listen(StreamSecurity.Tls.destination(server(dir), authz));
    }

    /** Runs one migration to the listener; the finished source (status COMPLETED, FAILED ...). */
    private MigrationSource migrate(StreamSecurity security, FakeQemu.Source vm) throws Exception {
        FakeBlocks blocks = FakeBlocks.of(new DirtyTrackingImage(sourceRaw));
        MigrationSource migration = new MigrationSource("test-vm", blocks.disks(), vm, blocks,
                new MigrationRequest("127.0.0.1", destination.port(), true, false, security),
                MigrationParameters.defaults().withMaxBandwidth(1L << 30), srcDir);
        migration.start();
        assertTrue(migration.await(60_000), "migration did not finish");
        return migration;
    }

    private static StreamSecurity tlsSource(Path dir) throws Exception {
        return StreamSecurity.Tls.source(client(dir), Optional.empty());
    }

    private void assertCompletes(StreamSecurity security) throws Exception {
        MigrationSource migration = migrate(security, new FakeQemu.Source());
        MigrationReport report = migration.stats().report();
        assertEquals(MigrationStatus.COMPLETED, report.status(), () -> "source: " + report.error());
        FakeQemu.Prepared prepared = host.last();
        prepared.close();
        assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
    }

    /**
     * The source fails at once with {@code sourceLine} in its error, resumes its VM, and the destination
     * refused with {@code destinationLine} before preparing anything; then the right source migrates.
     */
    private void assertRefused(StreamSecurity security, String sourceLine, String destinationLine, StreamSecurity right)
            throws Exception {
        FakeQemu.Source vm = new FakeQemu.Source();
        MigrationSource migration = migrate(security, vm);
        MigrationReport report = migration.stats().report();
        assertEquals(MigrationStatus.FAILED, report.status());
        String error = report.error().orElse("");
        assertTrue(error.startsWith("handshake: ") && error.contains(sourceLine), "source said: " + error);
        assertTrue(!error.contains("\n"), "one line: " + error);
        // "at once": the error names the refusal, which a handshake or HELLO timeout would not
        assertTrue(vm.resumed.get(), "the source VM must run on");
        long deadline = System.currentTimeMillis() + 5_000;
        while (destination.lastRefusal().isEmpty() && System.currentTimeMillis() < deadline) {
            Thread.sleep(10);
        }
        String refusal = destination.lastRefusal().orElse("(none)");
        assertTrue(refusal.contains(destinationLine), "destination said: " + refusal);
        assertTrue(host.prepared.isEmpty(), "the destination prepared a VM for a refused source");
        try (var left = Files.list(dstDir)) {
            assertEquals(List.of(), left.toList(), "the destination created files for a refused source");
        }
        assertTrue(destination.waitingForFirstSource(), "no session began");
        if (right != null) {                                     // null: no source can pass (the destination's own certificate)
            assertCompletes(right);
        }
    }

    @Test
    void shouldMigrateInsideTls13WithMutualCertificates() throws Exception {
        listenTls(good, Optional.of(new AuthzSimple("auth0", "o=Ferry Tests, cn=SOURCE.test")));
        assertCompletes(tlsSource(good));
        assertTrue(destination.lastRefusal().isEmpty());
    }

    @Test
    void shouldCheckTheServerNameGivenByTlsHostnameInsteadOfTheUriHost() throws Exception {
        listenTls(otherHost, Optional.empty());
        assertCompletes(StreamSecurity.Tls.source(client(good), Optional.of("elsewhere.test")));
    }

    @Test
    void shouldRefuseAPlaintextSourceAtATlsDestination() throws Exception {
        listenTls(good, Optional.empty());
        assertRefused(new StreamSecurity.Plain(), "destination failed in handshake: this destination accepts TLS only (tls-creds tls0)",
                "it sent a plaintext migration stream, but this destination requires TLS (tls-creds tls0)", tlsSource(good));
    }

    @Test
    void shouldRefuseATlsSourceAtAPlaintextDestination() throws Exception {
        listen(new StreamSecurity.Plain());
        assertRefused(tlsSource(good), "the destination does not speak TLS: it listens without tls-creds",
                "it speaks TLS, but this destination has no tls-creds", new StreamSecurity.Plain());
    }

    @Test
    void shouldRefuseAClientCertificateFromAnotherCa() throws Exception {
        listenTls(good, Optional.empty());
        assertRefused(tlsSource(mixed("foreign-client", otherCa)), "the destination refused this source's client certificate",
                "TLS handshake failed: the client certificate 'O=Ferry Tests,CN=source.test' is not signed by a CA in", tlsSource(good));
    }

    @Test
    void shouldRefuseAServerCertificateFromAnotherCa() throws Exception {
        listenTls(otherCa, Optional.empty());
        destination.close();
        listen(StreamSecurity.Tls.destination(TlsCredentials.load("tls0", mixedServer("foreign-server", otherCa), TlsEndpoint.SERVER,
                true, false), Optional.empty()));
        assertRefused(tlsSource(good), "the server certificate 'CN=localhost' is not signed by a CA in",
                "the source refused this destination's certificate", tlsSourceTrusting(otherCa, good));
    }

    @Test
    void shouldRefuseAnExpiredClientCertificate() throws Exception {
        listenTls(good, Optional.empty());
        assertRefused(tlsSource(expired), "the destination refused this source's client certificate (TLS alert certificate_unknown)",
                "the client certificate 'O=Ferry Tests,CN=source.test' expired on", tlsSource(good));
    }

    @Test
    void shouldRefuseAnExpiredServerCertificate() throws Exception {
        listenTls(expired, Optional.empty());
        assertRefused(tlsSource(good), "the server certificate 'CN=localhost' expired on",
                "the source refused this destination's certificate (TLS alert certificate_expired)", null);
    }

    @Test
    void shouldRefuseAServerCertificateForAnotherHost() throws Exception {
        listenTls(good, Optional.empty());
        assertRefused(StreamSecurity.Tls.source(client(good), Optional.of("dst.example")),
                "the server certificate 'CN=localhost' is not for host 'dst.example' (it names DNS:localhost, IP:127.0.0.1)",
                "the source refused this destination's certificate", tlsSource(good));
    }

    @Test
    void shouldRefuseADnThatTlsAuthzDoesNotAllow() throws Exception {
        AuthzList rules = new AuthzList(AuthzList.Policy.DENY, List.of(
                new AuthzList.Rule("O=Ferry Tests,CN=*", AuthzList.Policy.ALLOW, AuthzList.Format.GLOB)));
        Authorizer list = new Authorizer() {
            @Override public String id() {
                return "list0";
            }

            @Override public boolean allows(javax.security.auth.x500.X500Principal subject) {
                return rules.allows(subject);
            }
        };
        listenTls(good, Optional.of(new AuthzSimple("auth0", "O=Ferry Tests,CN=source.test")));
        assertRefused(tlsSource(otherHost), "destination failed in handshake: the client certificate 'O=Ferry Tests,CN=intruder.test'"
                + " is not allowed by tls-authz auth0", "the client certificate 'O=Ferry Tests,CN=intruder.test' is not allowed by"
                + " tls-authz auth0", tlsSource(good));
        destination.close();
        host = new FakeQemu.Destination(Files.createDirectories(tmp.resolve("dst2")));
        listenTls(good, Optional.of(list));
        assertCompletes(tlsSource(otherHost));                   // the glob rule allows any CN of O=Ferry Tests
    }

    @Test
    void shouldWarnOnceWhenAPlainListenerListensBeyondLoopback() throws Exception {
        java.util.logging.Logger jul = java.util.logging.Logger.getLogger(MigrationDestination.class.getName());
        List<String> warnings = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.logging.Handler capture = new java.util.logging.Handler() {
            @Override public void publish(java.util.logging.LogRecord record) {
                if (record.getLevel().intValue() >= java.util.logging.Level.WARNING.intValue()) {
                    warnings.add(record.getMessage());
                }
            }

            @Override public void flush() { }

            @Override public void close() { }
        };
        jul.addHandler(capture);
        try {
            for (StreamSecurity security : List.of(new StreamSecurity.Plain(), StreamSecurity.Tls.destination(server(good), Optional.empty()))) {
                for (String address : List.of("127.0.0.1", "0.0.0.0")) {
                    try (MigrationDestination listener = new MigrationDestination(address, 0, host, security)) {
                        listener.start();
                    }
                }
            }
        } finally {
            jul.removeHandler(capture);
        }
        assertEquals(1, warnings.size(), warnings.toString());
        assertTrue(warnings.getFirst().matches("the incoming migration port 0\\.0\\.0\\.0:\\d+ has no TLS: whoever reaches it can send"
                + " this host a VM and write its disks .*"), warnings.getFirst());
    }

    /** A source whose ca-cert.pem is {@code caOf}'s and whose client pair is {@code pairOf}'s. */
    private StreamSecurity tlsSourceTrusting(Path caOf, Path pairOf) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("trusting"));
        Files.copy(caOf.resolve("ca-cert.pem"), dir.resolve("ca-cert.pem"));
        Files.copy(pairOf.resolve("client-cert.pem"), dir.resolve("client-cert.pem"));
        Files.copy(pairOf.resolve("client-key.pem"), dir.resolve("client-key.pem"));
        return tlsSource(dir);
    }

    /** The good CA's ca-cert.pem with another directory's client pair. */
    private Path mixed(String name, Path pairOf) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve(name));
        Files.copy(good.resolve("ca-cert.pem"), dir.resolve("ca-cert.pem"));
        Files.copy(pairOf.resolve("client-cert.pem"), dir.resolve("client-cert.pem"));
        Files.copy(pairOf.resolve("client-key.pem"), dir.resolve("client-key.pem"));
        return dir;
    }

    /** The good CA's ca-cert.pem (so client certificates of the good CA pass) with another directory's server pair. */
    private Path mixedServer(String name, Path pairOf) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve(name));
        Files.copy(good.resolve("ca-cert.pem"), dir.resolve("ca-cert.pem"));
        Files.copy(pairOf.resolve("server-cert.pem"), dir.resolve("server-cert.pem"));
        Files.copy(pairOf.resolve("server-key.pem"), dir.resolve("server-key.pem"));
        return dir;
    }
}
