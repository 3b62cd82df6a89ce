package ferry.migration;

import ferry.linux.Threads;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The destination's listener ({@code -incoming tcp:HOST:PORT}): accepts one source at a time and
 * runs a {@link DestinationSession} for it. A failed or cancelled session leaves nothing behind
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
    private final CountDownLatch completed = new CountDownLatch(1);
    private volatile MigrationStats stats = new MigrationStats();
    private volatile DestinationSession current;
    private volatile DestinationHost.PreparedVm runningVm;
    private ServerSocketChannel server;
    private Thread listenThread;
    private volatile boolean closing;
    private final java.util.List<MigrationListener> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();

    public MigrationDestination(String host, int port, DestinationHost destinationHost) {
        this.host = host;
        this.port = port;
        this.destinationHost = destinationHost;
    }

    /** Binds now (so a port clash fails the command), then accepts on {@code migration-listen}. */
    public void start() throws IOException {
        server = ServerSocketChannel.open();
        server.setOption(StandardSocketOptions.SO_REUSEADDR, true);
        server.bind(new InetSocketAddress(host, port));
        listenThread = Threads.unstartedVirtual("migration-listen", this::listen);
        listenThread.start();
        LOG.log(System.Logger.Level.INFO, "waiting for an incoming migration on " + host + ":" + port());
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
            try {
                channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
                channel.setOption(StandardSocketOptions.SO_KEEPALIVE, true);
                channel.setOption(StandardSocketOptions.SO_RCVBUF, MigrationSource.SOCKET_BUFFER);
                channel.socket().setSoTimeout((int) DestinationSession.SOURCE_SILENCE_TIMEOUT_MS);
                MigrationStats sessionStats = new MigrationStats();
                listeners.forEach(sessionStats::addListener);
                stats = sessionStats;
                String peer = String.valueOf(channel.getRemoteAddress());
                LOG.log(System.Logger.Level.INFO, "incoming migration from " + peer);
                DestinationSession session = new DestinationSession(channel, peer,
                        new FrameReader(java.nio.channels.Channels.newChannel(channel.socket().getInputStream())),
                        new FrameWriter(channel, new RateLimiter(Long.MAX_VALUE / 4)), destinationHost, sessionStats);
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
                closeQuietly(channel);
            }
        }
    }

    private static void closeQuietly(SocketChannel channel) {
        try {
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
