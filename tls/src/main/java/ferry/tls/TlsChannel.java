package ferry.tls;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.GatheringByteChannel;
import java.util.concurrent.locks.ReentrantLock;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLEngineResult.HandshakeStatus;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * TLS over a connected, blocking byte channel, through one JSSE {@link SSLEngine}: the NBD server's
 * STARTTLS (a unix or TCP connection upgraded in the middle of NBD's handshake, where JSSE's SSLSocket,
 * which works only on TCP sockets, cannot follow) and the migration stream.
 *
 * <p>Threads: {@link #handshake()} runs first, on one thread. Afterwards one reader at a time (a
 * lock) and one writer at a time (another lock); a read may run while a write does, as SSLEngine
 * allows wrap and unwrap concurrently. A read that meets a post-handshake message wanting an answer
 * (a TLS 1.3 KeyUpdate, a close_notify) takes the write lock to send it. {@link #close()} may come
 * from any thread: it sends close_notify when no write is in progress, then closes the channel
 * underneath, which ends a blocked read or write.
 *
 * <p>Buffers: {@code netIn} holds ciphertext not yet unwrapped (one record or more),
 * {@code appIn} plaintext not yet read (one record), {@code netOut} up to
 * {@link #RECORDS_PER_WRITE} records wrapped before one write to the channel. A read of at least
 * one record's worth of plaintext unwraps straight into the caller's buffer (a 32 MiB WRITE payload
 * is not copied twice); a gathering write wraps a frame's header and payload into the same records.
 * A peer that hangs up without close_notify ends the stream like a plain end of stream: the protocol
 * above frames its messages and sees a cut in the middle of one.
 *
 * <p>Design notes: {@code netIn} and {@code netOut} are heap buffers. JSSE encrypts and decrypts a
 * record in place in them, and JDK 25's AES-GCM takes a heap buffer in one call of its AVX-512
 * intrinsic per record, while a direct one goes through 512-byte copies into heap arrays; the copy the
 * channel then makes between heap and kernel costs less (1.23 against 1.31 CPU s per GiB for both ends of
 * a loopback stream, docs/BENCHMARKS.md "TLS").
 */
public final class TlsChannel implements ByteChannel, GatheringByteChannel {
    private static final System.Logger LOG = System.getLogger(TlsChannel.class.getName());
    static final int RECORDS_PER_WRITE = 4;
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);

    private final ByteChannel net;
    private final SSLEngine engine;
    private final ReentrantLock reading = new ReentrantLock();
    private final ReentrantLock writing = new ReentrantLock();
    private ByteBuffer netIn;          // write mode: [0, position) received, not yet unwrapped; under `reading`
    private ByteBuffer appIn;          // read mode: [position, limit) unwrapped, not yet read; under `reading`
    private ByteBuffer netOut;         // under `writing`
    private boolean inboundDone;       // under `reading`
    private volatile boolean open = true;
    private volatile boolean handshaken;

    /**
     * A channel over {@code net} (connected, blocking) and {@code engine} (client or server mode set).
     * {@code early} holds bytes already read from {@code net} that belong to the TLS stream (a
     * client that sent its ClientHello right behind STARTTLS); it is copied.
     */
    public TlsChannel(ByteChannel net, SSLEngine engine, ByteBuffer early) {
        this.net = net;
        this.engine = engine;
        SSLSession session = engine.getSession();
        this.netIn = ByteBuffer.allocate(Math.max(session.getPacketBufferSize(), early.remaining())).put(early);
        this.appIn = ByteBuffer.allocate(session.getApplicationBufferSize()).flip();
        this.netOut = ByteBuffer.allocate(RECORDS_PER_WRITE * session.getPacketBufferSize());
    }

    /**
     * Runs the TLS handshake to its end. On failure the alert JSSE prepared (bad certificate,
     * certificate required, ...) is sent to the peer when possible, and the exception says why.
     */
    public void handshake() throws IOException {
        reading.lock();
        writing.lock();
        try {
            engine.beginHandshake();
            while (true) {
                switch (engine.getHandshakeStatus()) {
                    case NOT_HANDSHAKING, FINISHED -> {
                        handshaken = true;
                        return;
                    }
                    case NEED_TASK -> runTasks();
                    case NEED_WRAP -> wrapHandshake();
                    case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                        SSLEngineResult r = unwrapRecord(appIn.compact());
                        appIn.flip();
                        if (r == null || r.getStatus() == SSLEngineResult.Status.CLOSED) {
                            throw new TlsException(TlsException.Kind.HANDSHAKE, "tls handshake failed: the peer closed the connection"
                                    + (r == null ? "" : " (alert or close_notify)"));
                        }
                        if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                            appIn = grow(appIn.compact(), engine.getSession().getApplicationBufferSize()).flip();
                        }
                    }
                }
            }
        } catch (SSLException e) {
            sendAlert();
            throw new TlsException(TlsException.Kind.HANDSHAKE, "tls handshake failed: " + reason(e), e);
        } catch (TlsException e) {
            throw e;
        } catch (IOException e) {   // the peer hung up mid-handshake (it rejected our certificate, say)
            throw new TlsException(TlsException.Kind.HANDSHAKE, "tls handshake failed: i/o: " + e.getMessage(), e);
        } finally {
            writing.unlock();
            reading.unlock();
        }
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        reading.lock();
        try {
            ensureReady();
            boolean overflowed = false;
            while (true) {
                if (appIn.hasRemaining()) {
                    int n = Math.min(appIn.remaining(), dst.remaining());
                    dst.put(dst.position(), appIn, appIn.position(), n);
                    dst.position(dst.position() + n);
                    appIn.position(appIn.position() + n);
                    return n;
                }
                if (inboundDone) {
                    return -1;
                }
                if (!dst.hasRemaining()) {
                    return 0;
                }
                boolean direct = dst.remaining() >= appIn.capacity() && !overflowed;
                SSLEngineResult r;
                try {
                    r = unwrapRecord(direct ? dst : appIn.clear());
                } catch (SSLException e) {
                    throw new TlsException(TlsException.Kind.SESSION, "tls record failed: " + reason(e), e);
                } finally {
                    if (!direct) {
                        appIn.flip();
                    }
                }
                if (r == null) {
                    inboundDone = true;   // end of stream without close_notify: see the class comment
                    continue;
                }
                switch (r.getStatus()) {
                    case CLOSED -> {   // the peer's close_notify: answer it if it is still there, and end the stream
                        inboundDone = true;
                        try {
                            answerPostHandshake(r.getHandshakeStatus());
                        } catch (IOException e) {
                            LOG.log(Level.DEBUG, () -> "tls close_notify not answered: " + e.getMessage());
                        }
                        continue;
                    }
                    case BUFFER_OVERFLOW -> {   // appIn is empty here: replace it, and unwrap into it from now on
                        overflowed = true;
                        appIn = ByteBuffer.allocate(Math.max(appIn.capacity(), engine.getSession().getApplicationBufferSize())).flip();
                    }
                    default -> { }
                }
                answerPostHandshake(r.getHandshakeStatus());
                if (direct && r.bytesProduced() > 0) {
                    return r.bytesProduced();
                }
            }
        } finally {
            reading.unlock();
        }
    }

    @Override
    public int write(ByteBuffer src) throws IOException {
        return (int) write(new ByteBuffer[] {src}, 0, 1);
    }

    @Override
    public long write(ByteBuffer[] srcs) throws IOException {
        return write(srcs, 0, srcs.length);
    }

    /** Writes everything in {@code srcs} (blocking), in records of at most 16 KiB. */
    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        writing.lock();
        try {
            ensureReady();
            long total = 0;
            netOut.clear();
            while (remaining(srcs, offset, length) > 0) {
                SSLEngineResult r;
                try {
                    r = engine.wrap(srcs, offset, length, netOut);
                } catch (SSLException e) {
                    throw new TlsException(TlsException.Kind.SESSION, "tls wrap failed: " + reason(e), e);
                }
                total += r.bytesConsumed();
                switch (r.getStatus()) {
                    case CLOSED -> throw new TlsException(TlsException.Kind.SESSION, "tls session closed: cannot write");
                    case BUFFER_OVERFLOW -> {
                        if (netOut.position() == 0) {
                            netOut = grow(netOut, RECORDS_PER_WRITE * engine.getSession().getPacketBufferSize());
                        } else {
                            flush();
                        }
                        continue;
                    }
                    default -> { }
                }
                if (r.getHandshakeStatus() == HandshakeStatus.NEED_TASK) {
                    runTasks();
                }
                if (r.bytesConsumed() == 0 && r.bytesProduced() == 0) {
                    throw new TlsException(TlsException.Kind.SESSION, "tls wrap made no progress: handshake=" + r.getHandshakeStatus());
                }
                if (netOut.remaining() < engine.getSession().getPacketBufferSize()) {
                    flush();
                }
            }
            flush();
            return total;
        } finally {
            writing.unlock();
        }
    }

    @Override
    public boolean isOpen() {
        return open && net.isOpen();
    }

    /**
     * Sends close_notify unless a write is in progress (then that write's thread is stuck or will
     * fail: closing the channel underneath ends it), then closes the channel. Idempotent.
     */
    @Override
    public void close() throws IOException {
        if (!open) {
            return;
        }
        open = false;
        try {
            if (handshaken && writing.tryLock()) {
                try {
                    engine.closeOutbound();
                    netOut.clear();
                    engine.wrap(EMPTY, netOut);   // close_notify: one small record
                    flush();
                } catch (IOException e) {   // the peer may be gone already: close_notify is a courtesy
                    LOG.log(Level.DEBUG, () -> "tls close_notify not sent: " + e.getMessage());
                } finally {
                    writing.unlock();
                }
            }
        } finally {
            net.close();
        }
    }

    /** The negotiated session (protocol, cipher suite, the peer's certificates). */
    public SSLSession session() {
        return engine.getSession();
    }

    /** The peer certificate's subject DN, or null when the peer sent none. */
    public String peerSubject() {
        try {
            return engine.getSession().getPeerPrincipal().getName();
        } catch (SSLPeerUnverifiedException e) {
            return null;
        }
    }

    /** For logs: {@code TLSv1.3 TLS_AES_256_GCM_SHA384 peer=CN=client}. */
    public String describe() {
        SSLSession s = engine.getSession();
        String peer = peerSubject();
        return s.getProtocol() + " " + s.getCipherSuite() + (peer == null ? "" : " peer=" + peer);
    }

    /**
     * One unwrap, reading from the channel until a whole record is there. Null at end of stream.
     * Caller holds {@code reading}; {@code into} is in write mode.
     */
    private SSLEngineResult unwrapRecord(ByteBuffer into) throws IOException {
        while (true) {
            netIn.flip();
            SSLEngineResult r;
            try {
                r = engine.unwrap(netIn, into);
            } finally {
                netIn.compact();
            }
            if (r.getStatus() != SSLEngineResult.Status.BUFFER_UNDERFLOW) {
                return r;
            }
            if (!netIn.hasRemaining()) {
                netIn = grow(netIn, engine.getSession().getPacketBufferSize());
            }
            if (net.read(netIn) < 0) {
                return null;
            }
        }
    }

    /** Sends what the handshake wants sent. Caller holds {@code writing}. */
    private void wrapHandshake() throws IOException {
        netOut.clear();
        SSLEngineResult r = engine.wrap(EMPTY, netOut);
        if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
            netOut = grow(netOut, RECORDS_PER_WRITE * engine.getSession().getPacketBufferSize());
        }
        flush();
        if (r.getStatus() == SSLEngineResult.Status.CLOSED && r.getHandshakeStatus() != HandshakeStatus.NEED_WRAP) {
            throw new TlsException(TlsException.Kind.HANDSHAKE, "tls handshake failed: the session closed during the handshake");
        }
    }

    /** After a read: runs tasks, and sends an answer the engine wants sent (KeyUpdate, close_notify). */
    private void answerPostHandshake(HandshakeStatus status) throws IOException {
        if (status == HandshakeStatus.NEED_TASK) {
            runTasks();
        }
        if (engine.getHandshakeStatus() != HandshakeStatus.NEED_WRAP) {
            return;
        }
        writing.lock();
        try {
            while (engine.getHandshakeStatus() == HandshakeStatus.NEED_WRAP) {   // a writer may have sent it meanwhile
                netOut.clear();
                SSLEngineResult r = engine.wrap(EMPTY, netOut);
                flush();
                if (r.bytesProduced() == 0) {
                    break;
                }
            }
        } catch (SSLException e) {
            throw new TlsException(TlsException.Kind.SESSION, "tls post-handshake message failed: " + reason(e), e);
        } finally {
            writing.unlock();
        }
    }

    /** After a failed handshake JSSE holds a fatal alert for the peer; send it if the channel lets us. */
    private void sendAlert() {
        try {
            netOut.clear();
            engine.wrap(EMPTY, netOut);
            flush();
        } catch (IOException e) {
            LOG.log(Level.DEBUG, () -> "tls alert not sent: " + e.getMessage());
        }
    }

    /** Writes netOut's [0, position) out and clears it. Caller holds {@code writing}. */
    private void flush() throws IOException {
        netOut.flip();
        try {
            while (netOut.hasRemaining()) {
                net.write(netOut);
            }
        } finally {
            netOut.clear();
        }
    }

    private void runTasks() {
        for (Runnable task = engine.getDelegatedTask(); task != null; task = engine.getDelegatedTask()) {
            task.run();
        }
    }

    private void ensureReady() throws IOException {
        if (!open) {
            throw new ClosedChannelException();
        }
        if (!handshaken) {
            throw new IllegalStateException("tls handshake not done");
        }
    }

    private static long remaining(ByteBuffer[] srcs, int offset, int length) {
        long n = 0;
        for (int i = offset; i < offset + length; i++) {
            n += srcs[i].remaining();
        }
        return n;
    }

    /** A larger buffer (at least {@code atLeast}) holding {@code b}'s [0, position), in write mode. */
    private static ByteBuffer grow(ByteBuffer b, int atLeast) {
        int capacity = Math.max(atLeast, 2 * b.capacity());
        ByteBuffer bigger = b.isDirect() ? ByteBuffer.allocateDirect(capacity) : ByteBuffer.allocate(capacity);
        return bigger.put(b.flip());
    }

    /** An SSLException's message, and its root cause's when that says more (why a certificate path failed). */
    private static String reason(SSLException e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        String message = String.valueOf(e.getMessage());
        String rootMessage = String.valueOf(root.getMessage());
        return root == e || message.contains(rootMessage) ? message : message + " (" + rootMessage + ")";
    }
}
