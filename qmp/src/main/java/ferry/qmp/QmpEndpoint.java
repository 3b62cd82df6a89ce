package ferry.qmp;

import java.nio.file.Path;
import java.util.Objects;

/**
 * Where Ferry's {@link QmpServer} listens: QEMU's {@code -qmp unix:PATH,server,nowait} and
 * {@code -qmp tcp:HOST:PORT,server,nowait} (also given as {@code -chardev socket,...} plus
 * {@code -mon chardev=ID,mode=control}).
 */
public sealed interface QmpEndpoint {

    /** A unix socket; a stale socket file at {@code path} is replaced, and the file is removed on close. */
    record Unix(Path path) implements QmpEndpoint {
        public Unix {
            Objects.requireNonNull(path, "path");
        }
    }

    /** A TCP listener; port 0 picks a free port ({@link QmpServer#tcpPort()}). */
    record Tcp(String host, int port) implements QmpEndpoint {
        public Tcp {
            Objects.requireNonNull(host, "host");
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("qmp port must be 0..65535: " + port);
            }
        }
    }
}
