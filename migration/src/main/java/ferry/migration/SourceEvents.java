package ferry.migration;

import ferry.migration.wire.Frame;
import java.io.EOFException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.LongConsumer;
import java.util.function.Supplier;
import javax.net.ssl.SSLException;

/**
 * The source's event queue, and what each event does to the migration: frames from the destination, QEMU's
 * RAM migration status, the user's cancel, and a failed stream ({@link SourceEvent}). Other threads only add;
 * the procedure handles them whenever it drains or waits.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Every event is handled on {@code migration-send}, between two steps of the procedure: the state moves
 *       only where the procedure looks for it, never under a step that runs.</li>
 *   <li>An event can end the attempt by throwing: a cancel is {@link Cancelled} (before COMMIT; after it, the
 *       cancel is logged and ignored), a stream's I/O error is {@link LinkLost} (another attempt may follow), a
 *       TLS failure, the destination's ERROR and QEMU's failed RAM migration are a {@link MigrationException}.</li>
 *   <li>The state lives in the {@link SourceStateMachine} the procedure shares; a CONFIRMED goes to whatever
 *       ledger the migration holds now, through the callback given (a fresh start and a resume change it).</li>
 *   <li>The reasons it answers for ({@link #cancelReason}, {@link #peerReason}) look at events not handled yet:
 *       when a send fails, the destination's ERROR that explains it is often still queued.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} drains, waits and reads reasons; any thread may {@link #add}
 * ({@code migration-recv}, QEMU's event thread, the RAM tunnel's pump, whoever cancels).
 */
final class SourceEvents {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());

    private final BlockingQueue<SourceEvent> queue = new LinkedBlockingQueue<>();
    private final CountDownLatch cancelSeen = new CountDownLatch(1);
    private final SourceStateMachine machine;
    private final MigrationStats stats;
    private final Supplier<Optional<Path>> qemuLog;
    private final LongConsumer confirmed;
    /** The cancel reason once the send thread handled the request. */
    private volatile String cancelled;

    /**
     * @param qemuLog where QEMU's log is, for the message when its RAM migration fails
     * @param confirmed takes the number of each checkpoint the destination confirms
     */
    SourceEvents(SourceStateMachine machine, MigrationStats stats, Supplier<Optional<Path>> qemuLog, LongConsumer confirmed) {
        this.machine = machine;
        this.stats = stats;
        this.qemuLog = qemuLog;
        this.confirmed = confirmed;
    }

    /** The queue itself, for the stream whose receiver fills it. */
    BlockingQueue<SourceEvent> queue() {
        return queue;
    }

    void add(SourceEvent event) {
        queue.add(event);
    }

    /** Waits up to {@code timeoutMs} for the send thread to handle a cancel request; true when it did. */
    boolean cancelSeenWithin(long timeoutMs) throws InterruptedException {
        return cancelSeen.await(timeoutMs, TimeUnit.MILLISECONDS);
    }

    /** Handles every event queued, without waiting. */
    void drain() throws MigrationException, Cancelled, LinkLost {
        SourceEvent event;
        while ((event = queue.poll()) != null) {
            handle(event);
        }
    }

    /** Waits up to {@code timeoutMs} for an event; when one comes, handles it and every other queued. */
    void waitFor(long timeoutMs) throws MigrationException, Cancelled, LinkLost, InterruptedException {
        SourceEvent event = queue.poll(timeoutMs, TimeUnit.MILLISECONDS);
        if (event != null) {
            handle(event);
            drain();
        }
    }

    /** Handles events until the state has reached {@code wanted}; after {@code timeoutMs} a failure says it waited for {@code what}. */
    void awaitState(SourceState wanted, long timeoutMs, String what)
            throws MigrationException, Cancelled, LinkLost, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (!machine.reached(wanted)) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new MigrationException(stats.phase(), "timed out after " + timeoutMs + " ms waiting for " + what);
            }
            SourceEvent event = queue.poll(left, TimeUnit.NANOSECONDS);
            if (event != null) {
                handle(event);
            }
        }
    }

    /** Handles events until a frame of {@code type} comes, and returns it; after {@code timeoutMs} a failure says it waited for {@code what}. */
    <F extends Frame> F awaitFrame(Class<F> type, long timeoutMs, String what)
            throws MigrationException, InterruptedException, Cancelled, LinkLost {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            long left = deadline - System.nanoTime();
            SourceEvent event = left > 0 ? queue.poll(left, TimeUnit.NANOSECONDS) : null;
            if (event == null) {
                throw new MigrationException(stats.phase(), "timed out after " + timeoutMs + " ms waiting for " + what);
            }
            if (event instanceof SourceEvent.PeerFrame(Frame frame) && type.isInstance(frame)) {
                return type.cast(frame);
            }
            handle(event);
        }
    }

    /** An attempt ended: its events go, a cancel request stays. */
    void dropAttempt() {
        queue.removeIf(event -> !(event instanceof SourceEvent.CancelRequested));
    }

    /** The user's cancel reason, when a cancel was asked for (also when it interrupted the send thread). */
    Optional<String> cancelReason() {
        for (SourceEvent event : queue) {
            if (event instanceof SourceEvent.CancelRequested(String reason)) {
                return Optional.of(reason);
            }
        }
        return cancelled == null ? Optional.empty() : Optional.of(cancelled);
    }

    /**
     * When a send fails because the destination closed the stream, the destination usually said why
     * first (an ERROR frame the receiver thread queued): that reason beats "broken pipe".
     *
     * @param stream the attempt's stream, whose receiver gets a moment to queue what it read; null: none
     */
    Optional<String> peerReason(SourceStream stream) {
        try {
            if (stream != null) {
                stream.awaitReceiver(1000);            // let it queue what it read before the close
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return queuedPeerReason();
    }

    /** The destination's ERROR among the events already queued, without waiting for more. */
    Optional<String> queuedPeerReason() {
        for (SourceEvent event : queue) {
            if (event instanceof SourceEvent.PeerFrame(Frame.Error error)) {
                return Optional.of("destination failed in " + error.phase() + ": " + error.message());
            }
        }
        for (SourceEvent event : queue) {
            if (event instanceof SourceEvent.Failure(Phase phase, SSLException refused)) {
                return Optional.of(refused.getMessage());     // a TLS alert, in Ferry's words (TlsText)
            }
        }
        return Optional.empty();
    }

    private void handle(SourceEvent event) throws MigrationException, Cancelled, LinkLost {
        switch (event) {
            case SourceEvent.CancelRequested c -> {
                cancelled = c.reason();
                cancelSeen.countDown();
                if (!machine.reached(SourceState.COMMITTED)) {
                    throw new Cancelled(c.reason());
                }
                LOG.log(System.Logger.Level.WARNING, "cancel ignored: the destination may already run the VM (COMMIT was sent)");
            }
            case SourceEvent.Failure f -> {
                if (f.cause() instanceof IOException && !(f.cause() instanceof SSLException)) {
                    throw new LinkLost(f.phase(), f.cause() instanceof EOFException
                            ? "connection to the destination lost: " + f.cause().getMessage()
                            : "connection to the destination failed: " + f.cause().getMessage(), f.cause());
                }
                throw new MigrationException(f.phase(), String.valueOf(f.cause().getMessage()), f.cause());
            }
            case SourceEvent.RamStatusChanged r -> ramStatus(r.status());
            case SourceEvent.PeerFrame p -> peerFrame(p.frame());
        }
    }

    private void ramStatus(RamStatus status) throws MigrationException {
        switch (status) {
            case PRE_SWITCHOVER -> machine.moveTo(SourceState.PRE_SWITCHOVER);
            case FAILED, CANCELLED -> throw new MigrationException(Phase.RAM, "QEMU's RAM migration "
                    + status.name().toLowerCase(Locale.ROOT) + " (see " + qemuLog.get().map(l -> "QEMU's log " + l)
                    .orElse("the log of that QEMU: Ferry attached to it, and its output goes where its owner sent it") + ")");
            case SETUP, ACTIVE, DEVICE, CANCELLING, COMPLETED, OTHER ->
                    LOG.log(System.Logger.Level.DEBUG, "QEMU migration status: " + status);
        }
    }

    private void peerFrame(Frame frame) throws MigrationException {
        switch (frame) {
            case Frame.Verified v -> machine.moveTo(SourceState.VERIFIED);
            case Frame.DestReady r -> machine.moveTo(SourceState.DEST_READY);
            case Frame.Confirmed c -> confirmed.accept(c.number());
            case Frame.Running r -> { }          // awaited by awaitFrame; a late duplicate is harmless
            case Frame.Error e -> throw new MigrationException(stats.phase(), "destination failed in " + e.phase() + ": " + e.message());
            default -> throw new MigrationException(stats.phase(), "unexpected " + frame.type() + " frame from the destination");
        }
    }
}
