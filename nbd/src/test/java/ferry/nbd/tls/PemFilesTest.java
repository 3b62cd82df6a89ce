package ferry.nbd.tls;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PemFilesTest {
    @TempDir Path tmp;

    private static Path key(String name) {
        return Fixtures.dir("keys").resolve(name);
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
            assertEquals(TlsException.Kind.CREDENTIALS, e.kind());
            assertTrue(e.getMessage().contains("encrypted") && e.getMessage().contains(name), e.getMessage());
        }
    }

    @Test
    void shouldReadEveryCertificateOfABundleInFileOrder() throws Exception {
        List<X509Certificate> cas = PemFiles.certificates(Fixtures.dir("rogue").resolve("ca-cert.pem"));
        assertEquals(List.of("CN=Ferry test CA", "CN=Rogue CA"), cas.stream().map(c -> c.getSubjectX500Principal().getName()).toList());
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
            assertEquals(TlsException.Kind.CREDENTIALS, e.kind());
            assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
        assertTrue(assertThrows(TlsException.class, () -> PemFiles.certificates(tmp.resolve("missing.pem")))
                .getMessage().contains("no such file"));
        assertTrue(assertThrows(TlsException.class, () -> PemFiles.certificates(tmp)).getMessage().contains("not a regular file"));
    }

    @Test
    void shouldWalkAndWriteDer() throws Exception {
        // SEQUENCE { INTEGER 1, OCTET STRING 300 bytes }: a long-form length (0x82 0x01 0x2c) inside
        byte[] der = Der.encode(Der.SEQUENCE, Der.encode(Der.INTEGER, new byte[] {1}), Der.encode(Der.OCTET_STRING, new byte[300]));
        assertEquals("30820133" + "020101" + "0482012c", HexFormat.of().formatHex(der, 0, 11));
        List<Der.Element> children = Der.readOne(der).children();
        assertEquals(2, children.size());
        assertEquals(300, children.get(1).content().length);
        assertEquals("1.2.840.10045.2.1", Der.dotted(Der.OID_EC_PUBLIC_KEY));
        assertEquals("1.3.101.112", Der.dotted(Der.OID_ED25519));
        assertThrows(Der.MalformedException.class, () -> Der.readOne(HexFormat.of().parseHex("3005020101")));   // runs past the end
        assertThrows(Der.MalformedException.class, () -> Der.readOne(HexFormat.of().parseHex("30850000000000")));   // 5 length bytes
    }
}
