package ferry.migration.stream;

import ferry.tls.DistinguishedName;
import ferry.tls.TlsChannel;
import ferry.tls.TlsEndpoint;
import ferry.tls.TlsException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;
import javax.security.auth.x500.X500Principal;

/**
 * The migration stream inside TLS 1.3: a {@link TlsChannel} (JSSE's {@code SSLEngine}) over the connected
 * {@link SocketChannel}, handshaken by {@link StreamConnector} or {@link StreamAcceptor}.
 * {@code FrameReader} reads {@link #input()}, {@code FrameWriter} writes {@link #output()}, unchanged.
 *
 * <p>Writes: a frame's header and payload go to the engine in one gathering write, which packs them
 * into the same 16 KiB records, so a 16-byte header never costs a record of its own, and the payload is
 * copied once, into the record it is encrypted in. Reads of a frame's payload unwrap straight into
 * {@code FrameReader}'s buffer. Read timeouts are the socket's ({@link TimedSocket}).
 *
 * <p>Design notes: an {@code SSLEngine} rather than JSSE's {@code SSLSocket}, which this class was until
 * 2026-11: the socket staged every write in a heap array and read through a second copy, and, more to the
 * point, its record path is not the one the start-up warm-up ({@link StreamWarmUp}) can drive in memory.
 * The warm-up now runs this very stream code over pipes, so the JIT has compiled it before the first
 * migration. TLS 1.3's post-handshake messages (NewSessionTicket, and the KeyUpdate JSSE sends every
 * 2^37 bytes under AES-GCM, which a multi-terabyte migration does reach) are answered inside TlsChannel,
 * by the reader taking the writer's lock.
 */
public final class TlsStream implements MigrationStream {
    private final SocketChannel channel;
    private final TlsChannel tls;
    private final String peer;
    private final TlsEndpoint side;
    private final ReadableByteChannel input = new ExplainedInput();
    private final GatheringByteChannel output = new ExplainedOutput();
    private final AtomicBoolean closed = new AtomicBoolean();
    /**
     * How long a write that found the session closed waits for the reader's explanation: the engine closes
     * inside the reader's unwrap of the peer's alert, a moment before the reader can say which alert it was.
     */
    static final long READ_FAILURE_WAIT_MS = 1_000;
    /** What ended the session as the reader saw it (an alert from the peer), so that a later write says the same. */
    private volatile SSLException readFailure;
    private final CountDownLatch readFailed = new CountDownLatch(1);

    /** {@code tls}: over {@code channel}, its handshake done. */
    TlsStream(SocketChannel channel, TlsChannel tls, String peer, TlsEndpoint side) {
        this.channel = channel;
        this.tls = tls;
        this.peer = peer;
        this.side = side;
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
        SSLSession session = tls.session();
        String certificate = peerSubject().map(p -> ", peer certificate '" + DistinguishedName.text(p) + "'")
                .orElse(", no peer certificate");
        return session.getProtocol().replace("TLSv", "TLS ") + " (" + session.getCipherSuite() + ")" + certificate;
    }

    /** The peer's certificate subject, when it sent one. */
    public Optional<X500Principal> peerSubject() {
        try {
            return tls.session().getPeerPrincipal() instanceof X500Principal p ? Optional.of(p) : Optional.empty();
        } catch (SSLPeerUnverifiedException e) {
            return Optional.empty();
        }
    }

    @Override
    public void readTimeoutMs(int timeoutMs) throws IOException {
        channel.socket().setSoTimeout(timeoutMs);
    }

    @Override
    public void lingerSeconds(int seconds) throws IOException {
        channel.setOption(StandardSocketOptions.SO_LINGER, seconds);
    }

    @Override
    public boolean isOpen() {
        return !closed.get() && channel.isOpen();
    }

    /**
     * Sends TLS's close_notify unless a write is in progress (TlsChannel never waits for the writer, who
     * may be blocked on a peer that stopped reading), then closes the connection, which ends a blocked
     * read or write.
     */
    @Override
    public void close() throws IOException {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            tls.close();
        } finally {
            channel.close();
        }
    }

    /** The SSLException under a failure of TlsChannel (which wraps JSSE's in a TlsException), if any. */
    static Optional<SSLException> sslCause(Throwable failure) {
        for (Throwable t = failure; t != null; t = t.getCause()) {
            if (t instanceof SSLException ssl) {
                return Optional.of(ssl);
            }
        }
        return Optional.empty();
    }

    /** Reads that fail inside TLS say why in Ferry's words (an alert from the peer, a plaintext peer). */
    private final class ExplainedInput implements ReadableByteChannel {
        @Override
        public int read(ByteBuffer dst) throws IOException {
            try {
                return tls.read(dst);
            } catch (TlsException e) {
                Optional<SSLException> ssl = sslCause(e);
                if (ssl.isEmpty()) {
                    throw e;
                }
                SSLException explained = TlsText.explained(ssl.get(), side);
                readFailure = explained;
                readFailed.countDown();
                throw explained;
            }
        }

        @Override
        public boolean isOpen() {
            return tls.isOpen();
        }

        @Override
        public void close() throws IOException {
            TlsStream.this.close();
        }
    }

    /**
     * Writes through TlsChannel, each complete when it returns (one writer at a time: FrameWriter's lock).
     * When the reader saw why the session ended (the peer's alert closes the engine, and a write then only
     * says the session is closed), a failed write says that, waiting up to {@link #READ_FAILURE_WAIT_MS} for it.
     */
    private final class ExplainedOutput implements GatheringByteChannel {
        @Override
        public long write(ByteBuffer[] sources, int offset, int length) throws IOException {
            if (closed.get()) {
                throw new ClosedChannelException();
            }
            try {
                return tls.write(sources, offset, length);
            } catch (IOException e) {
                SSLException known = readFailure;
                if (known == null && e instanceof TlsException t && t.kind() == TlsException.Kind.SESSION) {
                    known = awaitReadFailure();
                }
                if (known != null) {
                    throw new SSLException(known.getMessage(), e);
                }
                throw e;
            }
        }

        private SSLException awaitReadFailure() throws InterruptedIOException {
            try {
                readFailed.await(READ_FAILURE_WAIT_MS, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while the TLS session's failure was read");
            }
            return readFailure;
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
            return !closed.get();
        }

        @Override
        public void close() throws IOException {
            TlsStream.this.close();
        }
    }
}
