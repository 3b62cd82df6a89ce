package ferry.tls;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPrivateKeySpec;
import java.security.spec.KeySpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.RSAPrivateCrtKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the PEM files of QEMU's {@code tls-creds-x509} directory into JDK objects: certificates
 * ({@code CERTIFICATE}, one or more per file) and private keys in the three forms openssl, GnuTLS's
 * certtool and QEMU's documentation produce: PKCS#8 ({@code PRIVATE KEY}: RSA, RSASSA-PSS, EC,
 * Ed25519, Ed448), PKCS#1 ({@code RSA PRIVATE KEY}) and SEC1 ({@code EC PRIVATE KEY}). JSSE has no PEM
 * reader (JDK 25's {@code PEMDecoder} is a preview API), and the job is base64 plus a walk of a few DER
 * fields ({@link Der}) into the JDK's own {@link KeyFactory}: no cryptography here, and no third-party
 * library in the credentials path. Encrypted keys are refused with a clear message (QEMU reads them
 * with {@code passwordid=}, which Ferry does not take).
 *
 * <p>Stateless; any thread.
 */
public final class PemFiles {
    private static final Pattern BLOCK = Pattern.compile(
            "-----BEGIN ([A-Z0-9 ]+)-----\\R(.*?)-----END \\1-----", Pattern.DOTALL);
    private static final Map<String, String> KEY_ALGORITHMS = Map.of(
            "1.2.840.113549.1.1.1", "RSA",
            "1.2.840.113549.1.1.10", "RSASSA-PSS",
            "1.2.840.10045.2.1", "EC",
            "1.3.101.112", "Ed25519",
            "1.3.101.113", "Ed448");

    /** Far above any certificate bundle; a larger file is not credentials and is not read into memory. */
    static final long MAX_FILE_LENGTH = 4 << 20;

    private PemFiles() {}

    /** One {@code -----BEGIN LABEL-----} block: its label and decoded bytes. */
    record Block(String label, boolean encryptedHeaders, byte[] der) {}

    static List<Block> blocks(String text, Path file) throws TlsException {
        List<Block> blocks = new ArrayList<>();
        Matcher m = BLOCK.matcher(text);
        while (m.find()) {
            String body = m.group(2);
            boolean headers = body.contains("Proc-Type:") || body.contains("DEK-Info:");
            if (headers) {
                blocks.add(new Block(m.group(1), true, new byte[0]));
                continue;
            }
            try {
                blocks.add(new Block(m.group(1), false, Base64.getMimeDecoder().decode(body.strip())));
            } catch (IllegalArgumentException e) {
                throw new TlsException(TlsException.Kind.FORMAT, "bad base64 in the " + m.group(1) + " block of " + file
                        + ": " + e.getMessage());
            }
        }
        return blocks;
    }

    private static String read(Path file) throws TlsException {
        try {
            if (!Files.isRegularFile(file)) {   // follows links, as QEMU does; a FIFO would block the reader
                throw new TlsException(TlsException.Kind.FILE, "Unable to access credentials " + file + ": "
                        + (Files.exists(file, java.nio.file.LinkOption.NOFOLLOW_LINKS) ? "not a regular file" : "no such file"));
            }
            long length = Files.size(file);
            if (length > MAX_FILE_LENGTH) {
                throw new TlsException(TlsException.Kind.FORMAT, "not a PEM file: " + file + " (" + length
                        + " bytes; credentials files are at most " + MAX_FILE_LENGTH + ")");
            }
            return Files.readString(file, StandardCharsets.US_ASCII);
        } catch (java.nio.charset.MalformedInputException e) {
            throw new TlsException(TlsException.Kind.FORMAT, "not a PEM file: " + file + " (binary content; Ferry reads PEM,"
                    + " as QEMU does)");
        } catch (TlsException e) {
            throw e;
        } catch (IOException e) {
            throw new TlsException(TlsException.Kind.FILE, "Unable to access credentials " + file + ": " + e.getMessage(), e);
        }
    }

    /** Every {@code CERTIFICATE} in the file, in order; at least one. */
    public static List<X509Certificate> certificates(Path file) throws TlsException {
        List<X509Certificate> certificates = new ArrayList<>();
        try {
            CertificateFactory factory = CertificateFactory.getInstance("X.509");
            for (Block block : blocks(read(file), file)) {
                if (block.label().equals("CERTIFICATE") || block.label().equals("X509 CERTIFICATE")) {
                    certificates.add((X509Certificate) factory.generateCertificate(new ByteArrayInputStream(block.der())));
                }
            }
        } catch (CertificateException e) {
            throw new TlsException(TlsException.Kind.FORMAT, "bad certificate in " + file + ": " + e.getMessage(), e);
        }
        if (certificates.isEmpty()) {
            throw new TlsException(TlsException.Kind.FORMAT, "no certificate in " + file
                    + " (expected a -----BEGIN CERTIFICATE----- block)");
        }
        return certificates;
    }

    /** The one private key in the file. */
    public static PrivateKey privateKey(Path file) throws TlsException {
        List<Block> keys = new ArrayList<>();
        for (Block block : blocks(read(file), file)) {
            if (block.label().endsWith("PRIVATE KEY")) {
                keys.add(block);
            }
        }
        if (keys.size() != 1) {
            throw new TlsException(TlsException.Kind.FORMAT, (keys.isEmpty() ? "no private key in " : "more than one private key in ")
                    + file + " (expected one PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)");
        }
        Block key = keys.getFirst();
        if (key.encryptedHeaders() || key.label().equals("ENCRYPTED PRIVATE KEY")) {
            throw new TlsException(TlsException.Kind.UNSUPPORTED, "the private key in " + file + " is encrypted: Ferry reads"
                    + " unencrypted keys only (keep the file mode 0600; QEMU's passwordid= is not supported)");
        }
        try {
            return switch (key.label()) {
                case "PRIVATE KEY" -> pkcs8(key.der(), file);
                case "RSA PRIVATE KEY" -> KeyFactory.getInstance("RSA").generatePrivate(pkcs1(key.der()));
                case "EC PRIVATE KEY" -> KeyFactory.getInstance("EC").generatePrivate(sec1(key.der()));
                default -> throw new TlsException(TlsException.Kind.UNSUPPORTED, "unsupported key block " + key.label() + " in "
                        + file + " (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)");
            };
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new TlsException(TlsException.Kind.FORMAT, "bad " + key.label() + " in " + file + ": " + e.getMessage(), e);
        }
    }

    /** PKCS#8 PrivateKeyInfo: {@code SEQUENCE { version, AlgorithmIdentifier { OID, params }, OCTET STRING key }}. */
    private static PrivateKey pkcs8(byte[] der, Path file) throws GeneralSecurityException, TlsException {
        Der info = Der.only(der).open();
        info.next().integer();
        Der.Element algorithm = info.next();
        algorithm.expect(Der.SEQUENCE);
        String oid = algorithm.open().next().oid();
        String name = KEY_ALGORITHMS.get(oid);
        if (name == null) {
            throw new TlsException(TlsException.Kind.UNSUPPORTED, "unsupported key algorithm " + oid + " in " + file
                    + " (RSA, EC, Ed25519 and Ed448 are supported)");
        }
        return KeyFactory.getInstance(name).generatePrivate(new PKCS8EncodedKeySpec(der));
    }

    /** PKCS#1 RSAPrivateKey: {@code SEQUENCE { version, n, e, d, p, q, dP, dQ, qInv }} (RFC 8017 A.1.2). */
    static KeySpec pkcs1(byte[] der) {
        Der key = Der.only(der).open();
        BigInteger version = key.next().integer();
        if (version.signum() != 0) {
            throw new IllegalArgumentException("multi-prime RSA keys (version " + version + ") are not supported");
        }
        BigInteger[] f = new BigInteger[8];
        for (int i = 0; i < f.length; i++) {
            f[i] = key.next().integer();
        }
        return new RSAPrivateCrtKeySpec(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
    }

    /** SEC1 ECPrivateKey: {@code SEQUENCE { 1, OCTET STRING d, [0] namedCurve OID, [1] publicKey }} (RFC 5915). */
    static KeySpec sec1(byte[] der) throws GeneralSecurityException {
        Der key = Der.only(der).open();
        key.next().integer();
        Der.Element secret = key.next();
        secret.expect(Der.OCTET_STRING);
        String curve = null;
        while (key.more()) {
            Der.Element field = key.next();
            if (field.tag() == Der.CONTEXT_0) {
                curve = field.open().next().oid();
            }
        }
        if (curve == null) {
            throw new IllegalArgumentException("the EC key does not name its curve");
        }
        AlgorithmParameters parameters = AlgorithmParameters.getInstance("EC");
        parameters.init(new ECGenParameterSpec(curve));
        return new ECPrivateKeySpec(new BigInteger(1, secret.contents()), parameters.getParameterSpec(ECParameterSpec.class));
    }
}
