package ferry.migration;

import ferry.linux.Threads;
import ferry.migration.stream.MigrationStream;
import ferry.migration.stream.StreamAcceptor;
import ferry.migration.stream.StreamRefused;
import ferry.migration.stream.StreamSecurity;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The destination's listener ({@code -incoming tcp:HOST:PORT}, or {@code migrate_incoming}): accepts
 * one source at a time, lets {@link StreamAcceptor} decide before any frame is read whether it may
 * migrate here (TLS handshake and tls-authz when {@link StreamSecurity.Tls}; a refused peer is logged
 * in one line and the listener waits for the next), and runs a {@link DestinationSession} for it. A failed or cancelled session leaves nothing behind
 * (the session aborts what it prepared) and the listener waits for the next attempt; a completed
 * one ends the listener, since the VM now runs here.
 *
 * <p>Threads: {@link #start()} starts {@code migration-listen}, which accepts and runs each session
 * in turn; {@link #close()} stops and joins it.
 */
public final class MigrationDestination implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MigrationDestination.class.getName());

    private final String host;
    private final int port;
    private final DestinationHost destinationHost;
    private final StreamSecurity security;
    private volatile String lastRefusal;
    private final CountDownLatch completed = new CountDownLatch(1);
    private volatile MigrationStats stats = new MigrationStats();
    private volatile DestinationSession current;
    private volatile DestinationHost.PreparedVm runningVm;
    private ServerSocketChannel server;
    private Thread listenThread;
    private volatile boolean closing;
    private final java.util.List<MigrationListener> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();

    public MigrationDestination(String host, int port, DestinationHost destinationHost, StreamSecurity security) {
        this.host = host;
        this.port = port;
        this.destinationHost = destinationHost;
        this.security = security;
    }

    /** Without TLS. */
    public MigrationDestination(String host, int port, DestinationHost destinationHost) {
        this(host, port, destinationHost, new StreamSecurity.Plain());
    }

    /** Binds now (so a port clash fails the command), then accepts on {@code migration-listen}. */
    public void start() throws IOException {
        server = ServerSocketChannel.open();
        server.setOption(StandardSocketOptions.SO_REUSEADDR, true);
        server.bind(new InetSocketAddress(host, port));
        listenThread = Threads.unstartedVirtual("migration-listen", this::listen);
        listenThread.start();
        LOG.log(System.Logger.Level.INFO, "waiting for an incoming migration on " + host + ":" + port() + " ("
                + (security instanceof StreamSecurity.Tls tls ? "TLS 1.3, " + tls.credentials() + tls.authz().map(a -> ", tls-authz "
                + a.id()).orElse("") : "plain TCP") + ")");
        if (security instanceof StreamSecurity.Plain && !InetAddress.getByName(host).isLoopbackAddress()) {
            LOG.log(System.Logger.Level.WARNING, "the incoming migration port " + host + ":" + port() + " has no TLS: whoever"
                    + " reaches it can send this host a VM and write its disks (see docs/migration-protocol.md \"TLS\")");
        }
    }

    /** Why the last connection refused before its session began (TLS, tls-authz), if one was. */
    public Optional<String> lastRefusal() {
        return Optional.ofNullable(lastRefusal);
    }

    public int port() {
        try {
            return ((InetSocketAddress) server.getLocalAddress()).getPort();
        } catch (IOException e) {
            return port;
        }
    }

    /** The current (or last) session's figures; status NONE before the first source connects. */
    public MigrationStats stats() {
        return stats;
    }

    /** Hears each later session's status changes and passes (Ferry's QMP events); add before {@link #start()}. */
    public void addListener(MigrationListener listener) {
        listeners.add(listener);
    }

    public boolean waitingForFirstSource() {
        return current == null && runningVm == null;
    }

    /** Blocks until a migration completed here; then the VM runs on this host. */
    public boolean awaitCompleted(long timeoutMs) throws InterruptedException {
        return completed.await(timeoutMs, TimeUnit.MILLISECONDS);
    }

    /** The VM that was received and now runs here. */
    public Optional<DestinationHost.PreparedVm> runningVm() {
        return Optional.ofNullable(runningVm);
    }

    private void listen() {
        while (!closing) {
            SocketChannel channel;
            try {
                channel = server.accept();
            } catch (IOException e) {
                if (!closing) {
                    LOG.log(System.Logger.Level.ERROR, "incoming migration listener failed: " + e.getMessage(), e);
                }
                return;
            }
            MigrationStream stream = null;
            try {
                channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
                channel.setOption(StandardSocketOptions.SO_KEEPALIVE, true);
                channel.setOption(StandardSocketOptions.SO_RCVBUF, MigrationSource.SOCKET_BUFFER);
                String peer = String.valueOf(channel.getRemoteAddress());
                try {
                    stream = StreamAcceptor.accept(channel, security);
                } catch (StreamRefused refused) {
                    lastRefusal = refused.getMessage();
                    LOG.log(System.Logger.Level.WARNING, "refused an incoming migration from " + peer + ": " + refused.getMessage());
                    continue;
                }
                stream.readTimeoutMs((int) DestinationSession.SOURCE_SILENCE_TIMEOUT_MS);
                MigrationStats sessionStats = new MigrationStats();
                listeners.forEach(sessionStats::addListener);
                stats = sessionStats;
                LOG.log(System.Logger.Level.INFO, "incoming migration from " + peer + " over " + stream.description());
                DestinationSession session = new DestinationSession(stream, peer, new FrameReader(stream.input()),
                        new FrameWriter(stream.output(), new RateLimiter(Long.MAX_VALUE / 4)), destinationHost, sessionStats);
                current = session;
                Optional<DestinationHost.PreparedVm> vm = session.run();
                current = null;
                if (vm.isPresent()) {
                    runningVm = vm.get();
                    completed.countDown();
                    return;
                }
            } catch (IOException e) {
                LOG.log(System.Logger.Level.ERROR, "incoming migration connection failed: " + e.getMessage(), e);
            } finally {
                closeQuietly(stream, channel);
            }
        }
    }

    private static void closeQuietly(MigrationStream stream, SocketChannel channel) {
        try {
            if (stream != null) {
                stream.close();
            }
            channel.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "closing a migration connection: " + e.getMessage());
        }
    }

    @Override
    public void close() throws IOException, InterruptedException {
        closing = true;
        if (server != null) {
            server.close();
        }
        DestinationSession session = current;
        if (session != null) {
            session.abort("the destination is shutting down");
        }
        if (listenThread != null) {
            listenThread.join(10_000);
        }
    }
}
