package ferry.migration.stream;

import java.io.IOException;

/**
 * A connection refused before the migration protocol began (TLS handshake, plaintext peer, tls-authz):
 * the message is the one line for the log or {@code info migrate}; the peer was told where possible.
 */
public final class StreamRefused extends IOException {
    public StreamRefused(String message) {
        super(message);
    }

    public StreamRefused(String message, Throwable cause) {
        super(message, cause);
    }
}
