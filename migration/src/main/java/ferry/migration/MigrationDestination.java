package ferry.migration;

import ferry.linux.Threads;
import ferry.migration.stream.MigrationStream;
import ferry.migration.stream.StreamAcceptor;
import ferry.migration.stream.StreamRefused;
import ferry.migration.stream.StreamSecurity;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
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
        stats.resume(() -> destinationHost.partialHeld().map(ResumeInfo.class::cast));   // a partial state kept from before a restart shows before any source comes
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

    private volatile long helloTimeoutMs = DestinationSession.HELLO_TIMEOUT_MS;

    /** For tests: a shorter HELLO deadline for later sessions. */
    void helloTimeoutMs(long timeoutMs) {
        this.helloTimeoutMs = timeoutMs;
    }

    /** For tests: a session holds the destination (a new source would hear "busy"). */
    boolean sessionRunning() {
        return sessionSlot.get();
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

    /** How long the accept loop waits after a failed accept (EMFILE: out of descriptors) before it tries again. */
    static final long ACCEPT_BACKOFF_MS = 100;
    /** Connections being decided at once (TLS handshake, busy answer); a further one is closed at once. */
    static final int MAX_PENDING_CONNECTIONS = 8;
    private final java.util.concurrent.Semaphore pending = new java.util.concurrent.Semaphore(MAX_PENDING_CONNECTIONS);
    private final java.util.concurrent.atomic.AtomicBoolean sessionSlot = new java.util.concurrent.atomic.AtomicBoolean();
    private final java.util.concurrent.atomic.AtomicInteger connections = new java.util.concurrent.atomic.AtomicInteger();

    /**
     * On {@code migration-listen}: accepts and hands each connection to a {@code migration-conn-N} thread,
     * so that neither a slow TLS handshake nor a running session keeps the next peer from its answer. It
     * goes on after any failure (an accept failing with EMFILE backs off first) until the listener is
     * closed or a migration completed here.
     */
    private void listen() {
        while (!closing && server.isOpen()) {
            SocketChannel channel;
            try {
                channel = server.accept();
            } catch (java.nio.channels.ClosedChannelException e) {
                return;                                     // close(), or a completed migration
            } catch (Throwable t) {                     // EMFILE and anything else: log, back off, go on
                logQuietly("incoming migration listener: accept failed: " + t + "; retrying in " + ACCEPT_BACKOFF_MS + " ms");
                sleepQuietly(ACCEPT_BACKOFF_MS);
                continue;
            }
            if (!pending.tryAcquire()) {
                LOG.log(System.Logger.Level.WARNING, "incoming migration: " + MAX_PENDING_CONNECTIONS
                        + " connections are being answered already; closing another one at once");
                closeQuietly(null, channel);
                continue;
            }
            try {
                Threads.unstartedVirtual("migration-conn-" + connections.incrementAndGet(), () -> connection(channel)).start();
            } catch (Throwable t) {
                pending.release();
                closeQuietly(null, channel);
                logQuietly("incoming migration listener: cannot start a connection thread: " + t);
            }
        }
    }

    /** On {@code migration-conn-N}: decides the stream, then runs the session, or answers "busy" while another runs. */
    private void connection(SocketChannel channel) {
        MigrationStream stream = null;
        boolean ownsSlot = false;
        boolean released = false;
        String peer = "?";
        try {
            channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
            channel.setOption(StandardSocketOptions.SO_KEEPALIVE, true);
            channel.setOption(StandardSocketOptions.SO_RCVBUF, MigrationSource.SOCKET_BUFFER);
            peer = String.valueOf(channel.getRemoteAddress());
            try {
                stream = StreamAcceptor.accept(channel, security);
            } catch (StreamRefused refused) {
                lastRefusal = refused.getMessage();
                LOG.log(System.Logger.Level.WARNING, "refused an incoming migration from " + peer + ": " + refused.getMessage());
                return;
            }
            ownsSlot = runningVm == null && !closing && sessionSlot.compareAndSet(false, true);
            Optional<Frame.Hello> reconnected = Optional.empty();
            if (!ownsSlot) {
                reconnected = reconnectOfCurrent(stream);
                ownsSlot = reconnected.isPresent() && takeOver(reconnected.get(), peer);
                if (!ownsSlot) {
                    busy(stream, channel, peer);
                    return;
                }
            }
            pending.release();                      // a session is not a pending connection: it has its own deadlines
            released = true;
            session(stream, peer, reconnected);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "incoming migration connection from " + peer + " failed: " + t, t);
        } finally {
            closeQuietly(stream, channel);
            if (ownsSlot) {
                current = null;
                sessionSlot.set(false);
            }
            if (!released) {
                pending.release();
            }
        }
    }

    /** How long a connection that finds a session running has to show a HELLO that resumes that session's migration. */
    static final long RECONNECT_HELLO_MS = 1_000;
    /** How long a reconnected source waits for the old session to end (it stops QEMU and closes the images). */
    static final long TAKEOVER_TIMEOUT_MS = 30_000;

    /**
     * A connection that comes while a session runs: when its first frame, within {@link #RECONNECT_HELLO_MS},
     * is a HELLO resuming the migration that session receives, it is the same source back after a link
     * drop that this side has not noticed yet (a cut link is silent until a timeout).
     */
    private Optional<Frame.Hello> reconnectOfCurrent(MigrationStream stream) {
        DestinationSession session = current;
        if (session == null || session.migrationId().isEmpty() || runningVm != null || closing) {
            return Optional.empty();
        }
        try {
            stream.readTimeoutMs((int) RECONNECT_HELLO_MS);
            Frame first = new FrameReader(stream.input()).frameTimeoutMs(RECONNECT_HELLO_MS).next();
            if (first instanceof Frame.Hello hello && hello.resume().isPresent()
                    && hello.migrationId().equals(session.migrationId().get())) {
                return Optional.of(hello);
            }
        } catch (IOException | MigrationWire.WireException e) {
            LOG.log(System.Logger.Level.DEBUG, "a connection during a session sent no resuming HELLO: " + e.getMessage());
        }
        return Optional.empty();
    }

    /** Ends the running session in favour of its source's new connection; true once this connection holds the slot. */
    private boolean takeOver(Frame.Hello hello, String peer) throws InterruptedException {
        DestinationSession old = current;
        LOG.log(System.Logger.Level.WARNING, "the source of migration " + hello.migrationId() + " reconnected from " + peer
                + "; ending its previous connection");
        if (old != null) {
            old.abort("the source reconnected from " + peer);
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TAKEOVER_TIMEOUT_MS);
        while (System.nanoTime() < deadline) {
            if (runningVm == null && !closing && sessionSlot.compareAndSet(false, true)) {
                return true;
            }
            Thread.sleep(20);
        }
        return false;
    }

    private void session(MigrationStream stream, String peer, Optional<Frame.Hello> firstHello) throws IOException {
        stream.readTimeoutMs((int) DestinationSession.SOURCE_SILENCE_TIMEOUT_MS);
        MigrationStats sessionStats = new MigrationStats();
        listeners.forEach(sessionStats::addListener);
        stats = sessionStats;
        LOG.log(System.Logger.Level.INFO, "incoming migration from " + peer + " over " + stream.description());
        DestinationSession session = new DestinationSession(stream, peer,
                new FrameReader(stream.input()).frameTimeoutMs(DestinationSession.FRAME_TIMEOUT_MS),
                new FrameWriter(stream.output(), new RateLimiter(Long.MAX_VALUE / 4)), destinationHost, sessionStats, helloTimeoutMs,
                firstHello);
        sessionStats.resume(() -> destinationHost.partialHeld().map(ResumeInfo.class::cast));
        current = session;
        Optional<DestinationHost.PreparedVm> vm = session.run();
        if (vm.isPresent()) {
            runningVm = vm.get();
            completed.countDown();
            server.close();                          // the VM runs here now: nothing more may come in
        }
    }

    /** The answer to a source that comes while another session runs: one ERROR frame, nothing read. */
    private void busy(MigrationStream stream, SocketChannel channel, String peer) {
        String why = runningVm != null ? "an incoming migration already completed here; this destination takes no other"
                : "busy: this destination is receiving another migration; try again when it has ended";
        LOG.log(System.Logger.Level.WARNING, "refused an incoming migration from " + peer + ": " + why);
        try {
            new FrameWriter(stream.output(), new RateLimiter(Long.MAX_VALUE / 4)).send(new Frame.Error(Phase.HANDSHAKE.label(), why));
        } catch (IOException | InterruptedException e) {
            LOG.log(System.Logger.Level.DEBUG, "could not tell " + peer + " that this destination is busy: " + e.getMessage());
        }
        // Its HELLO is unread: drain it (at most 2 s, nothing parsed) so that the ERROR is not overtaken by a reset.
        ferry.tls.GracefulClose.close(channel.socket(), ferry.migration.stream.StreamConnector.REFUSAL_DRAIN_MS);
    }

    /** Logging may fail too when descriptors ran out (its first use opens the JDK's time zone data): never let it end the loop. */
    private static void logQuietly(String message) {
        try {
            LOG.log(System.Logger.Level.ERROR, message);
        } catch (Throwable logging) {
            // nothing left to tell it with
        }
    }

    private static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void closeQuietly(MigrationStream stream, SocketChannel channel) {
        try {
            if (stream != null) {
                stream.close();
            }
            if (channel != null) {
                channel.close();
            }
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
