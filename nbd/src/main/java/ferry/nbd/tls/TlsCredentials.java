package ferry.nbd.tls;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;

/**
 * X.509 credentials loaded the way QEMU's {@code -object tls-creds-x509,dir=DIR,endpoint=...,verify-peer=...}
 * loads them, as a JSSE context that makes TLS 1.3 engines. Files in DIR (QEMU's names):
 * <pre>
 *  ca-cert.pem       the CA(s) that sign the peers' certificates       always
 *  server-cert.pem   this server's certificate (then its chain)        endpoint=server
 *  server-key.pem    its private key                                   endpoint=server
 *  client-cert.pem   this client's certificate                         endpoint=client, when both are present
 *  client-key.pem    its private key                                   (a server with verify-peer=on needs them)
 * </pre>
 * As QEMU does, loading checks what would otherwise fail only at the first connection: the own
 * certificate is within its validity period, is signed by a CA in ca-cert.pem, and matches its key.
 * {@code ca-crl.pem} (a revocation list, which QEMU reads) is refused rather than ignored: Ferry does
 * not check revocation yet. {@code dh-params.pem} is ignored (TLS 1.3 has no custom DH groups).
 *
 * <p>verify-peer=on (QEMU's default): a server requires a client certificate signed by a CA in
 * ca-cert.pem; a client checks the server's certificate against ca-cert.pem, and its host name when
 * one is given. A client with verify-peer=off (which QEMU allows) is refused. Immutable; any thread.
 */
public final class TlsCredentials {
    public enum Endpoint { SERVER, CLIENT }

    public static final String CA_CERT = "ca-cert.pem";
    public static final String CA_CRL = "ca-crl.pem";
    public static final String SERVER_CERT = "server-cert.pem";
    public static final String SERVER_KEY = "server-key.pem";
    public static final String CLIENT_CERT = "client-cert.pem";
    public static final String CLIENT_KEY = "client-key.pem";
    /** TLS 1.3 only: every client Ferry is tested with (gnutls in QEMU 7.2 and libnbd 1.14) speaks it. */
    static final String PROTOCOL = "TLSv1.3";

    private final Path dir;
    private final Endpoint endpoint;
    private final boolean verifyPeer;
    private final SSLContext context;
    private final String subject;   // own certificate's subject, or null for a client without one

    private TlsCredentials(Path dir, Endpoint endpoint, boolean verifyPeer, SSLContext context, String subject) {
        this.dir = dir;
        this.endpoint = endpoint;
        this.verifyPeer = verifyPeer;
        this.context = context;
        this.subject = subject;
    }

    /** Loads DIR for {@code endpoint}; fails with one line naming the file and what is wrong with it. */
    public static TlsCredentials load(Path dir, Endpoint endpoint, boolean verifyPeer) throws TlsException {
        if (!Files.isDirectory(dir)) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "tls-creds directory missing: dir=" + dir);
        }
        if (endpoint == Endpoint.CLIENT && !verifyPeer) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "verify-peer=off is not supported for a client: dir=" + dir
                    + " (a client that trusts any server is open to a man in the middle)");
        }
        if (Files.exists(dir.resolve(CA_CRL))) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "revocation lists are not supported yet: path="
                    + dir.resolve(CA_CRL) + " (remove it, or serve with qemu-nbd)");
        }
        List<X509Certificate> cas = PemFiles.certificates(dir.resolve(CA_CERT));
        Path certFile = dir.resolve(endpoint == Endpoint.SERVER ? SERVER_CERT : CLIENT_CERT);
        Path keyFile = dir.resolve(endpoint == Endpoint.SERVER ? SERVER_KEY : CLIENT_KEY);
        boolean own = endpoint == Endpoint.SERVER || Files.exists(certFile) && Files.exists(keyFile);
        try {
            KeyStore trusted = KeyStore.getInstance("PKCS12");
            trusted.load(null, null);
            for (int i = 0; i < cas.size(); i++) {
                trusted.setCertificateEntry("ca-" + i, cas.get(i));
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
            tmf.init(trusted);
            KeyManager[] keyManagers = null;
            String subject = null;
            if (own) {
                List<X509Certificate> chain = PemFiles.certificates(certFile);
                PrivateKey key = PemFiles.privateKey(keyFile);
                check(chain.getFirst(), certFile, key, keyFile, cas);
                char[] password = "in-memory".toCharArray();
                KeyStore keys = KeyStore.getInstance("PKCS12");
                keys.load(null, null);
                keys.setKeyEntry("own", key, password, chain.toArray(X509Certificate[]::new));
                KeyManagerFactory kmf = KeyManagerFactory.getInstance("PKIX");
                kmf.init(keys, password);
                keyManagers = kmf.getKeyManagers();
                subject = chain.getFirst().getSubjectX500Principal().getName();
            }
            SSLContext context = SSLContext.getInstance(PROTOCOL);
            context.init(keyManagers, tmf.getTrustManagers(), new SecureRandom());
            return new TlsCredentials(dir, endpoint, verifyPeer, context, subject);
        } catch (java.io.IOException | GeneralSecurityException e) {
            throw new TlsException(TlsException.Kind.CREDENTIALS, "tls-creds unusable: dir=" + dir + ": " + e.getMessage(), e);
        }
    }

    /** The checks QEMU makes when it loads credentials, so that a mistake shows at start, not per connection. */
    private static void check(X509Certificate cert, Path certFile, PrivateKey key, Path keyFile, List<X509Certificate> cas)
            throws TlsException {
        try {
            cert.checkValidity();
        } catch (CertificateExpiredException e) {
            throw credentials("certificate expired: path=" + certFile + " notAfter=" + cert.getNotAfter().toInstant());
        } catch (CertificateNotYetValidException e) {
            throw credentials("certificate not valid yet: path=" + certFile + " notBefore=" + cert.getNotBefore().toInstant());
        }
        boolean signed = false;
        for (X509Certificate ca : cas) {
            signed |= ca.getSubjectX500Principal().equals(cert.getIssuerX500Principal()) && verifies(cert, ca.getPublicKey());
        }
        if (!signed && !cas.contains(cert)) {
            throw credentials("certificate not signed by a CA in " + CA_CERT + ": path=" + certFile
                    + " issuer=" + cert.getIssuerX500Principal().getName());
        }
        if (!matches(key, cert.getPublicKey())) {
            throw credentials("private key does not match the certificate: key=" + keyFile + " cert=" + certFile);
        }
    }

    private static boolean verifies(X509Certificate cert, PublicKey issuerKey) {
        try {
            cert.verify(issuerKey);
            return true;
        } catch (GeneralSecurityException e) {
            return false;
        }
    }

    /** Signs a nonce with the key and verifies it with the certificate's public key. */
    private static boolean matches(PrivateKey key, PublicKey publicKey) throws TlsException {
        String algorithm = switch (key.getAlgorithm()) {
            case "RSA" -> "SHA256withRSA";
            case "RSASSA-PSS" -> null;   // its parameters live in the key; the TLS handshake checks it
            case "EC" -> "SHA256withECDSA";
            case "Ed25519", "Ed448", "EdDSA" -> "EdDSA";
            default -> null;
        };
        if (algorithm == null) {
            return true;
        }
        try {
            byte[] nonce = new byte[32];
            new SecureRandom().nextBytes(nonce);
            Signature signer = Signature.getInstance(algorithm);
            signer.initSign(key);
            signer.update(nonce);
            byte[] signature = signer.sign();
            Signature verifier = Signature.getInstance(algorithm);
            verifier.initVerify(publicKey);
            verifier.update(nonce);
            return verifier.verify(signature);
        } catch (GeneralSecurityException e) {
            return false;   // e.g. an EC key against an RSA certificate
        }
    }

    private static TlsException credentials(String message) {
        return new TlsException(TlsException.Kind.CREDENTIALS, message);
    }

    /** A server-side engine: TLS 1.3, a client certificate required when verify-peer is on. */
    public SSLEngine serverEngine() {
        if (endpoint != Endpoint.SERVER) {
            throw new IllegalStateException("client credentials cannot serve: dir=" + dir);
        }
        SSLEngine engine = context.createSSLEngine();
        engine.setUseClientMode(false);
        SSLParameters p = engine.getSSLParameters();
        p.setProtocols(new String[] {PROTOCOL});
        p.setNeedClientAuth(verifyPeer);
        engine.setSSLParameters(p);
        return engine;
    }

    /**
     * A client-side engine: TLS 1.3; with verify-peer the server's certificate must chain to
     * ca-cert.pem (JSSE always checks that) and, when {@code hostname} is not null, name that host.
     */
    public SSLEngine clientEngine(String hostname) {
        if (endpoint != Endpoint.CLIENT) {
            throw new IllegalStateException("server credentials cannot connect: dir=" + dir);
        }
        SSLEngine engine = hostname == null ? context.createSSLEngine() : context.createSSLEngine(hostname, -1);
        engine.setUseClientMode(true);
        SSLParameters p = engine.getSSLParameters();
        p.setProtocols(new String[] {PROTOCOL});
        if (verifyPeer && hostname != null) {
            p.setEndpointIdentificationAlgorithm("HTTPS");   // RFC 2818 host name rules: SAN dNSName / iPAddress
        }
        engine.setSSLParameters(p);
        return engine;
    }

    public Path dir() {
        return dir;
    }

    public Endpoint endpoint() {
        return endpoint;
    }

    public boolean verifyPeer() {
        return verifyPeer;
    }

    /** For logs: {@code dir=/etc/pki/ferry endpoint=server verify-peer=on subject=CN=host}. */
    public String describe() {
        return "dir=" + dir + " endpoint=" + endpoint.name().toLowerCase(java.util.Locale.ROOT)
                + " verify-peer=" + (verifyPeer ? "on" : "off") + (subject == null ? "" : " subject=" + subject);
    }
}
