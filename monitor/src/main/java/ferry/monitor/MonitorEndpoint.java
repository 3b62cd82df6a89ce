package ferry.monitor;

import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Path;
import java.util.Objects;

/** Where a {@link MonitorServer} serves the monitor (QEMU's {@code -monitor stdio|unix:...|tcp:...}). */
public sealed interface MonitorEndpoint {

    /** One client on a pair of streams, normally the process's {@code System.in}/{@code System.out}. */
    record Stdio(InputStream in, OutputStream out) implements MonitorEndpoint {
        public Stdio {
            Objects.requireNonNull(in);
            Objects.requireNonNull(out);
        }

        public static Stdio system() {
            return new Stdio(System.in, System.out);
        }
    }

    /**
     * A unix socket, any number of clients. A stale socket file at {@code path} is replaced, as QEMU
     * does; the file is removed on close. Any other file there is an error.
     */
    record Unix(Path path) implements MonitorEndpoint {
        public Unix {
            Objects.requireNonNull(path);
        }
    }

    /**
     * A TCP listener, any number of clients; port 0 picks a free port ({@link MonitorServer#tcpPort()}).
     * An empty host is loopback (127.0.0.1): the monitor runs any command on the VM, so it listens beyond
     * this host only where a host is given ({@code tcp:0.0.0.0:4444} for every interface).
     */
    record Tcp(String host, int port) implements MonitorEndpoint {
        public static final String DEFAULT_HOST = "127.0.0.1";

        public Tcp {
            Objects.requireNonNull(host);
            host = host.isEmpty() ? DEFAULT_HOST : host;
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("monitor port must be 0..65535: " + port);
            }
        }
    }
}
