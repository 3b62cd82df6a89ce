package ferry.nbd.tls;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import javax.net.ssl.SSLEngine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TlsCredentialsTest {
    @TempDir Path tmp;

    @Test
    void shouldLoadQemuLayoutForBothEnds() throws Exception {
        TlsCredentials server = Fixtures.server(true);
        SSLEngine engine = server.serverEngine();
        assertTrue(engine.getNeedClientAuth());
        assertArrayEquals(new String[] {"TLSv1.3"}, engine.getEnabledProtocols());
        assertFalse(Fixtures.server(false).serverEngine().getNeedClientAuth());
        assertTrue(server.describe().contains("endpoint=server verify-peer=on subject=CN=localhost"), server.describe());
        SSLEngine client = Fixtures.client("good").clientEngine("localhost");
        assertTrue(client.getUseClientMode());
        assertEquals("HTTPS", client.getSSLParameters().getEndpointIdentificationAlgorithm());
        assertThrows(IllegalStateException.class, () -> server.clientEngine(null));
    }

    @Test
    void shouldRefuseWhatWouldFailAtTheFirstConnectionWithOneLine() throws Exception {
        record Case(String what, String expected, String... files) {}   // files: name=source pairs
        for (Case c : new Case[] {
                new Case("no directory", "directory missing"),
                new Case("no server key", "server-key.pem", "ca-cert.pem=good", "server-cert.pem=good"),
                new Case("no CA", "ca-cert.pem", "server-cert.pem=good", "server-key.pem=good"),
                new Case("key of another certificate", "does not match", "ca-cert.pem=good", "server-cert.pem=good", "server-key.pem=keys/rsa-pkcs8.pem"),
                new Case("certificate of another CA", "not signed by a CA", "ca-cert.pem=keys/rsa-cert.pem", "server-cert.pem=good", "server-key.pem=good"),
                new Case("expired certificate", "certificate expired", "ca-cert.pem=expired", "server-cert.pem=expired", "server-key.pem=expired"),
                new Case("revocation list", "revocation lists are not supported", "ca-cert.pem=good", "server-cert.pem=good",
                        "server-key.pem=good", "ca-crl.pem=good/ca-cert.pem")}) {
            Path dir = tmp.resolve(c.what().replace(' ', '-'));
            if (c.files().length > 0) {
                Files.createDirectories(dir);
            }
            for (String f : c.files()) {
                String name = f.substring(0, f.indexOf('='));
                String source = f.substring(f.indexOf('=') + 1);
                Path from = source.contains("/") ? Fixtures.dir(source.substring(0, source.indexOf('/'))).resolve(source.substring(source.indexOf('/') + 1))
                        : Fixtures.dir(source).resolve(name);
                Files.copy(from, dir.resolve(name));
            }
            TlsException e = assertThrows(TlsException.class, () -> TlsCredentials.load(dir, TlsCredentials.Endpoint.SERVER, true), c.what());
            assertEquals(TlsException.Kind.CREDENTIALS, e.kind());
            assertTrue(e.getMessage().contains(c.expected()), c.what() + ": " + e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
    }

    @Test
    void shouldRefuseAClientThatWouldTrustAnyServer() {
        TlsException e = assertThrows(TlsException.class,
                () -> TlsCredentials.load(Fixtures.dir("good"), TlsCredentials.Endpoint.CLIENT, false));
        assertTrue(e.getMessage().contains("verify-peer=off is not supported for a client"), e.getMessage());
    }

    @Test
    void shouldLoadAClientWithoutCertificate() throws Exception {
        Files.copy(Fixtures.dir("good").resolve("ca-cert.pem"), tmp.resolve("ca-cert.pem"));
        TlsCredentials client = TlsCredentials.load(tmp, TlsCredentials.Endpoint.CLIENT, true);
        assertFalse(client.describe().contains("subject="), client.describe());
    }
}
