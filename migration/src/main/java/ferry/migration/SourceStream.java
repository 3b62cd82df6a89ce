package ferry.migration;

import ferry.linux.Threads;
import ferry.migration.stream.MigrationStream;
import ferry.migration.stream.StreamConnector;
import ferry.migration.stream.StreamRefused;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import java.io.IOException;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.function.Supplier;

/**
 * One connection of a migration source to its destination: one attempt's stream. A migration that
 * resumes after a dropped link opens a new one; what the migration knows lives on: the ledger and digests
 * in {@link DiskPasses}, the dirty tracking in {@link MigrationSource}.
 *
 * <p>Frames from the destination become {@link SourceEvent}s; RAM frames go straight to the tunnel.
 * A send that fails, and a receive that ends in an I/O error, are a {@link LinkLost}: another attempt
 * may follow. A TLS refusal is not (the peer said no).
 *
 * <h2>Design notes</h2>
 * A cut link is silent: writes block once the socket buffers are full and no error comes for many
 * minutes (TCP's retransmission limit). The destination answers every CHECKPOINT, and the source
 * sends one at least every {@link ResendLedger#HEARTBEAT_NS}; so a checkpoint left unanswered for
 * {@link #LINK_SILENCE_MS}, with nothing at all heard meanwhile, means the link is gone. The watchdog
 * then closes the stream, which fails the blocked write and makes the loss a {@link LinkLost}.
 *
 * <p>Threads: {@link #connect} starts {@code migration-recv}, which reads until the stream ends, and
 * {@code migration-watchdog}, which checks once a second that the destination answers; {@link #close}
 * ends and joins both. Sends come from {@code migration-send} only.
 */
final class SourceStream {
    private static final System.Logger LOG = System.getLogger(SourceStream.class.getName());
    private static final int CONNECT_TIMEOUT_MS = 10_000;
    private static final long RECEIVER_JOIN_MS = 5_000;

    private final MigrationStream channel;
    private final FrameWriter writer;
    private final Thread recvThread;
    private final Thread watchdog;
    private volatile RamTunnel tunnel;
    /** How long a checkpoint may go unanswered, with nothing heard from the destination, before the link counts as lost. */
    static final long LINK_SILENCE_MS = 20_000;
    private volatile long lastHeardNs = System.nanoTime();
    /** The oldest checkpoint not yet confirmed, and when it was sent; -1: none outstanding. */
    private volatile long outstandingCheckpoint = -1;
    private volatile long outstandingSinceNs;
    private volatile String silence;

    private SourceStream(MigrationStream channel, FrameWriter writer, FrameReader reader, BlockingQueue<SourceEvent> events,
                         Supplier<Phase> phase) {
        this.channel = channel;
        this.writer = writer;
        this.recvThread = Threads.unstartedVirtual("migration-recv", () -> receive(reader, events, phase));
        this.watchdog = Threads.unstartedVirtual("migration-watchdog", this::watch);
    }

    /**
     * TCP connect and, with tls-creds, the TLS handshake: the stream is authenticated before HELLO is sent.
     *
     * @param retrying true once the destination holds a partial state of this migration: then a failed TCP
     *     connect is a {@link LinkLost} (the destination may be restarting), else a failure
     */
    static SourceStream connect(MigrationRequest request, RateLimiter limiter, BlockingQueue<SourceEvent> events,
                                Supplier<Phase> phase, boolean retrying) throws MigrationException, LinkLost {
        MigrationStream channel;
        try {
            channel = StreamConnector.connect(request.host(), request.port(), CONNECT_TIMEOUT_MS, MigrationSource.SOCKET_BUFFER,
                    request.security());
        } catch (StreamRefused e) {
            throw new MigrationException(Phase.HANDSHAKE, e.getMessage(), e);
        } catch (IOException e) {
            String message = "cannot connect to " + request.host() + ":" + request.port() + ": " + e.getMessage();
            if (retrying) {
                throw new LinkLost(Phase.HANDSHAKE, message, e);
            }
            throw new MigrationException(Phase.HANDSHAKE, message + " (is the destination started with -incoming tcp:0:"
                    + request.port() + "?)", e);
        }
        SourceStream stream = new SourceStream(channel, new FrameWriter(channel.output(), limiter), new FrameReader(channel.input()),
                events, phase);
        stream.recvThread.start();
        stream.watchdog.start();
        return stream;
    }

    FrameWriter writer() {
        return writer;
    }

    /** Sends one frame; a failed send is the link lost. */
    void send(Phase phase, Frame frame) throws LinkLost, InterruptedException {
        if (frame instanceof Frame.Checkpoint(long number) && outstandingCheckpoint < 0) {
            outstandingSinceNs = System.nanoTime();
            outstandingCheckpoint = number;
        }
        try {
            writer.send(frame);
        } catch (IOException e) {
            String why = silence;
            throw new LinkLost(phase, why != null ? why : "sending " + frame.type() + " to the destination failed: " + e.getMessage(), e);
        }
    }

    /** On {@code migration-watchdog}: closes the stream when the destination left a checkpoint unanswered too long. */
    private void watch() {
        try {
            while (channel.isOpen()) {
                Thread.sleep(1000);
                long now = System.nanoTime();
                long since = outstandingSinceNs;
                if (outstandingCheckpoint >= 0 && now - since > LINK_SILENCE_MS * 1_000_000
                        && now - lastHeardNs > LINK_SILENCE_MS * 1_000_000) {
                    silence = "the destination answered nothing for " + LINK_SILENCE_MS / 1000 + " s (checkpoint "
                            + outstandingCheckpoint + " unconfirmed): the link is presumed lost";
                    LOG.log(System.Logger.Level.WARNING, silence);
                    channel.close();
                    return;
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "closing a silent migration stream: " + e.getMessage());
        }
    }

    /** From here on RAM frames from the destination go to {@code t}. */
    void tunnel(RamTunnel t) {
        this.tunnel = t;
    }

    RamTunnel tunnel() {
        return tunnel;
    }

    /** On {@code migration-recv}: frames become events until the stream ends; its end is a {@link SourceEvent.Failure}. */
    private void receive(FrameReader reader, BlockingQueue<SourceEvent> events, Supplier<Phase> phase) {
        try {
            while (true) {
                Frame frame = reader.next();
                lastHeardNs = System.nanoTime();
                if (frame instanceof Frame.Confirmed(long number) && number >= outstandingCheckpoint) {
                    outstandingCheckpoint = -1;            // the next CHECKPOINT sent starts the clock again
                }
                switch (frame) {
                    case Frame.Ram ram -> ramTunnel().deliver(ram.data());
                    case Frame.RamEof eof -> ramTunnel().peerFinished();
                    default -> events.add(new SourceEvent.PeerFrame(frame));
                }
            }
        } catch (Exception e) {
            String why = silence;
            events.add(new SourceEvent.Failure(phase.get(), why != null ? new IOException(why, e) : e));
        }
    }

    private RamTunnel ramTunnel() throws IOException {
        RamTunnel t = tunnel;
        if (t == null) {
            throw new IOException("destination sent RAM data before the RAM migration started");
        }
        return t;
    }

    /**
     * Waits up to {@code waitMs} for the receiver to queue what the destination said before the stream
     * ended (its ERROR usually comes just before the close that failed a send).
     */
    void awaitReceiver(long waitMs) throws InterruptedException {
        recvThread.join(waitMs);
    }

    boolean isOpen() {
        return channel.isOpen();
    }

    /** Tells the destination why (when the stream still works), then closes the stream and the RAM tunnel and joins the receiver. */
    void close(Optional<Frame> farewell) {
        if (farewell.isPresent() && channel.isOpen()) {
            try {
                channel.lingerSeconds(2);
                writer.send(farewell.get());
            } catch (IOException | InterruptedException e) {
                LOG.log(System.Logger.Level.DEBUG, "could not tell the destination why: " + e.getMessage());
            }
        }
        try {
            channel.close();
            RamTunnel t = tunnel;
            if (t != null) {
                t.close();
            }
            recvThread.join(RECEIVER_JOIN_MS);
            watchdog.interrupt();
            watchdog.join(RECEIVER_JOIN_MS);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "closing the migration stream: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
