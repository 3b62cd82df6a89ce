package ferry.nbd.tls;

import ferry.tls.PemFiles;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import ferry.tls.TlsException;
import java.net.Socket;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;

/** The committed TLS fixtures under src/test/resources/tls (see make-fixtures.sh there for what each is). */
public final class Fixtures {
    private Fixtures() {}

    public static Path dir(String name) {
        try {
            return Path.of(Fixtures.class.getResource("/tls/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    public static TlsCredentials server(boolean verifyPeer) throws TlsException {
        return TlsCredentials.load("tls0", dir("good"), TlsEndpoint.SERVER, verifyPeer, true);
    }

    /** A client of {@code dir} ("good", "rogue"). */
    public static TlsCredentials client(String dir) throws TlsException {
        return TlsCredentials.load("tls0", dir(dir), TlsEndpoint.CLIENT, true, true);
    }

    /**
     * A client of {@code dir} that sends its certificate whatever CAs the server asks for, as gnutls
     * clients (QEMU, libnbd) do; JSSE's own key manager would send none when its issuer is not asked.
     */
    public static SSLEngine insistentClient(String dir) throws Exception {
        Path d = dir(dir);
        char[] password = "test".toCharArray();
        KeyStore keys = KeyStore.getInstance("PKCS12");
        keys.load(null, null);
        keys.setKeyEntry("own", PemFiles.privateKey(d.resolve("client-key.pem")), password,
                PemFiles.certificates(d.resolve("client-cert.pem")).toArray(X509Certificate[]::new));
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("PKIX");
        kmf.init(keys, password);
        X509ExtendedKeyManager own = (X509ExtendedKeyManager) kmf.getKeyManagers()[0];
        X509ExtendedKeyManager insistent = new X509ExtendedKeyManager() {
            @Override public String chooseEngineClientAlias(String[] keyType, Principal[] issuers, SSLEngine engine) {
                return own.chooseEngineClientAlias(keyType, null, engine);
            }
            @Override public String[] getClientAliases(String keyType, Principal[] issuers) { return own.getClientAliases(keyType, null); }
            @Override public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) { return own.chooseClientAlias(keyType, null, socket); }
            @Override public String[] getServerAliases(String keyType, Principal[] issuers) { return null; }
            @Override public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) { return null; }
            @Override public X509Certificate[] getCertificateChain(String alias) { return own.getCertificateChain(alias); }
            @Override public PrivateKey getPrivateKey(String alias) { return own.getPrivateKey(alias); }
        };
        KeyStore trusted = KeyStore.getInstance("PKCS12");
        trusted.load(null, null);
        int i = 0;
        for (X509Certificate ca : PemFiles.certificates(d.resolve("ca-cert.pem"))) {
            trusted.setCertificateEntry("ca-" + i++, ca);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trusted);
        SSLContext context = SSLContext.getInstance("TLSv1.3");
        context.init(new javax.net.ssl.KeyManager[] {insistent}, tmf.getTrustManagers(), null);
        SSLEngine engine = context.createSSLEngine("localhost", -1);
        engine.setUseClientMode(true);
        return engine;
    }
}
