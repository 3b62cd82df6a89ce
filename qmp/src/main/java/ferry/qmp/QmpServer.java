package ferry.qmp;

import ferry.linux.Threads;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadFactory;

/**
 * Ferry's QMP server: the face a QMP client (libvirt, a script) sees, speaking QEMU 7.2's QMP
 * (docs/qmp.md, "Ferry's QMP server"; QEMU's docs/interop/qmp-spec.txt). Each connection gets the
 * greeting, starts in capabilities negotiation mode (only {@code qmp_capabilities} is accepted), then
 * in command mode runs one command at a time through the {@link QmpHandler}; a reply echoes the
 * command's {@code id}, whatever JSON value it is. Events go to every client in command mode, in the
 * order they were given to {@link #broadcast} or {@link #forward}.
 *
 * <p>Messages that are not well-formed commands are answered as QEMU 7.2 answers them (checked against
 * it): "QMP input must be a JSON object", "QMP input member 'foo' is unexpected", "QMP input lacks member
 * 'execute'", "JSON parse error, ...". After a JSON syntax error the decoder starts afresh with the next
 * read, as QEMU's parser resynchronises. Ferry offers no capabilities (no out-of-band execution).
 *
 * <p>Threads: {@link #start()} starts one {@code qmp-server-accept} virtual thread per listener; each
 * connection gets a {@code qmp-server-client-N} thread, which reads and runs its commands, and a
 * {@code qmp-server-client-N-out} thread, which writes its replies and events from one queue, so that a
 * client that stops reading holds up nobody but itself. {@link #close()} closes the listeners and every
 * connection, joins the threads and removes the unix socket files. {@link #broadcast} and {@link #forward}
 * may be called from any thread and never block.
 */
public final class QmpServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(QmpServer.class.getName());
    private static final int READ_BUFFER_BYTES = 64 * 1024;
    private static final long JOIN_MS = 5_000;
    /** Ends a session's writer; compared by identity. */
    private static final Json.Obj END = new Json.Obj(Map.of("end", Json.of(true)));

    private final QmpHandler handler;
    private final List<QmpEndpoint> endpoints;
    private final ThreadFactory clientThreads = Threads.virtual("qmp-server-client");
    private final Set<Session> sessions = ConcurrentHashMap.newKeySet();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final List<Thread> acceptThreads = new ArrayList<>();
    private final List<Path> socketFiles = new ArrayList<>();
    private int tcpPort = -1;
    private volatile boolean closing;
    private boolean started;

    public QmpServer(QmpHandler handler, List<QmpEndpoint> endpoints) {
        this.handler = handler;
        this.endpoints = List.copyOf(endpoints);
    }

    /** Binds every listener (a failure leaves nothing open), then starts accepting. */
    public synchronized void start() throws IOException {
        if (started) {
            throw new IllegalStateException("qmp server already started");
        }
        started = true;
        try {
            for (QmpEndpoint endpoint : endpoints) {
                listeners.add(switch (endpoint) {
                    case QmpEndpoint.Unix unix -> listen(unix);
                    case QmpEndpoint.Tcp tcp -> listen(tcp);
                });
            }
        } catch (IOException | RuntimeException e) {
            closing = true;
            for (ServerSocketChannel listener : listeners) {
                closeQuietly(listener, e);
            }
            deleteSocketFiles(e);
            throw e;
        }
        for (ServerSocketChannel listener : listeners) {
            Thread accept = Threads.unstartedVirtual("qmp-server-accept", () -> acceptLoop(listener));
            acceptThreads.add(accept);
            accept.start();
        }
    }

    /** The bound TCP port (useful with port 0), or -1 without a TCP endpoint. */
    public synchronized int tcpPort() {
        return tcpPort;
    }

    private ServerSocketChannel listen(QmpEndpoint.Unix unix) throws IOException {
        Path path = unix.path();
        removeStaleSocket(path);
        ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            listener.bind(UnixDomainSocketAddress.of(path));
        } catch (IOException e) {
            listener.close();
            throw new IOException("qmp listen failed: unix=" + path + ": " + e.getMessage(), e);
        }
        socketFiles.add(path);
        return listener;
    }

    private ServerSocketChannel listen(QmpEndpoint.Tcp tcp) throws IOException {
        ServerSocketChannel listener = ServerSocketChannel.open();
        try {
            listener.bind(new InetSocketAddress(tcp.host(), tcp.port()));
        } catch (IOException e) {
            listener.close();
            throw new IOException("qmp listen failed: tcp=" + tcp.host() + ":" + tcp.port() + ": " + e.getMessage(), e);
        }
        tcpPort = ((InetSocketAddress) listener.getLocalAddress()).getPort();
        return listener;
    }

    /** A socket file left by an earlier run is replaced, as QEMU does; any other file there is an error. */
    private static void removeStaleSocket(Path path) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS).isOther()) {
            throw new IOException("qmp listen failed: unix=" + path + ": a file that is not a socket is in the way");
        }
        Files.delete(path);
    }

    private void acceptLoop(ServerSocketChannel listener) {
        while (!closing) {
            SocketChannel channel;
            try {
                channel = listener.accept();
            } catch (IOException e) {
                if (!closing) {
                    LOG.log(System.Logger.Level.ERROR, "qmp accept failed; this listener stops: " + e.getMessage(), e);
                }
                return;
            }
            Session session = new Session(channel);
            sessions.add(session);
            if (closing) {                       // close() may have swept the sessions already
                sessions.remove(session);
                closeQuietly(channel, null);
                return;
            }
            session.start();
        }
    }

    /** Sends one of Ferry's own events, stamped now, to every client in command mode. */
    public void broadcast(QmpEvent event) {
        forward(QmpEvent.encode(event, Instant.now()));
    }

    /** Sends an event message as it is (QEMU's own, with QEMU's timestamp) to every client in command mode. */
    public void forward(Json.Obj eventMessage) {
        for (Session session : sessions) {
            if (session.commandMode) {
                session.out.add(eventMessage);
            }
        }
    }

    @Override
    public void close() throws IOException {
        synchronized (this) {
            if (!started || closing) {
                return;
            }
            closing = true;
        }
        IOException failure = null;
        for (ServerSocketChannel listener : listeners) {
            failure = closeQuietly(listener, failure);
        }
        for (Thread accept : acceptThreads) {
            join(accept);
        }
        for (Session session : List.copyOf(sessions)) {
            failure = closeQuietly(session.channel, failure);
        }
        for (Session session : List.copyOf(sessions)) {
            session.join();
        }
        throwIfAny(deleteSocketFiles(failure));
    }

    private static void throwIfAny(IOException failure) throws IOException {
        if (failure != null) {
            throw failure;
        }
    }

    private <E extends Exception> E deleteSocketFiles(E failure) {
        for (Path path : socketFiles) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException e) {
                failure = add(failure, new IOException("qmp socket removal failed: unix=" + path + ": " + e.getMessage(), e));
            }
        }
        return failure;
    }

    private static <E extends Exception> E closeQuietly(java.nio.channels.Channel channel, E failure) {
        try {
            channel.close();
        } catch (IOException e) {
            failure = add(failure, e);
        }
        return failure;
    }

    @SuppressWarnings("unchecked")
    private static <E extends Exception> E add(E failure, IOException e) {
        if (failure == null) {
            return (E) e;
        }
        failure.addSuppressed(e);
        return failure;
    }

    private static void join(Thread thread) {
        try {
            thread.join(JOIN_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** One client connection: negotiation mode, then command mode, until it disconnects. */
    private final class Session {
        private final SocketChannel channel;
        private final BlockingQueue<Json.Obj> out = new LinkedBlockingQueue<>();
        private volatile boolean commandMode;
        /** Set by a successful {@code qmp_capabilities}; command mode (and events) start after its reply is queued. */
        private boolean negotiated;
        private Thread reader;
        private Thread writer;

        Session(SocketChannel channel) {
            this.channel = channel;
        }

        void start() {
            reader = clientThreads.newThread(this::run);
            writer = Threads.unstartedVirtual(reader.getName() + "-out", this::writeLoop);
            writer.start();
            reader.start();
        }

        void join() {
            QmpServer.join(reader);
            QmpServer.join(writer);
        }

        private void run() {
            try {
                out.add(greeting());
                readLoop();
            } catch (IOException e) {
                if (!closing) {
                    LOG.log(System.Logger.Level.DEBUG, "qmp client gone: " + e.getMessage());
                }
            } catch (Throwable t) {               // top of the client's loop: end this client, loudly
                LOG.log(System.Logger.Level.ERROR, "qmp client failed", t);
            } finally {
                out.add(END);
                QmpServer.join(writer);
                closeQuietly(channel, null);
                sessions.remove(this);
            }
        }

        private Json.Obj greeting() {
            Map<String, Json> qmp = new LinkedHashMap<>();
            qmp.put("version", handler.version().encode());
            qmp.put("capabilities", new Json.Arr(List.of()));       // no out-of-band execution
            return new Json.Obj(Map.of("QMP", new Json.Obj(qmp)));
        }

        private void readLoop() throws IOException {
            ByteBuffer buffer = ByteBuffer.allocate(READ_BUFFER_BYTES);
            JsonDecoder decoder = new JsonDecoder();
            while (true) {
                buffer.clear();
                if (channel.read(buffer) < 0) {
                    return;
                }
                buffer.flip();
                List<Json> messages;
                try {
                    messages = decoder.feed(buffer);
                } catch (JsonException e) {
                    out.add(reply(null, QmpError.generic("JSON parse error, " + e.getMessage())));
                    decoder = new JsonDecoder();
                    continue;
                }
                for (Json message : messages) {
                    out.add(handle(message));
                    commandMode = negotiated;
                }
            }
        }

        /** One message in, one reply out (QEMU answers every message, well-formed or not). */
        private Json.Obj handle(Json message) {
            if (!(message instanceof Json.Obj command)) {
                return reply(null, QmpError.generic("QMP input must be a JSON object"));
            }
            Json id = command.members().get("id");
            try {
                return reply(id, execute(command));
            } catch (QmpError e) {
                return reply(id, e);
            } catch (RuntimeException e) {      // a handler bug: one error reply, the rest to the log
                LOG.log(System.Logger.Level.ERROR, "qmp command failed: " + command, e);
                return reply(id, QmpError.generic("Ferry failed: " + e));
            }
        }

        private Json execute(Json.Obj command) throws QmpError {
            for (String member : command.members().keySet()) {
                if (!member.equals("execute") && !member.equals("arguments") && !member.equals("id")) {
                    throw QmpError.generic("QMP input member '" + member + "' is unexpected");
                }
            }
            Json execute = command.members().get("execute");
            if (execute == null) {
                throw QmpError.generic("QMP input lacks member 'execute'");
            }
            if (!(execute instanceof Json.Str name)) {
                throw QmpError.generic("QMP input member 'execute' must be a string");
            }
            Json arguments = command.members().getOrDefault("arguments", Json.Obj.of());
            if (!(arguments instanceof Json.Obj args)) {
                throw QmpError.generic("QMP input member 'arguments' must be an object");
            }
            if (name.value().equals("qmp_capabilities")) {
                return capabilities(args);
            }
            if (!negotiated) {
                throw new QmpError(QmpError.COMMAND_NOT_FOUND, "Expecting capabilities negotiation with 'qmp_capabilities'");
            }
            return handler.execute(QmpRequest.decode(name.value(), args));
        }

        private Json capabilities(Json.Obj args) throws QmpError {
            if (negotiated) {
                throw new QmpError(QmpError.COMMAND_NOT_FOUND, "Capabilities negotiation is already complete, command ignored");
            }
            for (Map.Entry<String, Json> member : args.members().entrySet()) {
                if (!member.getKey().equals("enable")) {
                    throw QmpError.generic("Parameter '" + member.getKey() + "' is unexpected");
                }
                if (!(member.getValue() instanceof Json.Arr enable)) {
                    throw QmpError.generic("Invalid parameter type for 'enable', expected: array");
                }
                for (Json capability : enable.elements()) {
                    throw QmpError.generic("Capability '" + (capability instanceof Json.Str s ? s.value() : capability)
                            + "' not available");
                }
            }
            negotiated = true;                   // events flow once the reply is queued
            return Json.Obj.of();
        }

        /** QEMU's member order: {@code return} then {@code id}; {@code id} then {@code error}. */
        private static Json.Obj reply(Json id, Json result) {
            Map<String, Json> reply = new LinkedHashMap<>();
            reply.put("return", result);
            if (id != null) {
                reply.put("id", id);
            }
            return new Json.Obj(reply);
        }

        private static Json.Obj reply(Json id, QmpError error) {
            Map<String, Json> reply = new LinkedHashMap<>();
            if (id != null) {
                reply.put("id", id);
            }
            reply.put("error", error.encode());
            return new Json.Obj(reply);
        }

        private void writeLoop() {
            try {
                while (true) {
                    Json.Obj message = out.take();
                    if (message == END) {
                        return;
                    }
                    ByteBuffer bytes = ByteBuffer.wrap((message + "\r\n").getBytes(StandardCharsets.UTF_8));
                    while (bytes.hasRemaining()) {
                        channel.write(bytes);
                    }
                }
            } catch (IOException e) {
                LOG.log(System.Logger.Level.DEBUG, "qmp client gone while writing: " + e.getMessage());
                closeQuietly(channel, null);         // wakes the reader, which ends the session
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
