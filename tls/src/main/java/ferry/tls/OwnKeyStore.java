package ferry.tls;

import java.io.IOException;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.crypto.spec.PBEParameterSpec;

/**
 * The in-memory key store that hands this side's key and certificate chain to a JSSE
 * {@code KeyManagerFactory}: JSSE takes keys only through a {@link KeyStore}, and never writes this one
 * anywhere.
 *
 * <p>Design notes: a PKCS12 store encrypts every key it is given, by default with PBKDF2 at 10,000
 * iterations, once on the way in and again when the key manager reads it back. That bought nothing here
 * (the store lives and dies in this process, next to the plain key it was made from) and cost 20,000
 * HMAC-SHA256 rounds per {@link TlsCredentials#load}, which runs at every migration to pick up renewed
 * files: on the 2-core benchmark machine about 0.1 CPU s warm and 0.4 s cold, plus a C2 compilation of
 * PBKDF2 (0.7 CPU s) during the migration's first seconds (docs/BENCHMARKS.md "TLS"). One iteration keeps
 * the store's format and JSSE's code path as they were.
 */
final class OwnKeyStore {
    static final char[] PASSWORD = new char[0];
    /** The key protection PKCS12 uses by default since JDK 12, with one iteration instead of 10,000. */
    private static final String PROTECTION = "PBEWithHmacSHA256AndAES_256";
    private static final int ITERATIONS = 1;
    private static final SecureRandom SALTS = new SecureRandom();

    private OwnKeyStore() {}

    /** A store with one entry, alias {@code own}: {@code key} and {@code chain} (leaf first). */
    static KeyStore of(List<X509Certificate> chain, PrivateKey key) throws GeneralSecurityException {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try {
            store.load(null, null);
        } catch (IOException e) {
            throw new GeneralSecurityException("an empty PKCS12 key store could not be made: " + e.getMessage(), e);
        }
        byte[] salt = new byte[16];
        SALTS.nextBytes(salt);
        store.setEntry("own", new KeyStore.PrivateKeyEntry(key, chain.toArray(X509Certificate[]::new)),
                new KeyStore.PasswordProtection(PASSWORD, PROTECTION, new PBEParameterSpec(salt, ITERATIONS)));
        return store;
    }
}
