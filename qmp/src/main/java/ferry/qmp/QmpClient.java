package ferry.qmp;

import ferry.linux.Threads;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A QMP client on QEMU's unix socket (docs/qmp.md).
 *
 * <p>Threads: {@link #start} connects, starts the one reader thread {@code qmp-reader}, reads the
 * greeting and negotiates capabilities; {@link #close} closes the socket and joins the reader.
 * {@link #execute} may be called from any number of threads at once: each command carries its own
 * {@code id} and waits for the reply with that id, which the reader hands over. Events go to the
 * registered {@link QmpEventListener}s on the reader thread, in order.
 *
 * <p>When the connection ends (QEMU exited, socket closed, garbage received), every pending and
 * later call fails with a {@link QmpException} of kind CLOSED, PROTOCOL or IO that names the
 * command and the reason; {@link #closed()} completes with that reason.
 *
 * <p>A reply larger than {@link JsonDecoder#MAX_MESSAGE_BYTES} (HMP {@code xp /1000000xg 0} through
 * {@code human-monitor-command}) fails only its own call, with kind {@link QmpException.Kind#REPLY_TOO_LARGE},
 * and the connection stays up: the decoder reads past it without keeping it. Its {@code id}, which QEMU
 * writes after the payload, names the call. Should the id be unreadable, the oldest pending call is failed:
 * QEMU's monitor answers the commands of one connection in the order it received them (Ferry sends no
 * out-of-band commands), so the oldest one still waiting is the one this reply answers. An oversized event
 * is logged and dropped.
 */
public final class QmpClient implements AutoCloseable {
    public static final long DEFAULT_TIMEOUT_MS = 10_000;
    private static final System.Logger LOG = System.getLogger(QmpClient.class.getName());
    private static final int READ_BUFFER_BYTES = 64 * 1024;

    private record Pending(long sequence, String command, CompletableFuture<Json> reply) {}

    private final Path socketPath;
    private final long defaultTimeoutMs;
    private final List<QmpEventListener> listeners = new CopyOnWriteArrayList<>();
    private final Map<String, Pending> pending = new ConcurrentHashMap<>();
    private final AtomicLong nextId = new AtomicLong();
    private final CompletableFuture<Json.Obj> greeting = new CompletableFuture<>();
    private final CompletableFuture<QmpException> closed = new CompletableFuture<>();
    private final Object writeLock = new Object();
    private volatile SocketChannel channel;
    private volatile QmpException failure;
    private Thread reader;
    private VersionInfo version;

    /** A client for the QMP socket at {@code socketPath}; commands without a timeout wait {@code defaultTimeoutMs}. */
    public QmpClient(Path socketPath, long defaultTimeoutMs) {
        this.socketPath = Objects.requireNonNull(socketPath, "socketPath");
        if (defaultTimeoutMs <= 0) {
            throw new IllegalArgumentException("defaultTimeoutMs must be positive: " + defaultTimeoutMs);
        }
        this.defaultTimeoutMs = defaultTimeoutMs;
    }

    public QmpClient(Path socketPath) {
        this(socketPath, DEFAULT_TIMEOUT_MS);
    }

    /** Adds a listener; register before {@link #start} to see every event. */
    public void addListener(QmpEventListener listener) {
        listeners.add(Objects.requireNonNull(listener, "listener"));
    }

    public void removeListener(QmpEventListener listener) {
        listeners.remove(listener);
    }

    /**
     * Connects, starts the reader, reads the greeting and sends {@code qmp_capabilities}.
     *
     * @return QEMU's version from the greeting
     */
    public synchronized VersionInfo start(long timeoutMs) throws QmpException {
        if (reader != null) {
            throw new IllegalStateException("qmp client already started: socket=" + socketPath);
        }
        try {
            SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            try {
                ch.connect(UnixDomainSocketAddress.of(socketPath));
            } catch (IOException e) {
                ch.close();
                throw e;
            }
            channel = ch;
        } catch (IOException e) {
            throw new QmpException(QmpException.Kind.IO, null,
                    "qmp connect failed: socket=" + socketPath + ": " + e.getMessage(), e);
        }
        reader = Threads.unstartedVirtual("qmp-reader", this::readLoop);
        reader.start();
        Json.Obj hello = await("greeting", greeting, timeoutMs);
        try {
            version = VersionInfo.decode(hello.object("QMP").object("version"));
        } catch (JsonException e) {
            throw fail(new QmpException(QmpException.Kind.PROTOCOL, null,
                    "qmp greeting malformed: socket=" + socketPath + ": " + e.getMessage(), e));
        }
        execute(new QmpCommand.QmpCapabilities(), timeoutMs);
        LOG.log(Level.DEBUG, "qmp connected: socket={0} qemu={1}", socketPath, version);
        return version;
    }

    /** QEMU's version, from the greeting; null before {@link #start}. */
    public synchronized VersionInfo version() {
        return version;
    }

    public Path socketPath() {
        return socketPath;
    }

    /** Runs {@code command} and waits at most the default timeout for its reply. */
    public <R> R execute(QmpCommand<R> command) throws QmpException {
        return execute(command, defaultTimeoutMs);
    }

    /** Runs {@code command} and waits at most {@code timeoutMs} for its reply. */
    public <R> R execute(QmpCommand<R> command, long timeoutMs) throws QmpException {
        String name = command.name();
        if (channel == null) {
            throw new IllegalStateException("qmp client not started: socket=" + socketPath);
        }
        checkOpen(name);
        long sequence = nextId.incrementAndGet();
        String id = "ferry-" + sequence;
        Pending call = new Pending(sequence, name, new CompletableFuture<>());
        pending.put(id, call);
        checkOpen(name); // a failure that raced with put() has already failed everything it saw
        try {
            send(name, id, command.arguments());
            Json ret = await(name, call.reply(), timeoutMs);
            try {
                return command.decode(ret);
            } catch (JsonException e) {
                throw new QmpException(QmpException.Kind.PROTOCOL, name,
                        "qmp reply malformed: command=" + name + ": " + e.getMessage(), e);
            }
        } finally {
            pending.remove(id);
        }
    }

    /** Completes with the reason once the connection has ended, whoever ended it. */
    public CompletableFuture<QmpException> closed() {
        return closed;
    }

    /** Closes the socket and joins the reader. Pending calls fail with kind CLOSED. */
    @Override
    public void close() {
        Thread r;
        synchronized (this) {
            r = reader;
        }
        fail(new QmpException(QmpException.Kind.CLOSED, null, "qmp client closed: socket=" + socketPath, null));
        if (r != null) {
            boolean interrupted = false;
            while (true) {
                try {
                    r.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // the reader ends by itself once the socket is closed: keep joining
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void checkOpen(String command) throws QmpException {
        QmpException f = failure;
        if (f != null) {
            throw f.forCommand(command);
        }
    }

    private void send(String name, String id, Json.Obj arguments) throws QmpException {
        Map<String, Json> message = new LinkedHashMap<>();
        message.put("execute", Json.of(name));
        if (!arguments.members().isEmpty()) {
            message.put("arguments", arguments);
        }
        message.put("id", Json.of(id));
        ByteBuffer bytes = ByteBuffer.wrap((new Json.Obj(message) + "\n").getBytes(StandardCharsets.UTF_8));
        try {
            synchronized (writeLock) {
                while (bytes.hasRemaining()) {
                    channel.write(bytes);
                }
            }
        } catch (IOException e) {
            QmpException f = failure;
            if (f != null) {
                throw f.forCommand(name);
            }
            throw fail(new QmpException(QmpException.Kind.CLOSED, name,
                    "qmp send failed: command=" + name + " socket=" + socketPath + ": " + e.getMessage(), e))
                    .forCommand(name);
        }
    }

    private <T> T await(String what, CompletableFuture<T> future, long timeoutMs) throws QmpException {
        try {
            return future.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new QmpException(QmpException.Kind.TIMEOUT, what,
                    "qmp command timed out: command=" + what + " timeoutMs=" + timeoutMs + " socket=" + socketPath, e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof QmpException q) {
                throw q.forCommand(what);
            }
            throw new QmpException(QmpException.Kind.PROTOCOL, what, "qmp command failed: command=" + what, e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new QmpException(QmpException.Kind.IO, what, "qmp command interrupted: command=" + what, e);
        }
    }

    /** The body of {@code qmp-reader}: reads, decodes, dispatches, until the connection ends. */
    private void readLoop() {
        ByteBuffer buffer = ByteBuffer.allocate(READ_BUFFER_BYTES);
        JsonDecoder decoder = new JsonDecoder();
        try {
            while (true) {
                buffer.clear();
                int n = channel.read(buffer);
                if (n < 0) {
                    fail(new QmpException(QmpException.Kind.CLOSED, null, "qmp connection closed by QEMU: socket="
                            + socketPath + (decoder.idle() ? "" : " (in the middle of a message)")
                            + " (did QEMU exit?)", null));
                    return;
                }
                buffer.flip();
                for (JsonDecoder.Decoded message : decoder.decode(buffer)) {
                    switch (message) {
                        case JsonDecoder.Value v -> dispatch(v.json().asObject());
                        case JsonDecoder.Oversized o -> refuse(o);
                    }
                }
            }
        } catch (ClosedChannelException e) {
            fail(new QmpException(QmpException.Kind.CLOSED, null, "qmp client closed: socket=" + socketPath, e));
        } catch (JsonException e) {
            fail(new QmpException(QmpException.Kind.PROTOCOL, null,
                    "qmp protocol error: socket=" + socketPath + ": " + e.getMessage(), e));
        } catch (IOException e) { // e.g. "Connection reset": QEMU died with our command unread
            fail(new QmpException(QmpException.Kind.CLOSED, null, "qmp connection closed by QEMU: socket="
                    + socketPath + ": " + e.getMessage() + " (did QEMU exit?)", e));
        } catch (Throwable t) { // a listener's bug: end the connection loudly rather than lose events
            fail(new QmpException(QmpException.Kind.PROTOCOL, null,
                    "qmp reader failed: socket=" + socketPath + ": " + t, t));
        }
    }

    private void dispatch(Json.Obj message) throws JsonException {
        if (message.has("QMP")) {
            greeting.complete(message);
        } else if (message.has("event")) {
            QmpEvent event = QmpEvent.decode(message);
            if (event instanceof QmpEvent.Unknown u) {
                LOG.log(Level.INFO, "qmp event not handled by Ferry: name={0} message={1}", u.name(), u.json());
            } else {
                LOG.log(Level.DEBUG, "qmp event: {0}", event);
            }
            for (QmpEventListener listener : listeners) {
                listener.onEvent(event, message);
            }
        } else if (message.has("return") || message.has("error")) {
            String id = message.member("id")
                    .orElseThrow(() -> new JsonException("qmp reply without id: " + message)).asString();
            Pending call = pending.get(id);
            if (call == null) {
                LOG.log(Level.DEBUG, "qmp reply for a call that gave up waiting: id={0} message={1}", id, message);
                return;
            }
            if (message.has("error")) {
                Json.Obj error = message.object("error");
                call.reply().completeExceptionally(
                        QmpException.errorReply(call.command(), error.string("class"), error.string("desc")));
            } else {
                call.reply().complete(message.require("return"));
            }
        } else {
            throw new JsonException("unknown qmp message: " + message);
        }
    }

    /** A message too large to keep: fails the call it answers (see the class comment), and nothing else. */
    private void refuse(JsonDecoder.Oversized message) {
        Optional<Json.Obj> skeleton = message.skeleton();
        if (skeleton.isPresent() && skeleton.get().has("event")) {
            LOG.log(Level.WARNING, "qmp event dropped: too large: bytes={0} limit={1} message={2}", message.length(),
                    JsonDecoder.MAX_MESSAGE_BYTES, skeleton.get());
            return;
        }
        Optional<String> id = skeleton.flatMap(s -> s.member("id")).flatMap(j -> j instanceof Json.Str str
                ? Optional.of(str.value()) : Optional.empty());
        Map.Entry<String, Pending> target = id.map(i -> {
                    Pending p = pending.get(i);
                    return p == null ? null : Map.entry(i, p);
                })
                .orElseGet(() -> id.isPresent() ? null : pending.entrySet().stream()
                        .min(Comparator.comparingLong(e -> e.getValue().sequence())).orElse(null));
        if (target == null) {
            LOG.log(Level.WARNING, "qmp reply dropped: too large, and no call waits for it: bytes={0} limit={1} id={2}",
                    message.length(), JsonDecoder.MAX_MESSAGE_BYTES, id.orElse("unknown"));
            return;
        }
        String command = target.getValue().command();
        target.getValue().reply().completeExceptionally(new QmpException(QmpException.Kind.REPLY_TOO_LARGE, command,
                "qmp reply too large: command=" + command + " bytes=" + message.length() + " limit="
                        + JsonDecoder.MAX_MESSAGE_BYTES + " (the reply was dropped; the connection stays up)", null));
    }

    /** Ends the connection once, with {@code reason}; fails the greeting and every pending call. Returns the reason in force. */
    private QmpException fail(QmpException reason) {
        synchronized (this) {
            if (failure == null) {
                failure = reason;
            }
        }
        QmpException f = failure;
        SocketChannel ch = channel;
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException e) {
                f.addSuppressed(e);
            }
        }
        greeting.completeExceptionally(f);
        for (Pending call : pending.values()) {
            call.reply().completeExceptionally(f);
        }
        if (closed.complete(f) && f.kind() != QmpException.Kind.CLOSED) {
            LOG.log(Level.WARNING, f.getMessage(), f);
        }
        return f;
    }
}
