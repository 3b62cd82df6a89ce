package ferry.tls;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PemFilesTest {
    @TempDir Path tmp;

    /** The committed key fixtures (keys/make-keys.sh). */
    private static Path key(String name) {
        try {
            return Path.of(PemFilesTest.class.getResource("/keys/" + name).toURI());
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void shouldReadTheSameRsaKeyFromPkcs8AndPkcs1() throws Exception {
        PrivateKey pkcs8 = PemFiles.privateKey(key("rsa-pkcs8.pem"));
        PrivateKey pkcs1 = PemFiles.privateKey(key("rsa-pkcs1.pem"));
        assertEquals("RSA", pkcs8.getAlgorithm());
        assertArrayEquals(pkcs8.getEncoded(), pkcs1.getEncoded());
    }

    @Test
    void shouldReadTheSameEcKeyFromSec1AndPkcs8SkippingItsParametersBlock() throws Exception {
        PrivateKey sec1 = PemFiles.privateKey(key("ec-sec1.pem"));
        PrivateKey pkcs8 = PemFiles.privateKey(key("ec-pkcs8.pem"));
        assertEquals("EC", sec1.getAlgorithm());
        assertEquals(((java.security.interfaces.ECPrivateKey) pkcs8).getS(), ((java.security.interfaces.ECPrivateKey) sec1).getS());
        assertEquals(384, ((java.security.interfaces.ECPrivateKey) sec1).getParams().getCurve().getField().getFieldSize());
    }

    @Test
    void shouldReadEd25519Keys() throws Exception {
        PrivateKey key = PemFiles.privateKey(key("ed25519.pem"));
        assertEquals("Ed25519", ((java.security.interfaces.EdECPrivateKey) key).getParams().getName());
    }

    @Test
    void shouldRefuseEncryptedKeysSayingSo() {
        for (String name : List.of("encrypted-pkcs8.pem", "encrypted-pkcs1.pem")) {
            TlsException e = assertThrows(TlsException.class, () -> PemFiles.privateKey(key(name)));
            assertEquals(TlsException.Kind.UNSUPPORTED, e.kind());
            assertTrue(e.getMessage().contains("encrypted") && e.getMessage().contains(name), e.getMessage());
        }
    }

    @Test
    void shouldReadEveryCertificateOfABundleInFileOrder() throws Exception {
        Path bundle = tmp.resolve("bundle.pem");
        Files.writeString(bundle, Files.readString(key("rsa-cert.pem")) + Files.readString(key("rsa-cert.pem")).replace("\n", "\r\n"));
        List<X509Certificate> cas = PemFiles.certificates(bundle);
        assertEquals(List.of("CN=rsa", "CN=rsa"), cas.stream().map(c -> c.getSubjectX500Principal().getName()).toList());
    }

    @Test
    void shouldIgnoreTextAroundBlocks() throws Exception {
        String cert = Files.readString(key("rsa-cert.pem"));
        Path file = tmp.resolve("with-text.pem");
        Files.writeString(file, "Certificate:\n    Data: (what openssl x509 -text prints)\n" + cert.replace("\n", "\r\n") + "trailing words\n");
        assertEquals("CN=rsa", PemFiles.certificates(file).getFirst().getSubjectX500Principal().getName());
    }

    @Test
    void shouldRefuseMalformedFilesWithOneLineNamingTheFile() throws Exception {
        String rsa = Files.readString(key("rsa-pkcs8.pem"));
        String body = rsa.substring(rsa.indexOf('\n') + 1, rsa.indexOf("-----END"));
        List<String> bad = List.of(
                "-----BEGIN PRIVATE KEY-----\n" + body,                                         // no END
                "-----BEGIN PRIVATE KEY-----\n" + body + "-----END RSA PRIVATE KEY-----\n",     // END of another label
                "-----BEGIN PRIVATE KEY-----\n" + body.replace('A', '%') + "-----END PRIVATE KEY-----\n",   // not base64
                "-----END PRIVATE KEY-----\n",                                                  // END without BEGIN
                Files.readString(key("rsa-cert.pem")),                                          // no key at all
                rsa + Files.readString(key("ec-pkcs8.pem")),                                    // two keys
                "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",           // DER: SEQUENCE { INTEGER 0 } only
                "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",         // truncated DER
                "-----BEGIN EC PRIVATE KEY-----\nMAUCAQEEAA==\n-----END EC PRIVATE KEY-----\n",   // SEC1 without its curve
                "");
        for (int i = 0; i < bad.size(); i++) {
            Path file = tmp.resolve("bad-" + i + ".pem");
            Files.writeString(file, bad.get(i), StandardCharsets.US_ASCII);
            TlsException e = assertThrows(TlsException.class, () -> PemFiles.privateKey(file), "case " + i);
            assertTrue(e.kind() == TlsException.Kind.FORMAT || e.kind() == TlsException.Kind.UNSUPPORTED, e.kind() + ": case " + i);
            assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
        assertTrue(assertThrows(TlsException.class, () -> PemFiles.certificates(tmp.resolve("missing.pem")))
                .getMessage().contains("no such file"));
        assertTrue(assertThrows(TlsException.class, () -> PemFiles.certificates(tmp)).getMessage().contains("not a regular file"));
    }

    @Test
    void shouldRefuseAFifoOrAHugeFileWithoutReadingIt() throws Exception {
        Path fifo = tmp.resolve("fifo.pem");
        new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor();
        TlsException e = assertThrows(TlsException.class, () -> PemFiles.certificates(fifo));
        assertTrue(e.getMessage().contains("not a regular file"), e.getMessage());
        Path huge = tmp.resolve("huge.pem");
        try (var f = new java.io.RandomAccessFile(huge.toFile(), "rw")) {
            f.setLength(PemFiles.MAX_FILE_LENGTH + 1);
        }
        assertTrue(assertThrows(TlsException.class, () -> PemFiles.privateKey(huge)).getMessage().contains("at most"));
    }
}
