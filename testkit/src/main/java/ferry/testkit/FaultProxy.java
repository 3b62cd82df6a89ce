package ferry.testkit;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A loopback TCP proxy between source and destination that can cut the link or flip one byte
 * after a given number of source-to-destination bytes (Aeron-style fault injection). Handles one
 * connection at a time; each new connection is passed through unharmed unless re-armed.
 *
 * <p>Threads: the constructor starts {@code fault-proxy} (accepts) and each connection two virtual pump
 * threads, {@code fault-proxy-up} (source to destination) and {@code fault-proxy-down}; {@link #close()} stops accepting, and the pumps end with their connection.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>{@link #refuseAfterCut} starts its window at the moment of the cut, not when it is called: a test
 *       cannot tell when the cut happens closely enough to open the window itself before the source's
 *       first reconnect (half a second later).</li>
 * </ul>
 */
public final class FaultProxy implements AutoCloseable {
    private final ServerSocketChannel server;
    private volatile int targetPort;
    private final Thread acceptor;
    private final AtomicLong forwarded = new AtomicLong();
    private volatile long cutAfter = Long.MAX_VALUE;
    private volatile long flipAt = Long.MAX_VALUE;
    private volatile long stallAfter = Long.MAX_VALUE;
    private volatile long refuseAfterCutMs;
    /** Connections accepted before this {@link System#nanoTime} are closed at once (0: none is refused). */
    private volatile long refuseUntilNs;
    private final AtomicLong refused = new AtomicLong();
    private volatile boolean closed;
    /** A stalled pump holds its connection open, reading nothing, at most this long. */
    private static final long STALL_LIMIT_MS = 60_000;

    public FaultProxy(int targetPort) throws IOException {
        this.targetPort = targetPort;
        server = ServerSocketChannel.open().bind(new InetSocketAddress("127.0.0.1", 0));
        acceptor = Thread.ofVirtual().name("fault-proxy").start(this::accept);
    }

    /** Later connections go to {@code port}. */
    public void retarget(int port) {
        targetPort = port;
    }

    public int port() throws IOException {
        return ((InetSocketAddress) server.getLocalAddress()).getPort();
    }

    /** The next connection is cut after {@code bytes} source-to-destination bytes. */
    public void cutAfter(long bytes) {
        cutAfter = bytes;
    }

    /** The next connection gets byte number {@code index} (source to destination) flipped. */
    public void flipAt(long index) {
        flipAt = index;
    }

    /**
     * The next connection stops forwarding (and reading) source-to-destination bytes after
     * {@code bytes}, holding the connection open: a destination that stopped reading.
     */
    public void stallAfter(long bytes) {
        stallAfter = bytes;
    }

    /**
     * For {@code ms} after the next connection's cut (see {@link #cutAfter}), connections are accepted and
     * closed at once, before anything reaches the target: a destination host unreachable for a while.
     */
    public void refuseAfterCut(long ms) {
        refuseAfterCutMs = ms;
    }

    public long forwarded() {
        return forwarded.get();
    }

    /** How many connections were closed at once by {@link #refuseAfterCut}. */
    public long refused() {
        return refused.get();
    }

    private void accept() {
        try {
            while (true) {
                SocketChannel client = server.accept();
                long untilNs = refuseUntilNs;
                if (untilNs != 0 && System.nanoTime() - untilNs < 0) {
                    refused.incrementAndGet();
                    client.close();
                    continue;
                }
                SocketChannel upstream = SocketChannel.open(new InetSocketAddress("127.0.0.1", targetPort));
                long cut = cutAfter;
                long flip = flipAt;
                long stall = stallAfter;
                long refuseMs = refuseAfterCutMs;
                refuseAfterCutMs = 0;
                cutAfter = Long.MAX_VALUE;
                flipAt = Long.MAX_VALUE;
                stallAfter = Long.MAX_VALUE;
                forwarded.set(0);
                Thread.ofVirtual().name("fault-proxy-up").start(() -> pump(client, upstream, cut, flip, stall, refuseMs, true));
                Thread.ofVirtual().name("fault-proxy-down").start(() -> pump(upstream, client, Long.MAX_VALUE, Long.MAX_VALUE, Long.MAX_VALUE, 0, false));
            }
        } catch (IOException e) {
            // the proxy was closed
        }
    }

    private void pump(SocketChannel from, SocketChannel to, long cut, long flip, long stall, long refuseMs, boolean count) {
        ByteBuffer buffer = ByteBuffer.allocate(64 << 10);
        long done = 0;
        try {
            while (from.read(buffer.clear()) >= 0) {
                if (done >= stall) {
                    holdUntilClosed(from);
                    break;
                }
                buffer.flip();
                if (done + buffer.remaining() > cut) {
                    buffer.limit(buffer.position() + (int) (cut - done));
                    while (buffer.hasRemaining()) {
                        to.write(buffer);
                    }
                    if (refuseMs > 0) {
                        refuseUntilNs = System.nanoTime() + refuseMs * 1_000_000;
                    }
                    break;
                }
                if (flip >= done && flip < done + buffer.remaining()) {
                    int at = (int) (flip - done);
                    buffer.put(at, (byte) ~buffer.get(at));
                }
                done += buffer.remaining();
                if (count) {
                    forwarded.set(done);
                }
                while (buffer.hasRemaining()) {
                    to.write(buffer);
                }
            }
        } catch (IOException e) {
            // one side closed: close both below
        } finally {
            try {
                from.close();
                to.close();
            } catch (IOException e) {
                throw new AssertionError(e);
            }
        }
    }

    /** Reads nothing more: the sender's socket buffers fill and its writes block. */
    private void holdUntilClosed(SocketChannel from) {
        long deadline = System.currentTimeMillis() + STALL_LIMIT_MS;
        try {
            while (!closed && from.isOpen() && System.currentTimeMillis() < deadline) {
                Thread.sleep(20);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() throws IOException {
        closed = true;
        server.close();
    }
}
