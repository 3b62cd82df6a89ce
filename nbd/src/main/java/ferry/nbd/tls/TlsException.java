package ferry.nbd.tls;

import java.io.IOException;

/**
 * A TLS failure. {@link Kind#CREDENTIALS}: a certificate or key file cannot be used (missing,
 * unreadable, malformed, encrypted, expired, not matching); {@link Kind#HANDSHAKE}: the peer and we
 * did not agree (its certificate is not trusted, no common protocol, it hung up); {@link Kind#SESSION}:
 * a record failed after the handshake (bad MAC, unexpected message), or the session is closed.
 */
public final class TlsException extends IOException {
    public enum Kind { CREDENTIALS, HANDSHAKE, SESSION }

    private final Kind kind;

    public TlsException(Kind kind, String message) {
        this(kind, message, null);
    }

    public TlsException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
