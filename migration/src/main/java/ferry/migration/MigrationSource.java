package ferry.migration;

import ferry.image.BlockImage;
import ferry.linux.Threads;
import ferry.migration.wire.Frame;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Optional;
import java.util.UUID;

/**
 * The source side of one migration, DESIGN.md "Migration, step by step": handshake, bulk pass,
 * dirty passes with convergence control, RAM migration through the tunnel, switchover in QEMU's
 * {@code pre-switchover}, digest check, commit; and, when the link drops, further attempts that
 * send only what the destination lacks (DESIGN.md "Resume").
 *
 * <p>Until the COMMIT frame is sent, any failure resumes the source VM with its disks untouched.
 * After COMMIT the destination may already run the VM, so the source stays paused and says so:
 * running the VM twice would corrupt its disks.
 *
 * <p>The disks stay QEMU's: {@link SourceBlocks} tracks guest writes in QEMU's own dirty bitmaps,
 * reads through QEMU's block layer and throttles guest writes with QEMU's I/O throttling, only while
 * the migration runs (and, between attempts, keeps only the dirty tracking).
 *
 * <p>This class tells the procedure in order ({@code run}, {@code attempts}, {@code attempt}, the handshakes,
 * {@code startRam}, {@code recover}); each part it leans on has one job. Where the source is:
 * {@link SourceStateMachine} over {@link SourceState}. What it waits for and what each event does:
 * {@link SourceEvents}. The copy of the disks, with the {@link ResendLedger} of what the destination may lack
 * and the digests of what was sent: {@link DiskPasses}. HELLO and WELCOME, fresh or resuming:
 * {@link SourceHandshake}, with {@link ResumeSamples}. From pre-switchover to RUNNING: {@link Switchover}.
 * When a lost link is tried again: {@link RetryWindow}. One attempt's connection: {@link SourceStream}.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>An attempt that loses its link ({@link LinkLost}) after the destination welcomed this migration
 *       is followed by another, with backoff, for {@code retry-window}; the guest runs on meanwhile
 *       (a RAM migration under way is cancelled) and QEMU goes on recording its writes. A refusal,
 *       a failed check or a cancel is not retried.</li>
 *   <li>When the migration finally fails or is cancelled before COMMIT, what the next
 *       {@code migrate -r} needs stays as a {@link ResumePoint}.</li>
 *   <li>What stays here and not in a part: the attempts and their ends, the attempt's stream and the RAM
 *       tunnel, QEMU's block layer from start to stop ({@code tracking}), and the recovery; these decide the
 *       COMMIT rule and the order in which QEMU is undone, which reads best as one sequence. The parts log under this class's
 *       name, so the log reads as it did before they were split out.</li>
 * </ul>
 *
 * <p>Threads: {@link #start()} starts {@code migration-send} (the procedure below), whose streams start
 * {@code migration-recv} and the RAM tunnel's pump; {@link #close()} joins them. {@link #cancel},
 * {@link #maxBandwidth} and {@link #stats()} may be called from any thread.
 */
public final class MigrationSource implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    /**
     * Socket buffers of the stream. Whatever sits in them when QEMU pauses at pre-switchover must
     * drain inside the downtime: 4 MiB buffers on both ends cost ~170 ms of it under TCG, 1 MiB is
     * still several times a LAN's bandwidth-delay product.
     */
    static final int SOCKET_BUFFER = 1 << 20;
    /** How long {@link #cancel} lets the send thread notice the request before interrupting it. */
    static final long CANCEL_GRACE_MS = 500;

    private final String vmName;
    private final List<SourceDisk> disks;
    private final SourceVm vm;
    private final SourceBlocks blocks;
    private final MigrationRequest request;
    private final Path runtimeDir;
    private final MigrationStats stats = new MigrationStats();
    private final SourceStateMachine machine = new SourceStateMachine();
    private final SourceEvents events;
    private final DiskPasses passes;
    private final SourceHandshake handshake;
    private final Switchover switchover;
    private final RateLimiter limiter;
    private final RetryWindow retryWindow;
    /** The user's max-bandwidth; the switchover lifts the limiter's rate, a later attempt puts this back. */
    private volatile long bandwidthCap;
    private final Optional<ResumePoint> resumeFrom;
    private int granuleSize;   // the parameter, raised in freshHandshake() when the disks' digests need it
    private UUID migrationId = UUID.randomUUID();

    private Thread sendThread;
    private volatile SourceStream stream;
    /** Wire bytes of the attempts before the current one. */
    private volatile long earlierWireBytes;
    /** When QEMU's STOP arrived ({@link System#nanoTime}; 0: not seen), from QEMU's event thread. */
    private volatile long vmStoppedNs;
    private boolean tracking;
    /** The next attempt resumes (a later attempt, or {@code -r}). */
    private boolean resuming;
    /** Set when an attempt after a loss got WELCOME: the next loss starts a new retry window. */
    private boolean welcomedSinceLoss;
    /** Per disk, from WELCOME: the destination's image starts out all zero, so the bulk pass may skip holes. */
    private List<Boolean> fresh = List.of();
    private volatile ResumeInfo resumeInfo;
    private volatile ResumePoint kept;

    /**
     * @param resumeFrom {@code migrate -r}: what an interrupted migration left; its {@link ResumePoint#blocks()}
     *     must be {@code blocks}
     */
    public MigrationSource(String vmName, List<SourceDisk> disks, SourceVm vm, SourceBlocks blocks, MigrationRequest request,
                           MigrationParameters parameters, Path runtimeDir, Optional<ResumePoint> resumeFrom) {
        this.vmName = vmName;
        this.disks = List.copyOf(disks);
        this.vm = vm;
        this.blocks = blocks;
        this.request = request;
        this.runtimeDir = runtimeDir;
        this.limiter = new RateLimiter(parameters.maxBandwidthBytesPerSec());
        this.bandwidthCap = parameters.maxBandwidthBytesPerSec();
        this.retryWindow = new RetryWindow(parameters.retryWindowMs());
        this.granuleSize = parameters.granuleSize();
        this.resumeFrom = resumeFrom;
        this.events = new SourceEvents(machine, stats, vm::qemuLog, this::checkpointConfirmed);
        this.passes = new DiskPasses(disks, blocks, request, parameters.downtimeLimitMs(), stats, events, machine, this::startRam);
        this.handshake = new SourceHandshake(vmName, disks, request, vm, blocks, passes, events);
        this.switchover = new Switchover(request, vm, limiter, passes, events, machine, stats);
        if (resumeFrom.isPresent() && resumeFrom.get().blocks() != blocks) {
            throw new IllegalArgumentException("a resume must use the block layer its resume point kept tracking in");
        }
        long total = 0;
        for (SourceDisk disk : disks) {
            total += disk.size();
        }
        stats.diskTotalBytes(request.copyDisks() ? total : 0);
        stats.resume(() -> Optional.ofNullable(resumeInfo));
    }

    /** A fresh start. */
    public MigrationSource(String vmName, List<SourceDisk> disks, SourceVm vm, SourceBlocks blocks, MigrationRequest request,
                           MigrationParameters parameters, Path runtimeDir) {
        this(vmName, disks, vm, blocks, request, parameters, runtimeDir, Optional.empty());
    }

    public MigrationStats stats() {
        return stats;
    }

    /**
     * What {@code migrate -r} can go on from, once this migration failed or was cancelled before COMMIT
     * with the destination holding a partial state; empty otherwise (and while it runs).
     */
    public Optional<ResumePoint> resumePoint() {
        return Optional.ofNullable(kept);
    }

    /** Changes the stream's bandwidth cap while the migration runs. */
    public void maxBandwidth(long bytesPerSec) {
        bandwidthCap = bytesPerSec;
        limiter.rate(bytesPerSec);
        passes.cap(bytesPerSec);
    }

    public void start() {
        sendThread = Threads.unstartedVirtual("migration-send", this::run);
        sendThread.start();
    }

    /**
     * Asks the migration to stop; it ends CANCELLED with the source VM running (unless already
     * committed). The send thread sees the request between two runs of granules; when it does not
     * within {@link #CANCEL_GRACE_MS} (a send blocked on a destination that stopped reading, a long
     * wait for bandwidth) it is interrupted, which closes the stream. Returns within about a second.
     */
    public void cancel(String reason) {
        if (!machine.reached(SourceState.COMMITTED)) {
            stats.cancelling();                      // info migrate: cancelling, until the recovery ends it
        }
        events.add(new SourceEvent.CancelRequested(reason));
        Thread send = sendThread;
        if (send == null || Thread.currentThread() == send) {
            return;
        }
        try {
            if (!events.cancelSeenWithin(CANCEL_GRACE_MS) && !machine.reached(SourceState.COMMITTED)) {
                LOG.log(System.Logger.Level.INFO, "cancel: the migration thread is blocked; interrupting it");
                send.interrupt();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Where the migration is. */
    SourceState state() {
        return machine.state();
    }

    /**
     * True once COMMIT may have reached the destination: the VM may run there, so this paused copy
     * must not run again ({@code cont} is refused without {@code --force}).
     */
    public boolean handedOver() {
        return machine.handedOver();
    }

    /** Checkpoints every {@code bytes} of disk data instead of every 64 MiB (tests resume from small disks); before {@link #start}. */
    void checkpointEvery(long bytes) {
        passes.checkpointEvery(bytes);
    }

    /** Waits until the migration has finished; true when it did within the time. */
    public boolean await(long timeoutMs) throws InterruptedException {
        return sendThread.join(java.time.Duration.ofMillis(timeoutMs));
    }

    private void run() {
        try {
            List<Frame.DiskOffer> offers = handshake.offers();   // before connecting: a base's digest may take long, HELLO may not
            if (resumeFrom.isPresent()) {
                adopt(resumeFrom.get());
            }
            attempts(offers);
            machine.moveTo(SourceState.COMPLETED);
            stopTracking();                // QEMU holds nothing of Ferry's once `completed` is reported
            stats.phase(Phase.COMPLETE);
            stats.status(MigrationStatus.COMPLETED);
            LOG.log(System.Logger.Level.INFO, "migration of " + vmName + " completed in " + stats.elapsedMs() + " ms");
            closeStream(Optional.empty());
        } catch (Cancelled c) {
            recover(MigrationStatus.CANCELLED, "cancelled: " + c.getMessage(), Optional.of(new Frame.Cancel(c.getMessage())));
        } catch (MigrationException e) {
            // The destination's own ERROR, when it sent one, is the cause; what failed here followed from it.
            String reason = events.queuedPeerReason().map(r -> e.phase().label() + ": " + r).orElse(e.oneLine());
            recover(MigrationStatus.FAILED, reason, Optional.of(new Frame.Error(e.phase().label(), e.getMessage())));
        } catch (LinkLost e) {
            if (events.cancelReason().isPresent()) {
                recover(MigrationStatus.CANCELLED, "cancelled: " + events.cancelReason().get(), Optional.empty());
                return;
            }
            String reason = events.peerReason(stream).orElse(e.getMessage());
            recover(MigrationStatus.FAILED, e.phase().label() + ": " + reason, Optional.empty());
        } catch (InterruptedException e) {
            // Interrupted by a cancel whose send was blocked: the stream is stuck, so no farewell frame
            // (it would block the same way); the destination sees the stream end and cleans up.
            String reason = events.cancelReason().map(r -> "cancelled: " + r).orElse(stats.phase().label() + ": interrupted");
            recover(events.cancelReason().isPresent() ? MigrationStatus.CANCELLED : MigrationStatus.FAILED, reason, Optional.empty());
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "migration failed unexpectedly", t);
            String reason = stats.phase().label() + ": " + t;
            recover(MigrationStatus.FAILED, reason, Optional.of(new Frame.Error(stats.phase().label(), t.toString())));
        } finally {
            Thread.interrupted();          // a cancel's interrupt must not break the clean-up's QMP calls
            if (kept == null) {
                stopTracking();
            }
            vm.detach();
        }
    }

    /** {@code migrate -r}: goes on with the id, ledger and digests of the interrupted migration. */
    private void adopt(ResumePoint point) throws MigrationException {
        try {
            point.checkFits(request, disks);
        } catch (MigrationException e) {
            kept = point;                  // a -r with the wrong flags: the point stays for one with the right ones
            resumeInfo = point.info();
            throw e;
        }
        migrationId = point.migrationId();
        granuleSize = point.granuleSize();
        passes.adopt(point.ledger(), point.digests());
        tracking = true;                   // the point's bitmap is ours to remove or keep again
        handshake.adopted();
        resuming = true;
        LOG.log(System.Logger.Level.INFO, "resuming migration " + migrationId + ": " + point.info().owedBytes()
                + " bytes owed, plus what the guest wrote since " + point.info().since());
    }

    /**
     * Runs attempts until one completes. A lost link after the destination welcomed this migration is
     * followed by another attempt after a backoff, for {@code retry-window} from the first loss; a
     * reconnect that got as far as WELCOME opens a fresh window for a later loss.
     */
    private void attempts(List<Frame.DiskOffer> offers) throws Exception {
        while (true) {
            try {
                attempt(offers);
                return;
            } catch (LinkLost lost) {
                if (!handshake.destinationHoldsPartial() || !retryWindow.enabled() || events.cancelReason().isPresent()
                        || events.peerReason(stream).isPresent()) {
                    throw lost;            // with the destination's ERROR: it refused or a check failed there, no link blip
                }
                RetryWindow.Next next = retryWindow.lost(System.nanoTime(), Instant.now(), welcomedSinceLoss);
                welcomedSinceLoss = false;
                String cause = events.peerReason(stream).orElse(lost.getMessage());
                endAttempt();
                RetryWindow.Next.Retry retry = switch (next) {
                    case RetryWindow.Next.GiveUp giveUp -> throw new LinkLost(lost.phase(), cause + " (gave up after "
                            + retryWindow.windowMs() / 1000 + " s of reconnecting; `migrate -r` goes on from here)", lost);
                    case RetryWindow.Next.Retry r -> r;
                };
                resumeInfo = new ResumeInfo.Retrying(retry.failedAttempt(), retry.since(), Instant.now().plusMillis(retry.leftMs()), cause);
                LOG.log(System.Logger.Level.WARNING, "migration link lost (" + cause + "); reconnecting in " + retry.waitMs()
                        + " ms, attempt " + (retry.failedAttempt() + 1) + ", giving up in " + retry.leftSeconds() + " s");
                events.waitFor(retry.waitMs());              // a cancel meanwhile ends the migration
                resuming = true;
            }
        }
    }

    /** One attempt: connect, handshake (fresh or resuming), copy, switchover. */
    private void attempt(List<Frame.DiskOffer> offers) throws Exception {
        stats.phase(Phase.HANDSHAKE);
        machine.moveTo(SourceState.HANDSHAKE);
        SourceStream s = SourceStream.connect(request, limiter, events.queue(), stats::phase, handshake.destinationHoldsPartial());
        stream = s;
        stats.sources(passes::diskRemaining, () -> earlierWireBytes + s.writer().bytesWritten(), passes::writeLimitBytesPerSec,
                vm::ramStats);
        if (resuming) {
            List<BlockImage> readers = blocks.reopen();
            resumeHandshake(offers, readers);
            passes.copyResumed(s, readers, granuleSize, bandwidthCap);
        } else {
            freshHandshake(offers);
            if (request.copyDisks()) {
                tracking = true;                           // from here on stopTracking() must undo what start() added
                List<BlockImage> readers = blocks.start(granuleSize, request.incremental());   // tracking starts before the bulk reads
                passes.copyFresh(s, readers, granuleSize, bandwidthCap, fresh);
            } else {
                startRam();
                awaitPreSwitchoverWithoutDisks();
            }
        }
        switchover.run(s, vmStoppedNs);
    }

    /**
     * Ends an attempt whose link was lost, so that another may follow: the stream goes, QEMU's RAM
     * migration is cancelled and the VM runs on, the block layer keeps only its dirty tracking, and the
     * events of the old attempt are dropped (a cancel request stays).
     */
    private void endAttempt() throws MigrationException, InterruptedException {
        boolean ramStarted = machine.reached(SourceState.RAM);
        machine.moveTo(SourceState.INTERRUPTED);
        stats.phase(Phase.RETRY);
        closeStream(Optional.empty());
        SourceStream s = stream;
        if (s != null) {
            earlierWireBytes += s.writer().bytesWritten();
        }
        stream = null;
        passes.throttleLifted();
        limiter.rate(bandwidthCap);
        if (tracking) {
            blocks.suspend();                // the guest writes unthrottled while the link is down; QEMU records them
        }
        if (ramStarted) {
            vm.cancelRamMigration();
            vm.detach();
        }
        vm.resume();
        vmStoppedNs = 0;
        passes.attemptEnded();
        events.dropAttempt();
    }

    // ---- handshake --------------------------------------------------------------------------

    /** A fresh start: the granule size the disks need, HELLO, WELCOME. */
    private void freshHandshake(List<Frame.DiskOffer> offers) throws Exception {
        if (request.copyDisks()) {
            granuleSize = SourceHandshake.granuleFor(disks.stream().map(SourceDisk::size).toList(), granuleSize);
        }
        fresh = handshake.fresh(stream, offers, granuleSize, migrationId);
        stats.status(MigrationStatus.ACTIVE);
    }

    /** A later attempt (or {@code -r}): the resume claim, then the ledger goes on from the destination's checkpoint. */
    private void resumeHandshake(List<Frame.DiskOffer> offers, List<BlockImage> readers) throws Exception {
        long checkpoint = handshake.resume(stream, offers, granuleSize, migrationId, readers);
        welcomedSinceLoss = true;
        resumeInfo = null;
        stats.status(MigrationStatus.ACTIVE);
        LOG.log(System.Logger.Level.INFO, "resumed migration " + migrationId + " at the destination's checkpoint "
                + checkpoint + "; " + passes.ledger().owedBytes() + " bytes to send again");
    }

    // ---- RAM ----------------------------------------------------------------------------------

    private void startRam() throws MigrationException {
        stats.phase(Phase.RAM);
        Path socket = runtimeDir.resolve("ram-out.sock");
        RamTunnel tunnel = RamTunnel.listening(socket, stream.writer(), e -> events.add(new SourceEvent.Failure(Phase.RAM, e)));
        stream.tunnel(tunnel);
        try {
            tunnel.start();
        } catch (IOException e) {
            throw new MigrationException(Phase.RAM, "cannot listen for QEMU's migration stream at " + socket + ": " + e.getMessage(), e);
        }
        vm.startRamMigration(socket, new SourceVm.RamListener() {
            @Override public void ramStatus(RamStatus status) {
                events.add(new SourceEvent.RamStatusChanged(status));
            }

            @Override public void vmStopped(long atNs) {
                vmStoppedNs = atNs;
            }
        });
        machine.moveTo(SourceState.RAM);
        LOG.log(System.Logger.Level.INFO, "RAM migration started; disk remainder " + passes.remainingBytes() + " bytes");
    }

    private void awaitPreSwitchoverWithoutDisks() throws Exception {
        while (!machine.reached(SourceState.PRE_SWITCHOVER)) {
            events.waitFor(1000);
            stream.send(Phase.RAM, new Frame.PassEnd(0, 0));     // keeps the destination's read timeout at bay
        }
    }

    /** The destination confirmed checkpoint {@code number}: the ledger drops what it covers. */
    private void checkpointConfirmed(long number) {
        passes.confirmed(number);
    }

    // ---- failure ------------------------------------------------------------------------------

    private void recover(MigrationStatus finalStatus, String reason, Optional<Frame> farewell) {
        Thread.interrupted();              // a cancel's interrupt must not break the recovery's QMP calls
        resumeInfo = kept == null ? null : kept.info();   // a -r that did not fit its point keeps showing the point
        if (machine.reached(SourceState.COMMITTED)) {
            machine.end(SourceState.FAILED);
            String message = reason + "; the VM may already run on the destination, so the source stays paused"
                    + " (the VM must never run twice): check the destination, and only if it does not run, `cont --force` here";
            LOG.log(System.Logger.Level.ERROR, "migration failed after commit: " + message);
            closeStream(Optional.empty());
            stats.fail(MigrationStatus.FAILED, message);
            return;
        }
        LOG.log(System.Logger.Level.WARNING, "migration " + finalStatus.qemuName() + ": " + reason + "; resuming the source VM");
        boolean ramStarted = machine.reached(SourceState.RAM);
        machine.end(finalStatus == MigrationStatus.CANCELLED ? SourceState.CANCELLED : SourceState.FAILED);
        closeStream(farewell);
        StringBuilder message = new StringBuilder(reason);
        keepResumable(message);            // QEMU's exports and throttle go before the VM runs on; its bitmap may stay
        if (ramStarted) {
            try {
                vm.cancelRamMigration();
            } catch (MigrationException e) {
                message.append("; cancelling QEMU's migration failed: ").append(e.getMessage());
            }
        }
        try {
            vm.resume();
        } catch (MigrationException e) {
            message.append("; RESUMING THE SOURCE VM FAILED: ").append(e.getMessage());
        }
        stats.fail(finalStatus, message.toString());
    }

    /**
     * When the destination holds a partial state of this migration, keeps what {@code migrate -r} needs
     * (a {@link ResumePoint}: QEMU's dirty tracking goes on); otherwise removes everything from QEMU.
     */
    private void keepResumable(StringBuilder message) {
        if (tracking && handshake.destinationHoldsPartial() && passes.hasLedger()) {
            try {
                blocks.suspend();
                ResumePoint point = new ResumePoint(migrationId, granuleSize, request.incremental(),
                        disks.stream().map(SourceDisk::size).toList(), passes.ledger(), passes.digests(), blocks, Instant.now());
                kept = point;
                resumeInfo = point.info();
                message.append("; resumable: `migrate -r` sends only what the destination lacks (")
                        .append(point.info().owedBytes()).append(" bytes, and what the guest writes until then)");
                return;
            } catch (MigrationException e) {
                LOG.log(System.Logger.Level.ERROR, "keeping the migration resumable failed: " + e.getMessage());
            }
        }
        stopTracking();
    }

    private void closeStream(Optional<Frame> farewell) {
        SourceStream s = stream;
        if (s != null) {
            s.close(farewell);
        }
    }

    /** Removes what the migration added to QEMU's block layer (bitmaps, export, throttle); once. */
    private void stopTracking() {
        if (!tracking) {
            return;
        }
        tracking = false;
        passes.throttleLifted();
        try {
            blocks.stop();
        } catch (MigrationException e) {
            LOG.log(System.Logger.Level.ERROR, "removing the migration's bitmaps and exports from QEMU failed: " + e.getMessage()
                    + " (query-block and query-block-exports show what is left; it does no harm to the guest)");
            stats.cleanupFailed(e.getMessage());
        }
    }

    @Override
    public void close() throws InterruptedException {
        cancel("closed");
        if (sendThread != null) {
            sendThread.join();
        }
        closeStream(Optional.empty());
    }
}
