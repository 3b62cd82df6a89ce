package ferry.nbd;

import ferry.linux.Threads;
import ferry.tls.TlsCredentials;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.System.Logger.Level;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Semaphore;

/**
 * An NBD server (fixed newstyle) for one or more {@link NbdExport}s on a unix socket or a TCP port.
 * Every connection gets its own virtual thread ({@code nbd-conn-N}) and serves requests concurrently;
 * all connections to an export share its image, so the server advertises CAN_MULTI_CONN.
 *
 * <p>Lifecycle: construct with {@link #unix} or {@link #tcp}, optionally require TLS with
 * {@link #tls}, {@link #start()} binds and starts the accept thread ({@code nbd-accept}),
 * {@link #close()} stops accepting, closes every connection, joins every thread and removes the
 * socket file. Images are not flushed or closed here; their owner does that. The supervisor's thread
 * calls tls, start and close; everything else runs on the server's threads.
 *
 * <p>The accept thread outlives failures: when accept fails (EMFILE when the process is out of file
 * descriptors, ENOBUFS, ...) it waits {@link #ACCEPT_RETRY_MIN_MS}, doubling up to
 * {@link #ACCEPT_RETRY_MAX_MS}, and accepts again; connections wait in the listen backlog meanwhile.
 */
public final class NbdServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(NbdServer.class.getName());

    static final int SOCKET_BUFFER_LENGTH = 4 << 20;
    /**
     * Backoff after a failed accept. EMFILE lasts until some connection closes, which takes from
     * milliseconds to minutes: start short so that a brief shortage costs little, and stop at 1 s so a
     * long one neither spins nor delays the first client after it by more than that.
     */
    static final long ACCEPT_RETRY_MIN_MS = 10;
    static final long ACCEPT_RETRY_MAX_MS = 1000;
    private static final int S_IFMT = 0170000;
    private static final int S_IFSOCK = 0140000;

    private final SocketAddress bindAddress;
    private final Path socketPath;
    private final List<NbdExport> exports;
    private final Map<Connection, Thread> connections = new HashMap<>();
    private final Set<String> exportNames = new HashSet<>();
    private ServerSocketChannel listener;
    private Thread acceptor;
    private TlsCredentials tls;
    /** Free connection slots under {@link #maxConnections}; null for no limit. Released when a connection ends. */
    private Semaphore slots;
    private boolean closed;
    private int nextConnection = 1;

    private NbdServer(SocketAddress bindAddress, Path socketPath, List<NbdExport> exports) {
        if (exports.isEmpty()) {
            throw new IllegalArgumentException("an NBD server needs at least one export");
        }
        for (NbdExport export : exports) {
            if (!exportNames.add(export.name())) {
                throw new IllegalArgumentException("duplicate export name: name=" + export.name());
            }
        }
        this.bindAddress = bindAddress;
        this.socketPath = socketPath;
        this.exports = List.copyOf(exports);
    }

    /**
     * A server on a unix socket at {@code socket}. A stale socket there (one nobody accepts on, left by
     * an earlier run) is replaced; anything else there (a live socket, a regular file, a directory,
     * a symbolic link) makes {@link #start()} fail and stays untouched.
     */
    public static NbdServer unix(Path socket, List<NbdExport> exports) {
        return new NbdServer(UnixDomainSocketAddress.of(socket), socket, exports);
    }

    /** A server on TCP; port 0 picks a free port (see {@link #port()} after start). */
    public static NbdServer tcp(String host, int port, List<NbdExport> exports) {
        return new NbdServer(new InetSocketAddress(host, port), null, exports);
    }

    /**
     * Requires TLS on every connection (the spec's FORCEDTLS mode, as {@code qemu-nbd --tls-creds}):
     * before STARTTLS every option but STARTTLS and ABORT is refused with REP_ERR_TLS_REQD.
     * Before {@link #start()} only.
     */
    public synchronized NbdServer tls(TlsCredentials credentials) {
        if (listener != null || closed) {
            throw new IllegalStateException("TLS must be set before start: address=" + bindAddress);
        }
        if (credentials.endpoint() != ferry.tls.TlsEndpoint.SERVER) {
            throw new IllegalArgumentException("an NBD server needs endpoint=server credentials: " + credentials.describe());
        }
        this.tls = credentials;
        return this;
    }

    /**
     * At most {@code count} connections at once ({@code qemu-nbd -e}/{@code --shared}): at the limit the
     * server stops accepting, so further clients wait in the listen backlog until a connection ends, as
     * with qemu-nbd. 0 means no limit (the default). Before {@link #start()} only.
     */
    public synchronized NbdServer maxConnections(int count) {
        if (listener != null || closed) {
            throw new IllegalStateException("the connection limit must be set before start: address=" + bindAddress);
        }
        if (count < 0) {
            throw new IllegalArgumentException("connection limit must be 0 (none) or more: count=" + count);
        }
        this.slots = count == 0 ? null : new Semaphore(count);
        return this;
    }

    public synchronized NbdServer start() throws IOException {
        if (listener != null || closed) {
            throw new IllegalStateException("server already started: address=" + bindAddress);
        }
        if (socketPath != null) {
            removeStaleSocket(socketPath);
            listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        } else {
            listener = ServerSocketChannel.open();
        }
        try {
            listener.bind(bindAddress, 64);
        } catch (IOException e) {
            listener.close();
            listener = null;   // so close() removes no socket file: the path is not ours
            throw new IOException("nbd listen failed: address=" + bindAddress + ": " + e.getMessage(), e);
        }
        acceptor = Threads.unstartedVirtual("nbd-accept", this::accept);
        acceptor.start();
        LOG.log(Level.INFO, () -> "nbd server listening: address=" + address() + " exports=" + exportNames
                + (tls == null ? "" : " tls: " + tls.describe()));
        return this;
    }

    /**
     * Deletes {@code path} only if it is a unix socket that nobody accepts on. Checked without
     * following links. A server that binds between the probe and the delete loses its path: two
     * servers started on one path at the same instant is not a case this guards.
     */
    static void removeStaleSocket(Path path) throws IOException {
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            return;
        }
        int mode = (Integer) Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        if ((mode & S_IFMT) != S_IFSOCK) {
            String what = attributes.isSymbolicLink() ? "a symbolic link" : attributes.isDirectory() ? "a directory"
                    : attributes.isRegularFile() ? "a regular file" : "not a socket";
            throw new IOException("nbd listen failed: path=" + path + " exists and is " + what
                    + "; refusing to replace it (remove it, or choose another --socket path)");
        }
        try (SocketChannel probe = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            probe.configureBlocking(false);   // a live server with a full backlog must not block us
            probe.connect(UnixDomainSocketAddress.of(path));
            throw new IOException("nbd listen failed: path=" + path + " is in use: another server accepts on it");
        } catch (ConnectException e) {
            // ECONNREFUSED: nobody listens, a socket left behind by a server that did not remove it
        }
        Files.delete(path);
        LOG.log(Level.INFO, () -> "nbd replaced a stale socket: path=" + path);
    }

    /** The bound address (with the real port for TCP). */
    public SocketAddress address() {
        try {
            ServerSocketChannel l = listener;
            return l == null ? bindAddress : l.getLocalAddress();
        } catch (IOException e) {
            throw new UncheckedIOException("nbd address unavailable", e);
        }
    }

    /** The bound TCP port, or -1 on a unix socket. */
    public int port() {
        return address() instanceof InetSocketAddress inet ? inet.getPort() : -1;
    }

    /** The socket path of a unix server, or null. */
    public Path socketPath() {
        return socketPath;
    }

    /** Open connections right now (for tests and status). */
    public synchronized int connectionCount() {
        return connections.size();
    }

    /**
     * The accept thread's loop: ends only when the listener is closed. Any other failure is logged
     * (the first of a run of failures, then the 2nd, 4th, 8th, ...) and retried after a backoff.
     */
    private void accept() {
        int failures = 0;
        while (true) {
            try {
                if (slots != null) {
                    slots.acquire();   // at the limit: stop accepting; clients wait in the backlog
                }
                SocketChannel channel;
                try {
                    channel = listener.accept();
                } catch (Throwable t) {
                    releaseSlot();
                    throw t;
                }
                if (failures > 0) {
                    int count = failures;
                    LOG.log(Level.WARNING, () -> "nbd accepting again after failures=" + count + ": address=" + bindAddress);
                    failures = 0;
                }
                if (!serve(channel)) {
                    return;
                }
            } catch (ClosedChannelException | InterruptedException e) {   // close(), or an interrupt from it
                LOG.log(Level.DEBUG, "nbd server stopped accepting");
                return;
            } catch (Throwable t) {
                failures++;
                long delayMs = Math.min(ACCEPT_RETRY_MAX_MS, ACCEPT_RETRY_MIN_MS << Math.min(failures - 1, 20));
                if (Integer.bitCount(failures) == 1) {   // 1, 2, 4, 8, ...: a long outage logs a few lines, not thousands
                    int count = failures;
                    LOG.log(Level.WARNING, () -> "nbd accept failed, retrying: address=" + bindAddress + " failures=" + count
                            + " retryMs=" + delayMs + ": " + t, t instanceof IOException ? null : t);
                }
                try {
                    Thread.sleep(delayMs);
                } catch (InterruptedException e) {   // close() interrupts a sleeping acceptor
                    return;
                }
            }
        }
    }

    /** Starts the connection's thread; false when the server closed meanwhile. */
    private boolean serve(SocketChannel channel) throws IOException {
        try {
            sizeBuffers(channel);
            String peer = peerOf(channel);
            synchronized (this) {
                if (closed) {
                    channel.close();
                    return false;
                }
                Connection connection = new Connection("nbd-conn-" + nextConnection++, channel, exports, tls, peer);
                Thread thread = Threads.unstartedVirtual(connection.name(), () -> {
                    try {
                        connection.run();
                    } finally {
                        forget(connection);
                    }
                });
                connections.put(connection, thread);
                thread.start();
                return true;
            }
        } catch (Throwable t) {
            releaseSlot();
            channel.close();
            throw t;
        }
    }

    private void releaseSlot() {
        if (slots != null) {
            slots.release();
        }
    }

    /**
     * Asks for {@link #SOCKET_BUFFER_LENGTH} socket buffers (the kernel caps them at
     * net.core.wmem_max/rmem_max): with the default ~200 KiB a 256 KiB read reply never fits, so
     * every such reply parks its worker until the client drains the socket.
     */
    private void sizeBuffers(SocketChannel channel) {
        try {
            channel.setOption(StandardSocketOptions.SO_SNDBUF, SOCKET_BUFFER_LENGTH);
            channel.setOption(StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER_LENGTH);
        } catch (IOException | UnsupportedOperationException e) {
            LOG.log(Level.DEBUG, () -> "socket buffers left at their defaults: " + e.getMessage());
        }
    }

    private synchronized void forget(Connection connection) {
        if (connections.remove(connection) != null) {
            releaseSlot();
        }
    }

    private static String peerOf(SocketChannel channel) {
        try {
            SocketAddress remote = channel.getRemoteAddress();
            return remote instanceof UnixDomainSocketAddress ? "unix" : String.valueOf(remote);
        } catch (IOException e) {
            return "unknown";
        }
    }

    @Override
    public void close() throws IOException {
        List<Thread> threads;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            if (listener != null) {
                listener.close();
            }
            if (acceptor != null) {
                acceptor.interrupt();   // ends a backoff sleep at once
            }
            connections.keySet().forEach(Connection::shutdown);
            threads = new ArrayList<>(connections.values());
        }
        try {
            if (acceptor != null) {
                acceptor.join();
            }
            for (Thread t : threads) {
                t.join();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while joining nbd threads: address=" + bindAddress, e);
        } finally {
            if (socketPath != null && listener != null) {
                Files.deleteIfExists(socketPath);
            }
        }
        LOG.log(Level.INFO, () -> "nbd server closed: address=" + bindAddress);
    }
}
