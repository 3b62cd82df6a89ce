package ferry.tls;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertPathValidator;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * QEMU's {@code -object tls-creds-x509,id=ID,dir=DIR,endpoint=server|client[,verify-peer=on|off]}, loaded
 * for JSSE. DIR holds QEMU's file names: {@code ca-cert.pem} (always), {@code server-cert.pem} and
 * {@code server-key.pem} (endpoint=server), {@code client-cert.pem} and {@code client-key.pem}
 * (endpoint=client; optional there, but a server with verify-peer=on refuses a client without them).
 *
 * <p>Policy, the same for every connection Ferry makes with these credentials: TLS 1.3 only (JSSE's
 * default TLS 1.3 suites); a server with verify-peer=on requires a client certificate signed by a CA of
 * {@code ca-cert.pem}; a client with verify-peer=on checks the server's certificate against
 * {@code ca-cert.pem} and its host name (RFC 2818 rules, DNS and IP subject alternative names) against the
 * name it was given. verify-peer=off on a client trusts any server (QEMU's meaning), on a server asks for
 * no client certificate. With sanity-check=on (QEMU's default) {@link #load} refuses what QEMU's own
 * sanity check refuses: a CA certificate that is no CA, an own certificate that is a CA, expired or not yet
 * valid, not issued by {@code ca-cert.pem}, or whose key is not the key file's. {@code ca-crl.pem} is
 * refused rather than silently ignored: revocation lists are not supported yet.
 *
 * <p>Immutable once loaded; any thread. Loading again picks up renewed files.
 */
public final class TlsCredentials {
    public static final String CA_CERT = "ca-cert.pem", CA_CRL = "ca-crl.pem";
    public static final String SERVER_CERT = "server-cert.pem", SERVER_KEY = "server-key.pem";
    public static final String CLIENT_CERT = "client-cert.pem", CLIENT_KEY = "client-key.pem";
    public static final String PROTOCOL = "TLSv1.3";

    private final String id;
    private final Path dir;
    private final TlsEndpoint endpoint;
    private final boolean verifyPeer;
    private final List<X509Certificate> authorities;
    private final Optional<X509Certificate> certificate;
    private final SSLContext context;
    private final List<X509Certificate> chain;
    private final PrivateKey key;

    private TlsCredentials(String id, Path dir, TlsEndpoint endpoint, boolean verifyPeer, List<X509Certificate> authorities,
                           List<X509Certificate> chain, PrivateKey key, SSLContext context) {
        this.id = id;
        this.dir = dir;
        this.endpoint = endpoint;
        this.verifyPeer = verifyPeer;
        this.authorities = List.copyOf(authorities);
        this.chain = List.copyOf(chain);
        this.key = key;
        this.certificate = chain.isEmpty() ? Optional.empty() : Optional.of(chain.getFirst());
        this.context = context;
    }

    /** Reads and checks DIR's files; a {@link TlsException} says which file and why. */
    public static TlsCredentials load(String id, Path dir, TlsEndpoint endpoint, boolean verifyPeer, boolean sanityCheck)
            throws TlsException {
        if (!Files.isDirectory(dir)) {
            throw new TlsException(TlsException.Kind.FILE, "tls-creds-x509 " + id + ": dir=" + dir + " is not a directory");
        }
        if (Files.exists(dir.resolve(CA_CRL))) {
            throw new TlsException(TlsException.Kind.UNSUPPORTED, "tls-creds-x509 " + id + ": " + dir.resolve(CA_CRL)
                    + " is present, but Ferry does not check revocation lists yet; remove it or revoke by replacing the CA");
        }
        List<X509Certificate> authorities = PemFiles.certificates(dir.resolve(CA_CERT));
        Path certFile = dir.resolve(endpoint == TlsEndpoint.SERVER ? SERVER_CERT : CLIENT_CERT);
        Path keyFile = dir.resolve(endpoint == TlsEndpoint.SERVER ? SERVER_KEY : CLIENT_KEY);
        boolean own = endpoint == TlsEndpoint.SERVER || Files.exists(certFile) || Files.exists(keyFile);
        PrivateKey key = null;
        List<X509Certificate> chain = List.of();
        if (own) {
            chain = PemFiles.certificates(certFile);      // leaf first; intermediates may follow
            key = PemFiles.privateKey(keyFile);
        }
        if (sanityCheck) {
            Sanity.check(id, dir, endpoint, authorities, chain, key);
        }
        try {
            SSLContext context = SSLContext.getInstance(PROTOCOL);
            context.init(own ? keyManagers(chain, key) : null, trustManagers(endpoint, verifyPeer, authorities, dir),
                    new SecureRandom());
            return new TlsCredentials(id, dir, endpoint, verifyPeer, authorities, chain, key, context);
        } catch (GeneralSecurityException | IOException e) {
            throw new TlsException(TlsException.Kind.FORMAT, "tls-creds-x509 " + id + ": JSSE refused the credentials in " + dir
                    + ": " + e.getMessage(), e);
        }
    }

    private static KeyManager[] keyManagers(List<X509Certificate> chain, PrivateKey key) throws GeneralSecurityException {
        KeyManagerFactory factory = KeyManagerFactory.getInstance("PKIX");
        factory.init(OwnKeyStore.of(chain, key), OwnKeyStore.PASSWORD);
        return factory.getKeyManagers();
    }

    private static TrustManager[] trustManagers(TlsEndpoint endpoint, boolean verifyPeer, List<X509Certificate> authorities,
                                                Path dir) throws GeneralSecurityException, IOException {
        KeyStore store = KeyStore.getInstance("PKCS12");
        store.load(null, null);
        for (int i = 0; i < authorities.size(); i++) {
            store.setCertificateEntry("ca-" + i, authorities.get(i));
        }
        TrustManagerFactory factory = TrustManagerFactory.getInstance("PKIX");
        factory.init(store);
        X509ExtendedTrustManager pkix = null;
        for (TrustManager manager : factory.getTrustManagers()) {
            if (manager instanceof X509ExtendedTrustManager x) {
                pkix = x;
            }
        }
        if (pkix == null) {
            throw new GeneralSecurityException("no X509ExtendedTrustManager from the PKIX TrustManagerFactory");
        }
        boolean trustAnyServer = endpoint == TlsEndpoint.CLIENT && !verifyPeer;
        return new TrustManager[] {new PeerTrust(pkix, authorities, dir.resolve(CA_CERT), trustAnyServer)};
    }

    public String id() {
        return id;
    }

    public Path dir() {
        return dir;
    }

    public TlsEndpoint endpoint() {
        return endpoint;
    }

    public boolean verifyPeer() {
        return verifyPeer;
    }

    /**
     * Compiles the TLS path ahead of the first migration ({@link TlsWarmUp}): {@code rounds} runs of
     * {@code round}, with engines of a throwaway context that holds this side's own key. Credentials without
     * a key of their own (a client without client-cert.pem) have nothing to warm up with and return at once.
     */
    public void warmUp(TlsWarmUp.Round round, int rounds) throws TlsException, InterruptedException {
        if (key == null) {
            return;
        }
        try {
            TlsWarmUp.run(chain, key, round, rounds);
        } catch (GeneralSecurityException | IOException e) {
            throw new TlsException(TlsException.Kind.UNSUPPORTED, "tls-creds-x509 " + id + ": the TLS warm-up failed: " + e.getMessage(), e);
        }
    }

    /** This side's own certificate (always for a server; a client may have none). */
    public Optional<X509Certificate> certificate() {
        return certificate;
    }

    public List<X509Certificate> authorities() {
        return authorities;
    }

    /**
     * A TLS client over an already connected socket, not yet handshaken. {@code serverName} is what the
     * server's certificate must name (QEMU's tls-hostname, or the host the caller connected to).
     * Closing the TLS socket leaves {@code connected} open: the caller closes it (so that a refusal can
     * drain the peer's bytes before the close, and the peer reads the TLS alert instead of a reset).
     */
    public SSLSocket client(Socket connected, String serverName, int port) throws IOException {
        requireEndpoint(TlsEndpoint.CLIENT);
        SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket(connected, serverName, port, false);
        SSLParameters parameters = socket.getSSLParameters();
        parameters.setProtocols(new String[] {PROTOCOL});
        if (verifyPeer) {
            parameters.setEndpointIdentificationAlgorithm("HTTPS");     // RFC 2818: SAN DNS/IP, leftmost wildcard
        }
        socket.setSSLParameters(parameters);
        socket.setUseClientMode(true);
        return socket;
    }

    /**
     * A TLS server over an accepted socket, not yet handshaken. {@code consumed}: bytes the caller already
     * read from it (to tell TLS from a plaintext peer), handed to TLS first. Closing it leaves
     * {@code accepted} open, as in {@link #client}.
     */
    public SSLSocket server(Socket accepted, byte[] consumed) throws IOException {
        requireEndpoint(TlsEndpoint.SERVER);
        SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket(accepted, new ByteArrayInputStream(consumed), false);
        SSLParameters parameters = socket.getSSLParameters();
        parameters.setProtocols(new String[] {PROTOCOL});
        parameters.setNeedClientAuth(verifyPeer);
        socket.setSSLParameters(parameters);
        socket.setUseClientMode(false);
        return socket;
    }

    /**
     * A server-side engine for a connection that upgrades in the middle of its own protocol (NBD's
     * STARTTLS, driven by {@link TlsChannel}): TLS 1.3, a client certificate required when
     * verify-peer is on; the same policy as {@link #server}.
     */
    public SSLEngine serverEngine() throws TlsException {
        requireEndpoint(TlsEndpoint.SERVER);
        SSLEngine engine = context.createSSLEngine();
        engine.setUseClientMode(false);
        SSLParameters parameters = engine.getSSLParameters();
        parameters.setProtocols(new String[] {PROTOCOL});
        parameters.setNeedClientAuth(verifyPeer);
        engine.setSSLParameters(parameters);
        return engine;
    }

    /**
     * A client-side engine, the policy of {@link #client}: with verify-peer the server's certificate must
     * chain to ca-cert.pem and, when {@code serverName} is not null, name that host.
     */
    public SSLEngine clientEngine(String serverName) throws TlsException {
        requireEndpoint(TlsEndpoint.CLIENT);
        SSLEngine engine = serverName == null ? context.createSSLEngine() : context.createSSLEngine(serverName, -1);
        engine.setUseClientMode(true);
        SSLParameters parameters = engine.getSSLParameters();
        parameters.setProtocols(new String[] {PROTOCOL});
        if (verifyPeer && serverName != null) {
            parameters.setEndpointIdentificationAlgorithm("HTTPS");     // RFC 2818: SAN DNS/IP, leftmost wildcard
        }
        engine.setSSLParameters(parameters);
        return engine;
    }

    /** For logs: {@code dir=/etc/pki/ferry endpoint=server verify-peer=on subject=CN=host}. */
    public String describe() {
        return "dir=" + dir + " endpoint=" + endpoint.qemuName() + " verify-peer=" + (verifyPeer ? "on" : "off")
                + certificate.map(c -> " subject=" + c.getSubjectX500Principal().getName()).orElse("");
    }

    private void requireEndpoint(TlsEndpoint wanted) throws TlsException {
        if (endpoint != wanted) {
            throw new TlsException(TlsException.Kind.UNSUPPORTED, "TLS credentials '" + id + "' have endpoint=" + endpoint.qemuName()
                    + "; this side needs endpoint=" + wanted.qemuName());
        }
    }

    @Override
    public String toString() {
        return "tls-creds-x509 " + id + " (dir=" + dir + ", endpoint=" + endpoint.qemuName() + ", verify-peer="
                + (verifyPeer ? "on" : "off") + ")";
    }

    /** QEMU's load-time sanity check of the files, with QEMU's rules and Ferry's wording. */
    private static final class Sanity {
        private Sanity() {}

        static void check(String id, Path dir, TlsEndpoint endpoint, List<X509Certificate> authorities,
                          List<X509Certificate> chain, PrivateKey key) throws TlsException {
            String prefix = "tls-creds-x509 " + id + ": ";
            for (X509Certificate ca : authorities) {
                if (ca.getBasicConstraints() < 0) {
                    throw new TlsException(TlsException.Kind.SANITY, prefix + "the certificate '" + DistinguishedName.text(ca)
                            + "' in " + dir.resolve(CA_CERT) + " is not a CA certificate (basicConstraints CA:TRUE)");
                }
                valid(prefix, ca, dir.resolve(CA_CERT));
            }
            if (chain.isEmpty()) {
                return;
            }
            X509Certificate leaf = chain.getFirst();
            Path certFile = dir.resolve(endpoint == TlsEndpoint.SERVER ? SERVER_CERT : CLIENT_CERT);
            if (leaf.getBasicConstraints() >= 0) {
                throw new TlsException(TlsException.Kind.SANITY, prefix + "the certificate in " + certFile
                        + " is a CA certificate; it must be a " + endpoint.qemuName() + " certificate");
            }
            valid(prefix, leaf, certFile);
            purpose(prefix, leaf, endpoint, certFile);
            issuedByCa(prefix, chain, authorities, certFile, dir.resolve(CA_CERT));
            keyMatches(prefix, leaf, key, certFile);
        }

        private static void valid(String prefix, X509Certificate certificate, Path file) throws TlsException {
            try {
                certificate.checkValidity();
            } catch (java.security.cert.CertificateExpiredException e) {
                throw new TlsException(TlsException.Kind.SANITY, prefix + "the certificate '" + DistinguishedName.text(certificate)
                        + "' in " + file + " has expired (" + certificate.getNotAfter().toInstant() + ")");
            } catch (java.security.cert.CertificateNotYetValidException e) {
                throw new TlsException(TlsException.Kind.SANITY, prefix + "the certificate '" + DistinguishedName.text(certificate)
                        + "' in " + file + " is not valid before " + certificate.getNotBefore().toInstant());
            }
        }

        /** With an extendedKeyUsage extension, it must allow this endpoint's use (QEMU: a critical mismatch is refused). */
        private static void purpose(String prefix, X509Certificate leaf, TlsEndpoint endpoint, Path file) throws TlsException {
            try {
                List<String> usages = leaf.getExtendedKeyUsage();
                String wanted = endpoint == TlsEndpoint.SERVER ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2";
                if (usages != null && !usages.contains(wanted) && !usages.contains("2.5.29.37.0")) {
                    throw new TlsException(TlsException.Kind.SANITY, prefix + "the certificate in " + file + " is not for TLS "
                            + endpoint.qemuName() + "s (extendedKeyUsage lacks " + (endpoint == TlsEndpoint.SERVER
                            ? "serverAuth" : "clientAuth") + ")");
                }
            } catch (java.security.cert.CertificateParsingException e) {
                throw new TlsException(TlsException.Kind.FORMAT, prefix + "bad extendedKeyUsage in " + file + ": " + e.getMessage(), e);
            }
        }

        private static void issuedByCa(String prefix, List<X509Certificate> chain, List<X509Certificate> authorities,
                                       Path file, Path caFile) throws TlsException {
            try {
                Set<TrustAnchor> anchors = new HashSet<>();
                authorities.forEach(ca -> anchors.add(new TrustAnchor(ca, null)));
                PKIXParameters parameters = new PKIXParameters(anchors);
                parameters.setRevocationEnabled(false);
                CertPathValidator.getInstance("PKIX").validate(CertificateFactory.getInstance("X.509").generateCertPath(chain),
                        parameters);
            } catch (CertPathValidatorException e) {
                throw new TlsException(TlsException.Kind.SANITY, prefix + "the certificate '" + DistinguishedName.text(chain.getFirst())
                        + "' in " + file + " is not issued by a CA in " + caFile + " (" + e.getMessage() + ")", e);
            } catch (GeneralSecurityException e) {
                throw new TlsException(TlsException.Kind.SANITY, prefix + "cannot check " + file + " against " + caFile + ": "
                        + e.getMessage(), e);
            }
        }

        /** The key file's key is the certificate's: a signature by the one verifies with the other. */
        private static void keyMatches(String prefix, X509Certificate leaf, PrivateKey key, Path file) throws TlsException {
            String algorithm = switch (key.getAlgorithm()) {
                case "RSA" -> "SHA256withRSA";
                case "RSASSA-PSS" -> "RSASSA-PSS";
                case "EC" -> "SHA256withECDSA";
                default -> key.getAlgorithm();           // Ed25519, Ed448, EdDSA
            };
            try {
                byte[] probe = new byte[32];
                new SecureRandom().nextBytes(probe);
                Signature signer = Signature.getInstance(algorithm);
                if (algorithm.equals("RSASSA-PSS")) {
                    signer.setParameter(new java.security.spec.PSSParameterSpec("SHA-256", "MGF1",
                            java.security.spec.MGF1ParameterSpec.SHA256, 32, 1));
                }
                signer.initSign(key);
                signer.update(probe);
                byte[] signature = signer.sign();
                Signature verifier = Signature.getInstance(algorithm);
                if (algorithm.equals("RSASSA-PSS")) {
                    verifier.setParameter(new java.security.spec.PSSParameterSpec("SHA-256", "MGF1",
                            java.security.spec.MGF1ParameterSpec.SHA256, 32, 1));
                }
                verifier.initVerify(leaf.getPublicKey());
                verifier.update(probe);
                if (!verifier.verify(signature)) {
                    throw new TlsException(TlsException.Kind.SANITY, prefix + "the private key does not belong to the certificate in "
                            + file);
                }
            } catch (GeneralSecurityException e) {
                throw new TlsException(TlsException.Kind.SANITY, prefix + "the private key does not fit the certificate in " + file
                        + ": " + e.getMessage(), e);
            }
        }
    }

    /** A peer certificate JSSE refused, with Ferry's one-line reason; the cause keeps JSSE's own (it picks the TLS alert). */
    public static final class PeerCertificateRefused extends CertificateException {
        public PeerCertificateRefused(String message, Throwable cause) {
            super(message, cause);
        }
    }
}
