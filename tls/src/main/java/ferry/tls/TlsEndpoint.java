package ferry.tls;

/**
 * QEMU's {@code endpoint=} of {@code tls-creds-x509}: which side of a connection the credentials are for.
 * A migration destination listens with {@code server} credentials, a source connects with {@code client} ones.
 */
public enum TlsEndpoint {
    SERVER("server"),
    CLIENT("client");

    private final String qemuName;

    TlsEndpoint(String qemuName) {
        this.qemuName = qemuName;
    }

    /** As written after {@code endpoint=}. */
    public String qemuName() {
        return qemuName;
    }

    /** {@code server} or {@code client}; anything else is an {@link IllegalArgumentException}. */
    public static TlsEndpoint parse(String text) {
        for (TlsEndpoint endpoint : values()) {
            if (endpoint.qemuName.equals(text)) {
                return endpoint;
            }
        }
        throw new IllegalArgumentException("endpoint=" + text + ": expected server or client");
    }
}
