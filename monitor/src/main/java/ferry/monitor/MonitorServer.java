package ferry.monitor;

import ferry.linux.Threads;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadFactory;

/**
 * Serves the monitor on stdio, unix sockets and TCP, to any number of clients at once.
 *
 * <p>Threads: {@link #start()} starts one {@code monitor-accept} virtual thread, which waits on a
 * selector for every listener and hands each connection to its own {@code monitor-client-N} virtual
 * thread; the stdio client gets one too. {@link #close()} stops accepting, closes every connection,
 * joins every thread (except the caller's own, so a handler may close the server on {@code quit})
 * and removes the unix socket files.
 *
 * <p>Design notes. One accept thread serves all listeners through a selector rather than one thread
 * per listener, so the thread list stays the one the docs name. Client connections are blocking
 * channels: closing a channel is what wakes its reader at close(). Standard input cannot be woken
 * that way (a blocked read(2) on fd 0 ignores close), so close() waits for the stdio client at most
 * {@link #STDIO_JOIN_MS} and logs if it is still blocked; it ends with the process.
 */
public final class MonitorServer implements AutoCloseable {
    public static final String BANNER = "Ferry monitor - type 'help' for more information";
    public static final String PROMPT = "(ferry) ";
    static final long STDIO_JOIN_MS = 1000;
    private static final long ACCEPT_ERROR_PAUSE_MS = 100;   // keeps a persistent accept error (EMFILE) from spinning

    private static final System.Logger LOG = System.getLogger(MonitorServer.class.getName());

    private final MonitorHandler handler;
    private final List<MonitorEndpoint> endpoints;
    private final ThreadFactory clientThreads = Threads.virtual("monitor-client");
    private final Map<Thread, Client> clients = new ConcurrentHashMap<>();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final List<Path> socketFiles = new ArrayList<>();
    private Selector selector;
    private Thread acceptThread;
    private Thread stdioThread;
    private int tcpPort = -1;
    private volatile boolean closing;
    private boolean started;

    /** One live client: its session and the channel that close() shuts to wake it (null for stdio). */
    private record Client(MonitorSession session, SocketChannel channel) {}

    public MonitorServer(MonitorHandler handler, List<MonitorEndpoint> endpoints) {
        this.handler = handler;
        this.endpoints = List.copyOf(endpoints);
        if (this.endpoints.stream().filter(e -> e instanceof MonitorEndpoint.Stdio).count() > 1) {
            throw new IllegalArgumentException("monitor: at most one stdio endpoint");
        }
    }

    /**
     * Binds every listener, then starts the accept thread and the stdio client.
     *
     * @throws IOException when a listener cannot be bound ("monitor listen failed: unix=PATH: ..."); nothing is left open then
     */
    public synchronized void start() throws IOException {
        if (started) {
            throw new IllegalStateException("monitor already started");
        }
        started = true;
        try {
            selector = Selector.open();
            for (MonitorEndpoint endpoint : endpoints) {
                switch (endpoint) {
                    case MonitorEndpoint.Unix unix -> listen(unix);
                    case MonitorEndpoint.Tcp tcp -> listen(tcp);
                    case MonitorEndpoint.Stdio stdio -> { }   // started below, once every listener is bound
                }
            }
        } catch (IOException | RuntimeException e) {
            closing = true;
            closeListeners(e);
            for (Path path : socketFiles) {
                try {
                    Files.deleteIfExists(path);
                } catch (IOException removal) {
                    e.addSuppressed(removal);
                }
            }
            throw e;
        }
        acceptThread = Threads.unstartedVirtual("monitor-accept", this::acceptLoop);
        acceptThread.start();
        for (MonitorEndpoint endpoint : endpoints) {
            if (endpoint instanceof MonitorEndpoint.Stdio stdio) {
                MonitorSession session = new MonitorSession("stdio", stdio.in(), stdio.out(), handler);
                stdioThread = clientThreads.newThread(() -> {
                    session.run();
                    clients.remove(Thread.currentThread());
                    if (!closing) {
                        handler.stdioClosed();
                    }
                });
                clients.put(stdioThread, new Client(session, null));
                stdioThread.start();
            }
        }
    }

    /** The bound TCP port (useful with port 0), or -1 without a TCP endpoint. */
    public synchronized int tcpPort() {
        return tcpPort;
    }

    private void listen(MonitorEndpoint.Unix unix) throws IOException {
        Path path = unix.path();
        removeStaleSocket(path);
        ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        listeners.add(listener);
        try {
            listener.bind(UnixDomainSocketAddress.of(path));
        } catch (IOException e) {
            throw new IOException("monitor listen failed: unix=" + path + ": " + e.getMessage(), e);
        }
        socketFiles.add(path);
        listener.configureBlocking(false);
        listener.register(selector, SelectionKey.OP_ACCEPT);
    }

    private void listen(MonitorEndpoint.Tcp tcp) throws IOException {
        ServerSocketChannel listener = ServerSocketChannel.open();
        listeners.add(listener);
        try {
            listener.bind(new InetSocketAddress(tcp.host(), tcp.port()));
        } catch (IOException e) {
            throw new IOException("monitor listen failed: tcp=" + tcp.host() + ":" + tcp.port() + ": " + e.getMessage(), e);
        }
        tcpPort = ((InetSocketAddress) listener.getLocalAddress()).getPort();
        listener.configureBlocking(false);
        listener.register(selector, SelectionKey.OP_ACCEPT);
    }

    /** A socket file left by an earlier run is replaced, as QEMU does; a regular file or directory is not touched. */
    private static void removeStaleSocket(Path path) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        BasicFileAttributes attributes = Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        if (!attributes.isOther()) {
            throw new IOException("monitor listen failed: unix=" + path + ": a file that is not a socket is in the way");
        }
        Files.delete(path);
    }

    private void acceptLoop() {
        while (!closing) {
            try {
                selector.select();
                for (SelectionKey key : selector.selectedKeys()) {
                    SocketChannel channel = ((ServerSocketChannel) key.channel()).accept();
                    if (channel != null) {
                        serve(channel);
                    }
                }
                selector.selectedKeys().clear();
            } catch (Throwable e) {   // top of the accept loop: log, pause, go on accepting
                if (closing) {
                    return;
                }
                logAcceptFailure(e);
                try {
                    Thread.sleep(ACCEPT_ERROR_PAUSE_MS);
                } catch (InterruptedException interrupted) {
                    return;
                }
            }
        }
    }

    /**
     * Logs an accept failure without letting the logging itself end the loop: out of descriptors
     * (EMFILE), the logger's first use may need a file of its own (the JDK's time zone data) and fail too.
     */
    private static void logAcceptFailure(Throwable e) {
        try {
            LOG.log(System.Logger.Level.ERROR, "monitor accept failed; retrying in " + ACCEPT_ERROR_PAUSE_MS + " ms", e);
        } catch (Throwable logging) {
            // nothing left to tell it with; the loop goes on and the next failure tries again
        }
    }

    private void serve(SocketChannel channel) throws IOException {
        channel.configureBlocking(true);
        String peer = String.valueOf(channel.getRemoteAddress());
        MonitorSession session = new MonitorSession(peer.isEmpty() ? "unix" : peer,
                Channels.newInputStream(channel), Channels.newOutputStream(channel), handler);
        Thread thread = clientThreads.newThread(() -> {
            try (channel) {
                session.run();
            } catch (IOException e) {
                LOG.log(System.Logger.Level.WARNING, "monitor client close failed: client=" + peer, e);
            } finally {
                clients.remove(Thread.currentThread());
            }
        });
        clients.put(thread, new Client(session, channel));
        if (closing) {   // close() may have swept the clients already: do not leave this one behind
            clients.remove(thread);
            session.closing();
            channel.close();
            return;
        }
        thread.start();
    }

    /** Stops accepting, disconnects every client, joins the threads, removes the unix socket files. */
    @Override
    public void close() throws IOException {
        synchronized (this) {
            if (!started || closing) {
                return;   // never started, already closed, or start() failed and cleaned up
            }
            closing = true;
        }
        IOException failure = null;
        selector.wakeup();
        failure = join(acceptThread, 0, failure);
        failure = closeListeners(failure);
        for (Client client : clients.values()) {
            client.session().closing();
            if (client.channel() != null) {
                try {
                    client.channel().close();
                } catch (IOException e) {
                    failure = add(failure, e);
                }
            }
        }
        for (Thread thread : List.copyOf(clients.keySet())) {
            if (thread != Thread.currentThread()) {
                failure = join(thread, thread == stdioThread ? STDIO_JOIN_MS : 0, failure);
            }
        }
        if (stdioThread != null && stdioThread.isAlive() && stdioThread != Thread.currentThread()) {
            LOG.log(System.Logger.Level.INFO, "monitor stdio client still blocked reading standard input; it ends with the process");
        }
        for (Path path : socketFiles) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException e) {
                failure = add(failure, new IOException("monitor socket removal failed: unix=" + path + ": " + e.getMessage(), e));
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    private <E extends Exception> E closeListeners(E failure) {
        for (ServerSocketChannel listener : listeners) {
            try {
                listener.close();
            } catch (IOException e) {
                failure = addTo(failure, e);
            }
        }
        if (selector != null) {
            try {
                selector.close();
            } catch (IOException e) {
                failure = addTo(failure, e);
            }
        }
        return failure;
    }

    @SuppressWarnings("unchecked")
    private static <E extends Exception> E addTo(E failure, IOException e) {
        if (failure == null) {
            return (E) e;
        }
        failure.addSuppressed(e);
        return failure;
    }

    private static IOException add(IOException failure, IOException e) {
        return addTo(failure, e);
    }

    private static IOException join(Thread thread, long timeoutMs, IOException failure) {
        try {
            if (timeoutMs > 0) {
                thread.join(timeoutMs);
            } else {
                thread.join();
            }
            return failure;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return add(failure, new InterruptedIOException("monitor close interrupted while joining " + thread.getName()));
        }
    }
}
