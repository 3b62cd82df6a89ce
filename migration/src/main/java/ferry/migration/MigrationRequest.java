package ferry.migration;

import ferry.migration.stream.StreamSecurity;
import java.util.Objects;

/**
 * What the user asked for with {@code migrate [-d] [-b] [-i] tcp:HOST:PORT}, and how the stream goes
 * there (the migration parameters tls-creds, tls-hostname).
 *
 * @param copyDisks {@code -b}: copy the disks; without it the disks are shared and only RAM moves
 * @param incremental {@code -i}: copy only what lies on top of the base image both hosts hold
 * @param security plain TCP, or TLS 1.3 with the source's credentials
 * @param resume {@code -r}: go on from where an interrupted migration stopped (DESIGN.md "Resume")
 */
public record MigrationRequest(String host, int port, boolean copyDisks, boolean incremental, StreamSecurity security,
                               boolean resume) {
    public MigrationRequest {
        if (port <= 0 || port > 65535) {
            throw new IllegalArgumentException("port out of range: " + port);
        }
        if (incremental && !copyDisks) {
            throw new IllegalArgumentException("-i needs -b: incremental migration copies disks");
        }
        Objects.requireNonNull(security, "security");
        if (resume && !copyDisks) {
            throw new IllegalArgumentException("-r needs -b: it resumes a block migration");
        }
    }

    /** A fresh start. */
    public MigrationRequest(String host, int port, boolean copyDisks, boolean incremental, StreamSecurity security) {
        this(host, port, copyDisks, incremental, security, false);
    }

    /** Over plain TCP. */
    public MigrationRequest(String host, int port, boolean copyDisks, boolean incremental) {
        this(host, port, copyDisks, incremental, new StreamSecurity.Plain());
    }
}
