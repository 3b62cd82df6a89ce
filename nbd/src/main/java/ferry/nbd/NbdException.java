package ferry.nbd;

import java.io.IOException;

/**
 * The NBD layer's one checked exception. {@link Kind#PROTOCOL}: the peer sent something that cannot
 * be framed or violates the handshake; {@link Kind#REFUSED}: the peer answered with an error (the NBD
 * error is in {@link #error()}); {@link Kind#CLOSED}: the connection ended; {@link Kind#IO}: a socket
 * or image failure underneath.
 */
public final class NbdException extends IOException {
    public enum Kind { PROTOCOL, REFUSED, CLOSED, IO }

    private final Kind kind;
    private final int error;

    public NbdException(Kind kind, String message) {
        this(kind, 0, message, null);
    }

    public NbdException(Kind kind, String message, Throwable cause) {
        this(kind, 0, message, cause);
    }

    public NbdException(Kind kind, int error, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
        this.error = error;
    }

    public Kind kind() {
        return kind;
    }

    /** The NBD error (e.g. {@link NbdWire#EPERM}) or option reply type the peer answered, 0 if none. */
    public int error() {
        return error;
    }
}
