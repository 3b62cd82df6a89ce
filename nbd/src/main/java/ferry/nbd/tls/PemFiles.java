package ferry.nbd.tls;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;

/**
 * Certificates and private keys from PEM files (RFC 7468), as a QEMU {@code tls-creds-x509}
 * directory holds them ({@code ca-cert.pem}, {@code server-key.pem}, ...): JSSE reads neither.
 * This is decoding, not cryptography: base64 to DER, then the JDK's CertificateFactory and KeyFactory.
 *
 * <p>Private keys: PKCS#8 {@code PRIVATE KEY} (openssl 3's default: {@code genpkey}, {@code req
 * -newkey}, {@code genrsa}), PKCS#1 {@code RSA PRIVATE KEY} (gnutls' {@code certtool
 * --generate-privkey}, as QEMU's documentation uses it, and {@code openssl genrsa -traditional}) and
 * SEC1 {@code EC PRIVATE KEY} ({@code openssl ecparam -genkey}, which also writes an
 * {@code EC PARAMETERS} block that is skipped). The last two are wrapped into PKCS#8 first. RSA, EC
 * (named curves), Ed25519 and Ed448 keys are read. Encrypted keys are refused: QEMU reads them only
 * with a password object, and Ferry has none.
 *
 * <p>Used by the NBD server's STARTTLS ({@link TlsCredentials}) and meant for the migration stream
 * too. Stateless; any thread.
 */
public final class PemFiles {
    /** Larger files are refused unread: a CA bundle is a few hundred KiB. */
    static final long MAX_FILE_LENGTH = 4 << 20;

    /** One PEM block: its label ({@code CERTIFICATE}, {@code PRIVATE KEY}, ...) and its DER bytes. */
    public record Block(String label, byte[] der) {}

    private PemFiles() {}

    /** Every certificate in {@code file}, in file order (a chain: the leaf first). At least one. */
    public static List<X509Certificate> certificates(Path file) throws TlsException {
        return certificates(blocks(read(file), file.toString()), file.toString());
    }

    /** The one private key in {@code file}. */
    public static PrivateKey privateKey(Path file) throws TlsException {
        List<Block> blocks = blocks(read(file), file.toString());
        try {
            return privateKey(blocks, file.toString());
        } finally {
            blocks.forEach(b -> Arrays.fill(b.der(), (byte) 0));
        }
    }

    static List<X509Certificate> certificates(List<Block> blocks, String source) throws TlsException {
        List<X509Certificate> out = new ArrayList<>();
        try {
            CertificateFactory factory = CertificateFactory.getInstance("X.509");
            for (Block b : blocks) {
                if (b.label().equals("CERTIFICATE") || b.label().equals("X509 CERTIFICATE")) {
                    out.add((X509Certificate) factory.generateCertificate(new ByteArrayInputStream(b.der())));
                }
            }
        } catch (CertificateException e) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "bad certificate: path=" + source + ": " + e.getMessage(), e);
        }
        if (out.isEmpty()) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "no certificate: path=" + source + " blocks=" + labels(blocks));
        }
        return out;
    }

    static PrivateKey privateKey(List<Block> blocks, String source) throws TlsException {
        Block key = null;
        for (Block b : blocks) {
            switch (b.label()) {
                case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY" -> {
                    if (key != null) {
                        throw credentials(source, "more than one private key: blocks=" + labels(blocks));
                    }
                    key = b;
                }
                case "ENCRYPTED PRIVATE KEY" -> throw credentials(source, "the private key is encrypted; Ferry reads only unencrypted keys"
                        + " (decrypt it with: openssl pkey -in KEY -out KEY.plain, and keep it mode 0600)");
                default -> { }   // certificates, EC PARAMETERS: not keys
            }
        }
        if (key == null) {
            throw credentials(source, "no private key: blocks=" + labels(blocks));
        }
        byte[] pkcs8 = null;
        try {
            pkcs8 = switch (key.label()) {
                case "RSA PRIVATE KEY" -> pkcs8(Der.encode(Der.SEQUENCE, Der.encode(Der.OID, Der.OID_RSA_ENCRYPTION),
                        Der.encode(Der.NULL)), key.der());
                case "EC PRIVATE KEY" -> pkcs8(Der.encode(Der.SEQUENCE, Der.encode(Der.OID, Der.OID_EC_PUBLIC_KEY),
                        Der.encode(Der.OID, curveOf(key.der()))), key.der());
                default -> key.der().clone();
            };
            String algorithm = algorithmOf(pkcs8);
            return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
        } catch (Der.MalformedException e) {
            throw credentials(source, "malformed " + key.label() + ": " + e.getMessage());
        } catch (GeneralSecurityException e) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "unusable " + key.label() + ": path=" + source + ": " + e.getMessage(), e);
        } finally {
            if (pkcs8 != null) {
                Arrays.fill(pkcs8, (byte) 0);
            }
        }
    }

    /**
     * The PEM blocks in {@code text}; text outside blocks (openssl's {@code -text} output, comments)
     * is ignored. Legacy encapsulated headers ({@code Proc-Type: 4,ENCRYPTED}) mean an encrypted key
     * and are refused.
     */
    public static List<Block> blocks(String text, String source) throws TlsException {
        List<Block> out = new ArrayList<>();
        String label = null;
        StringBuilder base64 = new StringBuilder();
        String[] lines = text.split("\r?\n", -1);
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].strip();
            if (label == null) {
                if (line.startsWith("-----BEGIN ") && line.endsWith("-----") && line.length() > 16) {
                    label = line.substring(11, line.length() - 5);
                    base64.setLength(0);
                } else if (line.startsWith("-----END ")) {
                    throw credentials(source, "END without BEGIN at line " + (i + 1));
                }
            } else if (line.startsWith("-----END ")) {
                if (!line.equals("-----END " + label + "-----")) {
                    throw credentials(source, "BEGIN " + label + " ended by " + line + " at line " + (i + 1));
                }
                byte[] der;
                try {
                    der = Base64.getDecoder().decode(base64.toString());
                } catch (IllegalArgumentException e) {
                    throw credentials(source, "bad base64 in the " + label + " block ending at line " + (i + 1) + ": " + e.getMessage());
                }
                out.add(new Block(label, der));
                label = null;
            } else if (line.indexOf(':') >= 0) {
                throw credentials(source, line.startsWith("Proc-Type") && line.contains("ENCRYPTED")
                        ? "the " + label + " is encrypted; Ferry reads only unencrypted keys"
                        : "unexpected header in the " + label + " block at line " + (i + 1) + ": " + line);
            } else {
                base64.append(line);
            }
        }
        if (label != null) {
            throw credentials(source, "BEGIN " + label + " without END");
        }
        return out;
    }

    private static String read(Path file) throws TlsException {
        try {
            if (!Files.isRegularFile(file)) {   // follows links, as QEMU does; a FIFO would block here
                throw credentials(file.toString(), Files.exists(file, LinkOption.NOFOLLOW_LINKS)
                        ? "not a regular file" : "no such file");
            }
            long length = Files.size(file);
            if (length > MAX_FILE_LENGTH) {
                throw credentials(file.toString(), "file too large: length=" + length + " max=" + MAX_FILE_LENGTH);
            }
            return Files.readString(file, StandardCharsets.US_ASCII);
        } catch (IOException e) {
            if (e instanceof TlsException t) {
                throw t;
            }
            throw new TlsException(TlsException.Kind.CREDENTIALS, "cannot read: path=" + file + ": " + e, e);
        }
    }

    /** PrivateKeyInfo (RFC 5208): version 0, the algorithm, the key in its own format. */
    private static byte[] pkcs8(byte[] algorithm, byte[] key) {
        return Der.encode(Der.SEQUENCE, Der.encode(Der.INTEGER, new byte[] {0}), algorithm, Der.encode(Der.OCTET_STRING, key));
    }

    /** The named curve of a SEC1 ECPrivateKey: version 1, the key, [0] the curve's OID, [1] the public key. */
    private static byte[] curveOf(byte[] sec1) throws Der.MalformedException {
        for (Der.Element e : Der.readOne(sec1).children()) {
            if (e.is(Der.CONTEXT_0)) {
                Der.Element curve = Der.readOne(e.content());
                if (!curve.is(Der.OID)) {
                    throw new Der.MalformedException("EC parameters are not a named curve (explicit parameters are not supported)");
                }
                return curve.content();
            }
        }
        throw new Der.MalformedException("EC key without its curve (no [0] parameters)");
    }

    /** The JCA algorithm name for a PrivateKeyInfo's algorithm OID. */
    private static String algorithmOf(byte[] pkcs8) throws Der.MalformedException {
        List<Der.Element> info = Der.readOne(pkcs8).children();
        if (info.size() < 3 || !info.get(1).is(Der.SEQUENCE)) {
            throw new Der.MalformedException("not a PKCS#8 PrivateKeyInfo");
        }
        Der.Element oid = info.get(1).children().getFirst();
        byte[] id = oid.content();
        if (Arrays.equals(id, Der.OID_RSA_ENCRYPTION)) {
            return "RSA";
        } else if (Arrays.equals(id, Der.OID_RSASSA_PSS)) {
            return "RSASSA-PSS";
        } else if (Arrays.equals(id, Der.OID_EC_PUBLIC_KEY)) {
            return "EC";
        } else if (Arrays.equals(id, Der.OID_ED25519)) {
            return "Ed25519";
        } else if (Arrays.equals(id, Der.OID_ED448)) {
            return "Ed448";
        }
        throw new Der.MalformedException("unsupported key algorithm: oid=" + Der.dotted(id));
    }

    private static TlsException credentials(String source, String detail) {
        return new TlsException(TlsException.Kind.CREDENTIALS, "bad PEM file: path=" + source + ": " + detail);
    }

    private static List<String> labels(List<Block> blocks) {
        return blocks.stream().map(Block::label).toList();
    }
}
