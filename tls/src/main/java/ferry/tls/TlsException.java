package ferry.tls;

import java.io.IOException;

/**
 * A TLS credential, authorization or connection problem, with a stable kind. Messages follow "what failed: detail",
 * name the file or object, and never contain key material.
 */
public final class TlsException extends IOException {
    public enum Kind {
        /** a file is missing or unreadable */
        FILE,
        /** a file does not hold what its name promises (not PEM, not a certificate, not a key) */
        FORMAT,
        /** well-formed, but not something Ferry takes (an encrypted key, a CRL, a key type JSSE lacks) */
        UNSUPPORTED,
        /** QEMU's sanity check: the certificates do not fit together or are not valid now */
        SANITY,
        /** an authorization object cannot decide (its rule file is unreadable or wrong) */
        AUTHZ,
        /** a connection's TLS handshake failed: the peer's certificate is not trusted, no common protocol, it hung up */
        HANDSHAKE,
        /** a record failed after the handshake (bad MAC, unexpected message), or the session is closed */
        SESSION
    }

    private final Kind kind;

    public TlsException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public TlsException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
