package ferry.migration.stream;

import ferry.migration.RateLimiter;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import ferry.tls.TlsChannel;
import ferry.tls.TlsEndpoint;
import ferry.tls.TlsWarmUp;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.SplittableRandom;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.SSLEngine;

/**
 * One round of the start-up TLS warm-up ({@link TlsWarmUp}) as a migration: a {@link TlsStream} pair over
 * a TCP connection to itself on the loopback interface, the same classes from the socket up to
 * {@code FrameWriter} and {@code FrameReader}, carrying the frames a migration sends most: full 1 MiB
 * BLOCK_DATA frames, RAM frames of the odd sizes QEMU's reads give, small control frames (a record of a
 * few bytes takes branches of AES-GCM that 16 KiB records do not), then VERIFIED, which the receiving end
 * reads as "round over". The receiving end reads the first byte before TLS, as StreamAcceptor does, and
 * read timeouts are set as a migration sets them (the handshake's, then none on the sending end and the
 * silence limit on the receiving end): a partial first record and a timed read run code of their own.
 *
 * <p>Design notes: a loopback connection, not an in-memory pipe, because C2 compiles the channel under
 * TLS into the record path (a pipe there made the migration's socket deoptimize it). The listening
 * socket lives for one accept, on an ephemeral loopback port; a connection that is not the one this
 * round made (another local process racing for the port) is closed before any byte is read, so the
 * warm-up's TLS, which trusts any peer, only ever speaks to itself.
 *
 * <p>Threads: the caller's thread sends; the receiving end runs on a thread of {@code receivers}, started
 * and joined within the round.
 */
public final class StreamWarmUp implements TlsWarmUp.Round {
    /** One RAM frame after every this many BLOCK_DATA frames (QEMU's RAM is about a third of a migration's bytes). */
    private static final int BLOCKS_PER_RAM_FRAME = 2;
    /** Connections accepted that were not the round's own before it gives up. */
    private static final int FOREIGN_CONNECTIONS_MAX = 8;
    private static final int SILENCE_TIMEOUT_MS = 60_000;
    private final long bytesPerRound;
    private final ThreadFactory receivers;
    private final ByteBuffer block;
    private final SplittableRandom sizes = new SplittableRandom(1);

    /** About {@code bytesPerRound} of frames per round; the receiving ends run on threads of {@code receivers}. */
    public StreamWarmUp(long bytesPerRound, ThreadFactory receivers) {
        this.bytesPerRound = bytesPerRound;
        this.receivers = receivers;
        this.block = ByteBuffer.allocateDirect(MigrationWire.MAX_BLOCK_PAYLOAD);
        SplittableRandom bytes = new SplittableRandom(2);
        while (block.remaining() >= Long.BYTES) {
            block.putLong(bytes.nextLong());              // not compressible, as disk data often is not
        }
        block.clear();
    }

    @Override
    public void run(SSLEngine clientEngine, SSLEngine serverEngine) throws IOException, InterruptedException {
        SocketChannel client = SocketChannel.open();
        SocketChannel server;
        try (ServerSocketChannel listener = ServerSocketChannel.open()) {
            listener.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 1);
            client.setOption(StandardSocketOptions.TCP_NODELAY, true);
            client.connect(listener.getLocalAddress());
            server = acceptOwn(listener, client.getLocalAddress());
        } catch (IOException e) {
            client.close();
            throw e;
        }
        AtomicReference<Exception> receiverFailure = new AtomicReference<>();
        Thread receiver = receivers.newThread(() -> {
            try (TlsStream in = handshaken(server, serverEngine, TlsEndpoint.SERVER)) {
                in.readTimeoutMs(SILENCE_TIMEOUT_MS);
                receive(in);
            } catch (Exception e) {
                receiverFailure.set(e);
                closeQuietly(server);            // the sender then fails too instead of waiting on a full socket
            }
        });
        receiver.start();
        try (TlsStream out = handshaken(client, clientEngine, TlsEndpoint.CLIENT)) {
            out.readTimeoutMs(0);
            send(out);
            // this end reads nothing (the server's session ticket stays unread): closing it before the
            // receiving end has read everything would reset the connection under that end's last frames
            receiver.join();
        } finally {
            closeQuietly(client);
            receiver.join();
        }
        if (receiverFailure.get() != null) {
            throw new IOException("the TLS warm-up's receiving end failed: " + receiverFailure.get().getMessage(), receiverFailure.get());
        }
    }

    private static SocketChannel acceptOwn(ServerSocketChannel listener, SocketAddress own) throws IOException {
        for (int i = 0; i < FOREIGN_CONNECTIONS_MAX; i++) {
            SocketChannel accepted = listener.accept();
            if (own.equals(accepted.getRemoteAddress())) {
                return accepted;
            }
            accepted.close();
        }
        throw new IOException("the TLS warm-up's loopback port got " + FOREIGN_CONNECTIONS_MAX + " connections from elsewhere");
    }

    /** The handshake as StreamConnector and StreamAcceptor run it: the server side has read the first byte already. */
    private static TlsStream handshaken(SocketChannel channel, SSLEngine engine, TlsEndpoint side) throws IOException {
        channel.socket().setSoTimeout(StreamConnector.HANDSHAKE_TIMEOUT_MS);
        ByteBuffer early = ByteBuffer.allocate(0);
        if (side == TlsEndpoint.SERVER) {
            int first = channel.socket().getInputStream().read();
            if (first < 0) {
                throw new IOException("the TLS warm-up's client closed the connection before its ClientHello");
            }
            early = ByteBuffer.wrap(new byte[] {(byte) first});
        }
        TlsChannel tls = new TlsChannel(new TimedSocket(channel), engine, early);
        tls.handshake();
        return new TlsStream(channel, tls, "TLS warm-up", side);
    }

    private void send(TlsStream out) throws IOException, InterruptedException {
        FrameWriter writer = new FrameWriter(out.output(), new RateLimiter(Long.MAX_VALUE / 4));
        long sent = 0;
        for (int frame = 0; sent < bytesPerRound; frame++) {
            writer.send(new Frame.BlockData(0, sent, block.duplicate()));
            sent += block.capacity();
            if (frame % BLOCKS_PER_RAM_FRAME == 0) {
                int length = 1 + sizes.nextInt(256 << 10);     // RamTunnel sends what one read of QEMU's socket gave
                writer.send(new Frame.Ram(block.duplicate().limit(length)));
                writer.send(new Frame.PassEnd(frame, sent));
                sent += length;
            }
        }
        writer.send(new Frame.Verified());
    }

    private static void receive(TlsStream in) throws IOException {
        FrameReader reader = new FrameReader(in.input());
        try {
            while (!(reader.next() instanceof Frame.Verified)) {
                // the frames' content does not matter, only that the stream's code ran over them
            }
        } catch (MigrationWire.WireException e) {
            throw new IOException("the TLS warm-up's frames did not decode: " + e.getMessage(), e);
        }
    }

    private static void closeQuietly(SocketChannel channel) {
        try {
            channel.close();
        } catch (IOException e) {
            // closing to end the round: the round reports what failed first
        }
    }
}
