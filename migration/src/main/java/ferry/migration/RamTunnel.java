package ferry.migration;

import ferry.linux.Threads;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameWriter;
import java.io.EOFException;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * Carries QEMU's own migration stream (RAM and device state) over Ferry's one TCP stream, in both
 * directions: what the local QEMU writes becomes RAM frames; RAM frames from the peer are written
 * to the local QEMU. On the source, QEMU connects to a unix socket Ferry listens on
 * ({@code migrate unix:PATH}); on the destination, Ferry connects to the socket QEMU listens on
 * ({@code migrate-incoming unix:PATH}).
 *
 * <p>Threads: one pump thread ({@code ram-tunnel}) reads the local QEMU, started by {@link #start()}
 * and joined by {@link #close()}; {@link #deliver} runs on the caller's (receiver) thread.
 */
final class RamTunnel implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(RamTunnel.class.getName());
    private static final int CHUNK = 256 << 10;
    private static final long ACCEPT_TIMEOUT_MS = 60_000;

    private final Path socket;
    private final boolean listen;
    private final FrameWriter writer;
    private final Consumer<Exception> onError;
    private final CountDownLatch connected = new CountDownLatch(1);
    private final AtomicLong toPeer = new AtomicLong();
    private final AtomicLong fromPeer = new AtomicLong();
    private volatile ServerSocketChannel server;
    private volatile SocketChannel qemu;
    private volatile boolean closing;
    private Thread pump;

    private RamTunnel(Path socket, boolean listen, FrameWriter writer, Consumer<Exception> onError) {
        this.socket = socket;
        this.listen = listen;
        this.writer = writer;
        this.onError = onError;
    }

    /** Source side: listen at {@code socket} for QEMU's outgoing migration. */
    static RamTunnel listening(Path socket, FrameWriter writer, Consumer<Exception> onError) {
        return new RamTunnel(socket, true, writer, onError);
    }

    /** Destination side: connect to QEMU's incoming migration socket. */
    static RamTunnel connecting(Path socket, FrameWriter writer, Consumer<Exception> onError) {
        return new RamTunnel(socket, false, writer, onError);
    }

    long bytesToPeer() {
        return toPeer.get();
    }

    long bytesFromPeer() {
        return fromPeer.get();
    }

    /** Binds (source) or connects (destination) now, then starts the pump thread. */
    void start() throws IOException {
        if (listen) {
            Files.deleteIfExists(socket);
            server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            server.bind(UnixDomainSocketAddress.of(socket));
        } else {
            SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
            channel.connect(UnixDomainSocketAddress.of(socket));
            qemu = channel;
            connected.countDown();
        }
        pump = Threads.unstartedVirtual("ram-tunnel", this::pump);
        pump.start();
    }

    private void pump() {
        try {
            if (listen) {
                qemu = server.accept();
                connected.countDown();
            }
            ByteBuffer buffer = ByteBuffer.allocateDirect(CHUNK);
            while (true) {
                buffer.clear();
                int n = qemu.read(buffer);
                if (n < 0) {
                    writer.send(new Frame.RamEof());
                    return;
                }
                buffer.flip();
                writer.send(new Frame.Ram(buffer));
                toPeer.addAndGet(n);
            }
        } catch (ClosedChannelException e) {
            if (!closing) {
                onError.accept(new IOException("QEMU's migration socket closed unexpectedly: " + socket, e));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Exception e) {
            if (!closing) {
                hangUpOnQemu();
                onError.accept(e);
            }
        }
    }

    /**
     * The stream failed: close QEMU's end at once. QEMU writes the device state holding its big lock,
     * so a socket nobody reads would freeze its main loop, QMP included (seen: migrate-continue timing
     * out after a destination refused the disks); a closed one fails QEMU's migration at once.
     */
    private void hangUpOnQemu() {
        SocketChannel channel = qemu;
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException e) {
                LOG.log(System.Logger.Level.DEBUG, "closing " + socket + " after a stream failure: " + e.getMessage());
            }
        }
    }

    /** Writes bytes that came from the peer into the local QEMU. */
    void deliver(ByteBuffer data) throws IOException, InterruptedException {
        if (!connected.await(ACCEPT_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
            throw new IOException("QEMU did not connect to the migration tunnel " + socket + " within " + ACCEPT_TIMEOUT_MS + " ms");
        }
        SocketChannel channel = qemu;
        int length = data.remaining();
        while (data.hasRemaining()) {
            if (channel.write(data) < 0) {
                throw new EOFException("QEMU closed its migration socket " + socket);
            }
        }
        fromPeer.addAndGet(length);
    }

    /** The peer's QEMU finished its stream: half-close towards the local QEMU. */
    void peerFinished() {
        SocketChannel channel = qemu;
        if (channel != null && channel.isOpen()) {
            try {
                channel.shutdownOutput();
            } catch (IOException e) {
                LOG.log(System.Logger.Level.DEBUG, "half-close of " + socket + " failed: " + e.getMessage());
            }
        }
    }

    @Override
    public void close() throws IOException, InterruptedException {
        closing = true;
        IOException failure = null;
        for (AutoCloseable c : new AutoCloseable[] {qemu, server}) {
            try {
                if (c != null) {
                    c.close();
                }
            } catch (Exception e) {
                if (failure == null) {
                    failure = new IOException("closing the RAM tunnel " + socket + " failed", e);
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (pump != null) {
            pump.interrupt();
            pump.join(5_000);
        }
        if (listen) {
            Files.deleteIfExists(socket);
        }
        if (failure != null) {
            throw failure;
        }
    }
}
