package ferry.migration.stream;

import ferry.tls.DistinguishedName;
import ferry.tls.TlsEndpoint;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.atomic.AtomicBoolean;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.security.auth.x500.X500Principal;

/**
 * The migration stream inside TLS 1.3: JSSE's {@link SSLSocket}, layered over the connected
 * {@link SocketChannel}, with its streams seen as channels so that {@code FrameReader} and
 * {@code FrameWriter} run unchanged.
 *
 * <p>Why an SSLSocket rather than an {@code SSLEngine} over the channel: the stream is blocking and has
 * one reader and one writer thread, which is SSLSocket's model; JSSE then handles the TLS 1.3
 * post-handshake messages (NewSessionTicket, and the KeyUpdate it sends every 2^37 bytes under AES-GCM,
 * which a multi-terabyte migration does reach) and the interplay of a reader that must answer a
 * KeyUpdate while the writer sends. An SSLEngine would save one copy per byte (the output is staged in
 * a heap array here, the input copied once by {@link Channels#newChannel(InputStream)}); AES-GCM costs
 * far more than the copy, and docs/BENCHMARKS.md measures the whole.
 *
 * <p>Writes: each {@link #output()} write gathers the frame's header and payload into one staging
 * buffer of {@link #STAGING_BYTES} before JSSE cuts it into 16 KiB records, so a 16-byte header never
 * costs a record of its own.
 */
public final class TlsStream implements MigrationStream {
    /** Four full TLS records: JSSE encrypts and sends one record per 16 KiB. */
    static final int STAGING_BYTES = 64 << 10;

    private final SocketChannel channel;
    private final SSLSocket socket;
    private final String peer;
    private final TlsEndpoint side;
    private final ReadableByteChannel input;
    private final GatheringByteChannel output;
    private final AtomicBoolean closed = new AtomicBoolean();
    /** What ended the session as the reader saw it (an alert from the peer), so that a later write says the same. */
    private volatile SSLException readFailure;

    TlsStream(SocketChannel channel, SSLSocket socket, String peer, TlsEndpoint side) throws IOException {
        this.channel = channel;
        this.socket = socket;
        this.peer = peer;
        this.side = side;
        this.input = Channels.newChannel(new ExplainedInput(socket.getInputStream()));
        this.output = new StagedOutput(socket.getOutputStream(), this);
    }

    /** The TCP connection under TLS. */
    SocketChannel channel() {
        return channel;
    }

    @Override
    public ReadableByteChannel input() {
        return input;
    }

    @Override
    public GatheringByteChannel output() {
        return output;
    }

    @Override
    public String peer() {
        return peer;
    }

    @Override
    public String description() {
        SSLSession session = socket.getSession();
        String certificate;
        try {
            certificate = session.getPeerPrincipal() instanceof X500Principal p
                    ? ", peer certificate '" + DistinguishedName.text(p) + "'" : "";
        } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
            certificate = ", no peer certificate";
        }
        return session.getProtocol().replace("TLSv", "TLS ") + " (" + session.getCipherSuite() + ")" + certificate;
    }

    /** The peer's certificate subject, when it sent one. */
    public java.util.Optional<X500Principal> peerSubject() {
        try {
            return socket.getSession().getPeerPrincipal() instanceof X500Principal p ? java.util.Optional.of(p)
                    : java.util.Optional.empty();
        } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
            return java.util.Optional.empty();
        }
    }

    @Override
    public void readTimeoutMs(int timeoutMs) throws IOException {
        socket.setSoTimeout(timeoutMs);
    }

    @Override
    public void lingerSeconds(int seconds) throws IOException {
        socket.setSoLinger(true, seconds);
    }

    @Override
    public boolean isOpen() {
        return !closed.get() && channel.isOpen();
    }

    /**
     * Sends TLS's close_notify when it can, then closes the connection. JSSE waits for its record lock
     * (held by a writer that may be blocked on a peer that stopped reading) at most SO_LINGER seconds,
     * so the linger is set to at least one second first: a close never hangs on such a writer.
     */
    @Override
    public void close() throws IOException {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            if (channel.isOpen()) {
                if (socket.getSoLinger() < 0) {
                    socket.setSoLinger(true, 1);
                }
                socket.close();                  // close_notify; the channel stays open (not auto-closed)
            }
        } catch (IOException e) {
            // the connection is gone already: nothing to notify
        } finally {
            channel.close();
        }
    }

    /** Reads that fail inside TLS say why in Ferry's words (an alert from the peer, a plaintext peer). */
    private final class ExplainedInput extends FilterInputStream {
        ExplainedInput(InputStream in) {
            super(in);
        }

        @Override
        public int read() throws IOException {
            try {
                return super.read();
            } catch (SSLException e) {
                readFailure = TlsText.explained(e, side);
                throw readFailure;
            }
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            try {
                return super.read(b, off, len);
            } catch (SSLException e) {
                readFailure = TlsText.explained(e, side);
                throw readFailure;
            }
        }
    }

    /**
     * A gathering channel over JSSE's output stream. One writer at a time (FrameWriter's lock); every
     * write is complete when it returns.
     */
    private static final class StagedOutput implements GatheringByteChannel {
        private final OutputStream out;
        private final TlsStream stream;
        private final byte[] staging = new byte[STAGING_BYTES];
        private volatile boolean open = true;

        StagedOutput(OutputStream out, TlsStream stream) {
            this.out = out;
            this.stream = stream;
        }

        /**
         * When the reader already saw why the session ended (JSSE closes the whole connection on a fatal
         * alert, and a write then only says "Connection or outbound has closed"), a failed write says that.
         */
        private void send(byte[] bytes, int length) throws IOException {
            try {
                out.write(bytes, 0, length);
            } catch (IOException e) {
                SSLException known = stream.readFailure;
                if (known != null) {
                    throw new SSLException(known.getMessage(), e);
                }
                throw e;
            }
        }

        @Override
        public long write(ByteBuffer[] sources, int offset, int length) throws IOException {
            if (!open) {
                throw new ClosedChannelException();
            }
            long total = 0;
            int fill = 0;
            for (int i = offset; i < offset + length; i++) {
                ByteBuffer source = sources[i];
                while (source.hasRemaining()) {
                    int n = Math.min(source.remaining(), staging.length - fill);
                    source.get(staging, fill, n);
                    fill += n;
                    total += n;
                    if (fill == staging.length) {
                        send(staging, fill);
                        fill = 0;
                    }
                }
            }
            if (fill > 0) {
                send(staging, fill);
            }
            return total;
        }

        @Override
        public long write(ByteBuffer[] sources) throws IOException {
            return write(sources, 0, sources.length);
        }

        @Override
        public int write(ByteBuffer source) throws IOException {
            return (int) write(new ByteBuffer[] {source}, 0, 1);
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        @Override
        public void close() {
            open = false;
        }
    }
}
