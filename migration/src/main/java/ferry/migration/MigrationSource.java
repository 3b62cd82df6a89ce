package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.linux.Threads;
import ferry.migration.wire.Frame;
import ferry.migration.wire.MigrationWire;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

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
 * the migration runs (and, between attempts, keeps only the dirty tracking). Where the source is:
 * {@link SourceState}. One attempt's connection: {@link SourceStream}. What the destination may lack:
 * {@link ResendLedger}.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>An attempt that loses its link ({@link LinkLost}) after the destination welcomed this migration
 *       is followed by another, with backoff, for {@code retry-window}; the guest runs on meanwhile
 *       (a RAM migration under way is cancelled) and QEMU goes on recording its writes. A refusal,
 *       a failed check or a cancel is not retried.</li>
 *   <li>When the migration finally fails or is cancelled before COMMIT, what the next
 *       {@code migrate -r} needs stays as a {@link ResumePoint}.</li>
 * </ul>
 *
 * <p>Threads: {@link #start()} starts {@code migration-send} (the procedure below), whose streams start
 * {@code migration-recv} and the RAM tunnel's pump; {@link #close()} joins them. {@link #cancel},
 * {@link #maxBandwidth} and {@link #stats()} may be called from any thread.
 */
public final class MigrationSource implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    private static final long WELCOME_TIMEOUT_MS = 120_000;
    private static final long VERIFY_TIMEOUT_MS = 120_000;
    private static final long DEST_READY_TIMEOUT_MS = 300_000;
    private static final long RUNNING_TIMEOUT_MS = 60_000;
    /** Pause between dirty passes once the remainder is small, so an idle guest costs no busy loop. */
    private static final long IDLE_PASS_INTERVAL_MS = 20;
    /**
     * Socket buffers of the stream. Whatever sits in them when QEMU pauses at pre-switchover must
     * drain inside the downtime: 4 MiB buffers on both ends cost ~170 ms of it under TCG, 1 MiB is
     * still several times a LAN's bandwidth-delay product.
     */
    static final int SOCKET_BUFFER = 1 << 20;
    private static final long UNCAPPED_BYTES_PER_SEC = 1L << 40;
    /** How long {@link #cancel} lets the send thread notice the request before interrupting it. */
    static final long CANCEL_GRACE_MS = 500;
    /** QEMU's dirty count is asked at most this often during a pass (one QMP round trip each). */
    private static final long REMAINING_CHECK_INTERVAL_NS = 250_000_000L;
    /** The first wait before reconnecting; it doubles up to {@link #MAX_RETRY_BACKOFF_MS}. */
    static final long FIRST_RETRY_BACKOFF_MS = 500;
    static final long MAX_RETRY_BACKOFF_MS = 8_000;
    /** Granules per disk a resume samples for the destination to compare ({@link MigrationWire#MAX_SAMPLES} at most). */
    static final int RESUME_SAMPLES = 64;

    private final String vmName;
    private final List<SourceDisk> disks;
    private final SourceVm vm;
    private final SourceBlocks blocks;
    private final MigrationRequest request;
    private final Path runtimeDir;
    private final MigrationStats stats = new MigrationStats();
    private final BlockingQueue<SourceEvent> events = new LinkedBlockingQueue<>();
    private final RateLimiter limiter;
    private final long downtimeLimitMs;
    private final long retryWindowMs;
    /** The user's max-bandwidth; the switchover lifts the limiter's rate, a later attempt puts this back. */
    private volatile long bandwidthCap;
    private final Optional<ResumePoint> resumeFrom;
    private int granuleSize;   // the parameter, raised in handshake() when the disks' digests need it
    private UUID migrationId = UUID.randomUUID();

    private Thread sendThread;
    private volatile SourceStream stream;
    /** Wire bytes of the attempts before the current one. */
    private volatile long earlierWireBytes;
    private List<GranuleDigests> digests = new ArrayList<>();
    private final List<BlockSender> senders = new ArrayList<>();
    private ResendLedger ledger;
    private final java.util.concurrent.CountDownLatch cancelSeen = new java.util.concurrent.CountDownLatch(1);
    private volatile Convergence convergence;
    private volatile SourceState state = SourceState.CONNECTING;
    /** QEMU's count of bytes dirtied since the last pass, refreshed by the send thread (info migrate reads it). */
    private volatile long remainingBytes;
    /** While the bulk pass runs: the disk bytes transferred when it will be done ({@code -1}: no bulk pass runs). */
    private volatile long bulkEndTransferred = -1;
    private volatile long bulkLaterDisksBytes;
    /** When QEMU's STOP arrived ({@link System#nanoTime}; 0: not seen), from QEMU's event thread. */
    private volatile long vmStoppedNs;
    private long remainingCheckedNs;
    private volatile long writeLimitBytesPerSec;
    private boolean tracking;
    /** The destination welcomed this migration's disks: it keeps a partial state that another attempt can go on from. */
    private boolean destinationHoldsPartial;
    /** The next attempt resumes (a later attempt, or {@code -r}). */
    private boolean resuming;
    private boolean bulkRunning;
    private long lastPassBytes;
    private long lastPassMs;
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
        this.downtimeLimitMs = parameters.downtimeLimitMs();
        this.retryWindowMs = parameters.retryWindowMs();
        this.granuleSize = parameters.granuleSize();
        this.resumeFrom = resumeFrom;
        if (resumeFrom.isPresent() && resumeFrom.get().blocks() != blocks) {
            throw new IllegalArgumentException("a resume must use the block layer its resume point kept tracking in");
        }
        long total = 0;
        for (SourceDisk disk : disks) {
            total += disk.size();
        }
        stats.diskTotalBytes(request.copyDisks() ? total : 0);
        stats.resume(() -> Optional.ofNullable(resumeInfo));
        remainingBytes = request.copyDisks() ? total : 0;     // nothing copied yet: 0 % until the bulk pass says more
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
        Convergence c = convergence;
        if (c != null) {
            c.cap(bytesPerSec);
        }
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
        if (!state.reached(SourceState.COMMITTED)) {
            stats.cancelling();                      // info migrate: cancelling, until the recovery ends it
        }
        events.add(new SourceEvent.CancelRequested(reason));
        Thread send = sendThread;
        if (send == null || Thread.currentThread() == send) {
            return;
        }
        try {
            if (!cancelSeen.await(CANCEL_GRACE_MS, TimeUnit.MILLISECONDS) && !state.reached(SourceState.COMMITTED)) {
                LOG.log(System.Logger.Level.INFO, "cancel: the migration thread is blocked; interrupting it");
                send.interrupt();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Where the migration is. */
    SourceState state() {
        return state;
    }

    /**
     * True once COMMIT may have reached the destination: the VM may run there, so this paused copy
     * must not run again ({@code cont} is refused without {@code --force}).
     */
    public boolean handedOver() {
        return handedOver;
    }

    private volatile boolean handedOver;

    private void moveTo(SourceState next) {
        if (!state.mayMoveTo(next)) {
            throw new IllegalStateException("source state machine: " + state + " -> " + next + " is not a transition");
        }
        LOG.log(System.Logger.Level.DEBUG, "source state " + state + " -> " + next);
        state = next;
    }

    private long checkpointBytes = ResendLedger.CHECKPOINT_BYTES;

    /** Checkpoints every {@code bytes} of disk data instead of every 64 MiB (tests resume from small disks); before {@link #start}. */
    void checkpointEvery(long bytes) {
        this.checkpointBytes = bytes;
    }

    /** Waits until the migration has finished; true when it did within the time. */
    public boolean await(long timeoutMs) throws InterruptedException {
        return sendThread.join(java.time.Duration.ofMillis(timeoutMs));
    }

    private void run() {
        try {
            List<Frame.DiskOffer> offers = offers();   // before connecting: a base's digest may take long, HELLO may not
            if (resumeFrom.isPresent()) {
                adopt(resumeFrom.get());
            }
            attempts(offers);
            moveTo(SourceState.COMPLETED);
            stopTracking();                // QEMU holds nothing of Ferry's once `completed` is reported
            stats.phase(Phase.COMPLETE);
            stats.status(MigrationStatus.COMPLETED);
            LOG.log(System.Logger.Level.INFO, "migration of " + vmName + " completed in " + stats.elapsedMs() + " ms");
            closeStream(Optional.empty());
        } catch (Cancelled c) {
            recover(MigrationStatus.CANCELLED, "cancelled: " + c.getMessage(), Optional.of(new Frame.Cancel(c.getMessage())));
        } catch (MigrationException e) {
            // The destination's own ERROR, when it sent one, is the cause; what failed here followed from it.
            String reason = queuedPeerReason().map(r -> e.phase().label() + ": " + r).orElse(e.oneLine());
            recover(MigrationStatus.FAILED, reason, Optional.of(new Frame.Error(e.phase().label(), e.getMessage())));
        } catch (LinkLost e) {
            if (cancelReason().isPresent()) {
                recover(MigrationStatus.CANCELLED, "cancelled: " + cancelReason().get(), Optional.empty());
                return;
            }
            String reason = peerReason().orElse(e.getMessage());
            recover(MigrationStatus.FAILED, e.phase().label() + ": " + reason, Optional.empty());
        } catch (InterruptedException e) {
            // Interrupted by a cancel whose send was blocked: the stream is stuck, so no farewell frame
            // (it would block the same way); the destination sees the stream end and cleans up.
            String reason = cancelReason().map(r -> "cancelled: " + r).orElse(stats.phase().label() + ": interrupted");
            recover(cancelReason().isPresent() ? MigrationStatus.CANCELLED : MigrationStatus.FAILED, reason, Optional.empty());
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
        ledger = point.ledger();
        digests = new ArrayList<>(point.digests());
        tracking = true;                   // the point's bitmap is ours to remove or keep again
        destinationHoldsPartial = true;
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
        long giveUpAtNs = 0;
        Instant retryingSince = null;
        int attempt = 0;
        long backoffMs = FIRST_RETRY_BACKOFF_MS;
        while (true) {
            attempt++;
            try {
                attempt(offers);
                return;
            } catch (LinkLost lost) {
                if (!destinationHoldsPartial || retryWindowMs == 0 || cancelReason().isPresent() || peerReason().isPresent()) {
                    throw lost;            // with the destination's ERROR: it refused or a check failed there, no link blip
                }
                long now = System.nanoTime();
                if (giveUpAtNs == 0 || welcomedSinceLoss) {
                    giveUpAtNs = now + TimeUnit.MILLISECONDS.toNanos(retryWindowMs);
                    retryingSince = Instant.now();
                    backoffMs = FIRST_RETRY_BACKOFF_MS;
                    attempt = 1;
                }
                welcomedSinceLoss = false;
                String cause = peerReason().orElse(lost.getMessage());
                endAttempt();
                if (now >= giveUpAtNs) {
                    throw new LinkLost(lost.phase(), cause + " (gave up after " + retryWindowMs / 1000 + " s of reconnecting;"
                            + " `migrate -r` goes on from here)", lost);
                }
                long waitMs = Math.min(backoffMs, TimeUnit.NANOSECONDS.toMillis(giveUpAtNs - now));
                resumeInfo = new ResumeInfo.Retrying(attempt, retryingSince,
                        Instant.now().plusMillis(TimeUnit.NANOSECONDS.toMillis(giveUpAtNs - now)), cause);
                LOG.log(System.Logger.Level.WARNING, "migration link lost (" + cause + "); reconnecting in " + waitMs + " ms, attempt "
                        + (attempt + 1) + ", giving up in " + TimeUnit.NANOSECONDS.toSeconds(giveUpAtNs - now) + " s");
                waitEvents(waitMs);                          // a cancel meanwhile ends the migration
                backoffMs = Math.min(MAX_RETRY_BACKOFF_MS, backoffMs * 2);
                resuming = true;
            }
        }
    }

    /** Set when an attempt after a loss got WELCOME: the next loss starts a new retry window. */
    private boolean welcomedSinceLoss;

    /** One attempt: connect, handshake (fresh or resuming), copy, switchover. */
    private void attempt(List<Frame.DiskOffer> offers) throws Exception {
        stats.phase(Phase.HANDSHAKE);
        moveTo(SourceState.HANDSHAKE);
        SourceStream s = SourceStream.connect(request, limiter, events, stats::phase, destinationHoldsPartial);
        stream = s;
        stats.sources(this::diskRemaining, () -> earlierWireBytes + s.writer().bytesWritten(), () -> writeLimitBytesPerSec,
                vm::ramStats);
        if (resuming) {
            List<BlockImage> readers = blocks.reopen();
            resumeHandshake(offers, readers);
            copyDisks(readers);
        } else {
            handshake(offers);
            if (request.copyDisks()) {
                tracking = true;                           // from here on stopTracking() must undo what start() added
                copyDisks(blocks.start(granuleSize, request.incremental()));   // tracking starts before the bulk reads
            } else {
                startRam();
                awaitPreSwitchoverWithoutDisks();
            }
        }
        switchover();
    }

    /**
     * Ends an attempt whose link was lost, so that another may follow: the stream goes, QEMU's RAM
     * migration is cancelled and the VM runs on, the block layer keeps only its dirty tracking, and the
     * events of the old attempt are dropped (a cancel request stays).
     */
    private void endAttempt() throws MigrationException, InterruptedException {
        boolean ramStarted = state.reached(SourceState.RAM);
        moveTo(SourceState.INTERRUPTED);
        stats.phase(Phase.RETRY);
        closeStream(Optional.empty());
        SourceStream s = stream;
        if (s != null) {
            earlierWireBytes += s.writer().bytesWritten();
        }
        stream = null;
        writeLimitBytesPerSec = 0;
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
        senders.clear();
        bulkEndTransferred = -1;
        events.removeIf(event -> !(event instanceof SourceEvent.CancelRequested));
    }

    /** The user's cancel reason, when a cancel was asked for (also when it interrupted the send thread). */
    private Optional<String> cancelReason() {
        for (SourceEvent event : events) {
            if (event instanceof SourceEvent.CancelRequested(String reason)) {
                return Optional.of(reason);
            }
        }
        return cancelled == null ? Optional.empty() : Optional.of(cancelled);
    }

    private volatile String cancelled;

    /**
     * When a send fails because the destination closed the stream, the destination usually said why
     * first (an ERROR frame the receiver thread queued): that reason beats "broken pipe".
     */
    private Optional<String> peerReason() {
        try {
            SourceStream s = stream;
            if (s != null) {
                s.awaitReceiver(1000);            // let it queue what it read before the close
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return queuedPeerReason();
    }

    /** The destination's ERROR among the events already queued, without waiting for more. */
    private Optional<String> queuedPeerReason() {
        for (SourceEvent event : events) {
            if (event instanceof SourceEvent.PeerFrame(Frame.Error error)) {
                return Optional.of("destination failed in " + error.phase() + ": " + error.message());
            }
        }
        for (SourceEvent event : events) {
            if (event instanceof SourceEvent.Failure(Phase phase, javax.net.ssl.SSLException refused)) {
                return Optional.of(refused.getMessage());     // a TLS alert, in Ferry's words (TlsText)
            }
        }
        return Optional.empty();
    }

    // ---- setup --------------------------------------------------------------------------------

    private List<Frame.DiskOffer> offers() throws MigrationException {
        List<Frame.DiskOffer> offers = new ArrayList<>();
        for (SourceDisk disk : disks) {
            Optional<Frame.BaseIdentity> base = Optional.empty();
            if (request.incremental() && disk.base().isPresent()) {
                long startNs = System.nanoTime();
                base = Optional.of(disk.base().get().identity());
                LOG.log(System.Logger.Level.INFO, "base of " + disk.id() + " hashed in " + sinceMs(startNs) + " ms");
            }
            offers.add(new Frame.DiskOffer(disk.id(), disk.size(), disk.format(), base));
        }
        return offers;
    }

    private void handshake(List<Frame.DiskOffer> offers) throws Exception {
        if (request.copyDisks()) {
            granuleSize = granuleFor(disks.stream().map(SourceDisk::size).toList(), granuleSize);
        }
        send(Phase.HANDSHAKE, new Frame.Hello(MigrationWire.VERSION, vmName, granuleSize, request.copyDisks(),
                request.incremental(), offers, vm.fingerprint(), migrationId, Optional.empty()));
        Frame.Welcome welcome = awaitFrame(Frame.Welcome.class, WELCOME_TIMEOUT_MS, "the destination's WELCOME");
        if (request.copyDisks() && welcome.freshDisks().size() != disks.size()) {
            throw new MigrationException(Phase.HANDSHAKE, "destination prepared " + welcome.freshDisks().size()
                    + " disks, source has " + disks.size());
        }
        this.fresh = welcome.freshDisks();
        destinationHoldsPartial = request.copyDisks();
        stats.status(MigrationStatus.ACTIVE);
    }

    /**
     * A later attempt (or {@code -r}): samples granules the destination must hold as they are here, takes
     * the guest's writes since the last pass began, and asks the destination to go on. The destination
     * answers with the checkpoint its journal holds; everything sent after it is sent again.
     */
    private void resumeHandshake(List<Frame.DiskOffer> offers, List<BlockImage> readers) throws Exception {
        List<List<Frame.Sample>> samples = new ArrayList<>();
        for (int i = 0; i < disks.size(); i++) {
            samples.add(sample(i, readers.get(i)));
        }
        List<DirtySnapshot> since = blocks.takeDirty();      // after the sample reads: a write racing them is in here
        for (int i = 0; i < disks.size(); i++) {
            DirtySnapshot written = since.get(i);
            samples.set(i, samples.get(i).stream().filter(s -> !written.isDirty(s.granule())).toList());
            ledger.planned(i, written);      // at once: QEMU no longer holds these, and this attempt may fail before WELCOME
        }
        send(Phase.HANDSHAKE, new Frame.Hello(MigrationWire.VERSION, vmName, granuleSize, true, request.incremental(), offers,
                vm.fingerprint(), migrationId, Optional.of(new Frame.ResumeClaim(ledger.lastConfirmed(), samples))));
        Frame.Welcome welcome;
        try {
            welcome = awaitFrame(Frame.Welcome.class, WELCOME_TIMEOUT_MS, "the destination's WELCOME");
        } catch (MigrationException refused) {
            destinationHoldsPartial = false;                 // it holds nothing to go on from: the next migrate starts over
            throw refused;
        }
        ledger.resumeAt(welcome.checkpoint());
        welcomedSinceLoss = true;
        resumeInfo = null;
        stats.status(MigrationStatus.ACTIVE);
        LOG.log(System.Logger.Level.INFO, "resumed migration " + migrationId + " at the destination's checkpoint "
                + welcome.checkpoint() + "; " + ledger.owedBytes() + " bytes to send again");
    }

    /**
     * Up to {@link #RESUME_SAMPLES} granules of disk {@code index} that the destination must hold exactly as this
     * disk does now: recorded as sent, and owed neither as unsent nor as unconfirmed.
     */
    private List<Frame.Sample> sample(int index, BlockImage reader) throws MigrationException {
        GranuleDigests d = digests.get(index);
        DirtySnapshot owed = ledger.owed(index);
        java.util.random.RandomGenerator random = java.util.concurrent.ThreadLocalRandom.current();
        java.util.TreeSet<Long> chosen = new java.util.TreeSet<>();
        long granules = (disks.get(index).size() + granuleSize - 1) / granuleSize;
        for (int tries = 0; tries < RESUME_SAMPLES * 4 && chosen.size() < RESUME_SAMPLES; tries++) {
            long g = d.nextRecorded(random.nextLong(granules));
            if (g < 0) {
                g = d.nextRecorded(0);
            }
            if (g < 0) {
                break;                                       // nothing recorded yet
            }
            if (!owed.isDirty(g)) {
                chosen.add(g);
            }
        }
        List<Frame.Sample> samples = new ArrayList<>();
        ByteBuffer buffer = ByteBuffer.allocateDirect(granuleSize);
        for (long g : chosen) {
            int length = d.granuleLength(g);
            buffer.clear().limit(length);
            try {
                reader.read(g * granuleSize, buffer);
            } catch (ImageException e) {
                throw new MigrationException(Phase.HANDSHAKE, "reading disk " + disks.get(index).id() + " for the resume check failed: "
                        + e.getMessage(), e);
            }
            buffer.flip();
            samples.add(new Frame.Sample(g, GranuleDigests.digestOfGranule(buffer)));
        }
        return samples;
    }

    private List<Boolean> fresh = List.of();

    /**
     * The granule-size parameter, doubled until the disks' group digests fit one DISKS_DONE frame: 4 KiB
     * granules do up to about 16 TiB of disks, larger ones need coarser granules (more bytes resent per
     * guest write, half the bitmap and digest memory per doubling).
     */
    static int granuleFor(List<Long> sizes, int wanted) throws MigrationException {
        int granule = MigrationWire.smallestGranuleFor(sizes, wanted);
        if (granule < 0) {
            throw new MigrationException(Phase.HANDSHAKE, "the disks are too large to migrate: " + sizes.stream().mapToLong(s -> s).sum()
                    + " bytes need more digests than one DISKS_DONE frame carries even at granule-size " + MigrationWire.MAX_GRANULE_SIZE);
        }
        if (granule != wanted) {
            LOG.log(System.Logger.Level.INFO, "granule-size " + wanted + " raised to " + granule + " for this migration: the digests of "
                    + sizes.stream().mapToLong(s -> s).sum() + " bytes of disks must fit one DISKS_DONE frame");
        }
        return granule;
    }

    // ---- disks --------------------------------------------------------------------------------

    /**
     * The copy: a bulk pass on a fresh start, or a resume pass of what the destination lacks on a later
     * attempt, then dirty passes until QEMU pauses the VM at pre-switchover.
     */
    private void copyDisks(List<BlockImage> readers) throws Exception {
        convergence = new Convergence(bandwidthCap, System.nanoTime());
        if (!resuming) {
            ledger = new ResendLedger(disks.stream().map(SourceDisk::size).toList(), granuleSize, checkpointBytes, System.nanoTime());
            digests.clear();
            for (SourceDisk disk : disks) {
                digests.add(new GranuleDigests(disk.size(), granuleSize));
            }
        }
        senders.clear();
        for (int i = 0; i < disks.size(); i++) {
            BlockSender sender = new BlockSender(i, readers.get(i), digests.get(i), stream.writer(), stats, ledger);
            sender.afterEachRun(this::afterRun);
            senders.add(sender);
        }
        moveTo(SourceState.COPYING);
        if (resuming) {
            resumePass();
        } else {
            bulkPass(readers);
        }
        int pass = 0;
        while (!state.reached(SourceState.PRE_SWITCHOVER)) {
            pass++;
            dirtyPass(pass);
            drainEvents();
            long remaining = refreshRemaining();
            stats.expectedDowntimeMs(convergence.expectedDowntimeMs(remaining));
            if (state == SourceState.COPYING && convergence.readyForRam(remaining, downtimeLimitMs)) {
                startRam();
            }
            limitWrites(convergence.afterPass(pass, remaining));
            if (!state.reached(SourceState.PRE_SWITCHOVER) && remaining < 4L * granuleSize * 256) {
                waitEvents(IDLE_PASS_INTERVAL_MS);
            }
        }
    }

    private void bulkPass(List<BlockImage> readers) throws Exception {
        stats.phase(Phase.BULK_COPY);
        stats.dirtyPass(0);
        long start = System.nanoTime();
        long wireBefore = wire();
        List<BulkPlan> plans = new ArrayList<>();
        for (int i = 0; i < disks.size(); i++) {
            BulkPlan plan;
            try {
                plan = BulkPlan.of(readers.get(i), granuleSize, request.incremental(), fresh.get(i));
            } catch (ImageException e) {
                throw new MigrationException(Phase.BULK_COPY, "reading the allocation map of disk " + disks.get(i).id() + " failed: "
                        + e.getMessage(), e);
            }
            ledger.planned(i, plan.data());
            ledger.planned(i, plan.zero());
            plans.add(plan);
            LOG.log(System.Logger.Level.INFO, "bulk pass: disk=" + disks.get(i).id() + " data=" + plan.dataBytes()
                    + " bytes, zero granules=" + plan.zero().count());
        }
        for (int i = 0; i < disks.size(); i++) {
            sendZeroes(i, plans.get(i).zero());
            long later = 0;
            for (int j = i + 1; j < disks.size(); j++) {
                later += plans.get(j).dataBytes();
            }
            bulkLaterDisksBytes = later;
            bulkEndTransferred = stats.diskTransferredBytes() + plans.get(i).dataBytes();
            bulkRunning = true;
            try {
                sendSet(i, plans.get(i).data());
            } finally {
                bulkRunning = false;
            }
            drainEvents();
        }
        convergence.passSent(wire() - wireBefore, System.nanoTime() - start);
        refreshRemaining();
        bulkEndTransferred = -1;
        send(Phase.BULK_COPY, new Frame.PassEnd(0, remainingBytes));
        checkpointIfDue();
    }

    /** After a reconnect: what the destination lacks, the ledger's unsent set (which now holds every owed granule). */
    private void resumePass() throws Exception {
        stats.phase(Phase.RESUME);
        stats.dirtyPass(0);
        long start = System.nanoTime();
        long wireBefore = wire();
        long diskBefore = stats.diskTransferredBytes();
        for (int i = 0; i < disks.size(); i++) {
            sendSet(i, ledger.unsent(i));
            drainEvents();
        }
        convergence.passSent(wire() - wireBefore, System.nanoTime() - start);
        send(Phase.RESUME, new Frame.PassEnd(0, refreshRemaining()));
        checkpointIfDue();
        LOG.log(System.Logger.Level.INFO, "resume pass: " + (stats.diskTransferredBytes() - diskBefore) + " bytes of disk data in "
                + sinceMs(start) + " ms");
    }

    /**
     * What is left to copy of the disks, for {@code info migrate} ("remaining disk", the progress and the ETA):
     * during the bulk pass, the data of the disk being copied not sent yet and all of the disks after it
     * (holes and zero ranges the plan skips are done: a sparse disk reaches 100 %); afterwards, the dirty bytes
     * of the last check.
     */
    private long diskRemaining() {
        long bulkEnd = bulkEndTransferred;
        if (bulkEnd >= 0) {
            return Math.max(0, bulkEnd - stats.diskTransferredBytes()) + bulkLaterDisksBytes;
        }
        return remainingBytes;
    }

    /** After each run sent: a due checkpoint; during the bulk pass, a cancel is seen at once and a long pass may throttle the guest. */
    private void afterRun() throws RunCheckFailed, InterruptedException {
        try {
            checkpointIfDue();
            if (bulkRunning) {
                drainEvents();
                long now = System.nanoTime();
                if (now - remainingCheckedNs >= REMAINING_CHECK_INTERVAL_NS) {
                    limitWrites(convergence.duringBulk(refreshRemaining(), now));
                }
            }
        } catch (MigrationException | Cancelled | LinkLost e) {
            throw new RunCheckFailed(e);
        }
    }

    /** Carries a failure, a lost link or a cancel out of {@link BlockSender}'s run loop, which only passes I/O exceptions on. */
    private static final class RunCheckFailed extends IOException {
        private final Exception cause;

        RunCheckFailed(Exception cause) {
            super(cause.getMessage(), cause);
            this.cause = cause;
        }
    }

    /** Sends the granules of {@code set} of disk {@code i}: a read that fails is a failure, a send that fails the link lost. */
    private void sendSet(int i, DirtySnapshot set) throws Exception {
        try {
            senders.get(i).sendData(set);
        } catch (RunCheckFailed stop) {
            throw stop.cause;
        } catch (ImageException e) {
            throw new MigrationException(stats.phase(), "reading disk " + disks.get(i).id() + " through QEMU failed: " + e.getMessage(), e);
        } catch (IOException e) {
            throw new LinkLost(stats.phase(), "sending disk " + disks.get(i).id() + " to the destination failed: " + e.getMessage(), e);
        }
    }

    private void sendZeroes(int i, DirtySnapshot set) throws LinkLost, InterruptedException {
        try {
            senders.get(i).sendZeroes(set);
        } catch (IOException e) {
            throw new LinkLost(stats.phase(), "sending disk " + disks.get(i).id() + " to the destination failed: " + e.getMessage(), e);
        }
    }

    /** Sends a CHECKPOINT when the ledger says one is due. */
    private void checkpointIfDue() throws LinkLost, InterruptedException {
        long now = System.nanoTime();
        if (ledger.checkpointDue(now)) {
            send(stats.phase(), new Frame.Checkpoint(ledger.checkpoint(now)));
        }
    }

    private long wire() {
        return stream.writer().bytesWritten();
    }

    private void dirtyPass(int pass) throws Exception {
        stats.phase(Phase.ITERATE);
        stats.dirtyPass(pass);
        long start = System.nanoTime();
        long wireBefore = wire();
        long found = 0;
        List<DirtySnapshot> dirty = blocks.takeDirty();      // a fresh set starts BEFORE these granules are read
        for (int i = 0; i < senders.size(); i++) {
            ledger.planned(i, dirty.get(i));                 // every disk's before any send: a lost link keeps them all
        }
        for (int i = 0; i < senders.size(); i++) {
            found += dirty.get(i).bytes();
            sendSet(i, dirty.get(i));
        }
        convergence.snapshotTaken(found, start);
        convergence.passSent(wire() - wireBefore, System.nanoTime() - start);
        stats.rates(convergence.bandwidthBytesPerSec(), convergence.dirtyRateBytesPerSec());
        send(Phase.ITERATE, new Frame.PassEnd(pass, refreshRemaining()));
        checkpointIfDue();
    }

    /** Asks QEMU how much the guest dirtied since the last pass. */
    private long refreshRemaining() throws MigrationException {
        remainingBytes = blocks.dirtyBytes();
        remainingCheckedNs = System.nanoTime();
        return remainingBytes;
    }

    /** Changes QEMU's limit on guest writes when the controller's figure changed (0: the user's own settings). */
    private void limitWrites(long bytesPerSec) throws MigrationException {
        if (bytesPerSec != writeLimitBytesPerSec) {
            blocks.throttleWrites(bytesPerSec);
            writeLimitBytesPerSec = bytesPerSec;
            LOG.log(System.Logger.Level.INFO, bytesPerSec > 0 ? "guest writes limited to " + bytesPerSec + " bytes/s"
                    : "guest write limit lifted");
        }
    }

    private static long sinceMs(long startNs) {
        return (System.nanoTime() - startNs) / 1_000_000;
    }

    // ---- RAM and switchover -------------------------------------------------------------------

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
        moveTo(SourceState.RAM);
        LOG.log(System.Logger.Level.INFO, "RAM migration started; disk remainder " + remainingBytes + " bytes");
    }

    private void awaitPreSwitchoverWithoutDisks() throws Exception {
        while (!state.reached(SourceState.PRE_SWITCHOVER)) {
            waitEvents(1000);
            send(Phase.RAM, new Frame.PassEnd(0, 0));     // keeps the destination's read timeout at bay
        }
    }

    private void switchover() throws Exception {
        long pausedNs = System.nanoTime();
        long stoppedNs = vmStoppedNs != 0 ? vmStoppedNs : pausedNs;   // QEMU's STOP comes just before pre-switchover
        stats.phase(Phase.SWITCHOVER);
        // The VM is paused: the bandwidth cap would only lengthen the downtime (QEMU lifts its own
        // rate limit at this point too); a later attempt gets the cap back (endAttempt).
        limiter.rate(UNCAPPED_BYTES_PER_SEC);
        if (request.copyDisks()) {
            long wireStart = wire();
            List<DirtySnapshot> last = blocks.takeDirty();     // QEMU has drained the guest's disk I/O: nothing follows
            for (int i = 0; i < disks.size(); i++) {
                ledger.planned(i, last.get(i));               // every disk's before any send: a lost link keeps them all
            }
            for (int i = 0; i < disks.size(); i++) {
                sendSet(i, last.get(i));
            }
            List<int[]> groups = new ArrayList<>();
            for (GranuleDigests d : digests) {
                groups.add(d.groupDigests());
            }
            send(Phase.SWITCHOVER, new Frame.DisksDone(groups));
            moveTo(SourceState.DISKS_SENT);
            lastPassBytes = wire() - wireStart;
            lastPassMs = sinceMs(pausedNs);
        }
        // The device state goes out while the destination flushes and compares digests: the destination
        // runs the VM only on COMMIT, and COMMIT waits for VERIFIED, so nothing runs on unverified disks.
        vm.continueSwitchover();
        if (!request.copyDisks()) {
            moveTo(SourceState.VERIFIED);                  // shared disks: nothing to verify
        }
        awaitState(SourceState.VERIFIED, VERIFY_TIMEOUT_MS, "the destination's digest verification");
        long verifiedMs = sinceMs(pausedNs);
        awaitState(SourceState.DEST_READY, DEST_READY_TIMEOUT_MS, "the destination QEMU to receive the device state");
        long deviceStateMs = sinceMs(pausedNs);
        moveTo(SourceState.COMMITTED);                     // before the send: a COMMIT that may have left counts as sent
        handedOver = true;
        send(Phase.SWITCHOVER, new Frame.Commit());
        awaitFrame(Frame.Running.class, RUNNING_TIMEOUT_MS, "the destination to confirm that the VM runs");
        long switchoverMs = sinceMs(pausedNs);
        // The guest's downtime: from the source QEMU's STOP to the destination's RUNNING (sent once its QEMU
        // resumed), both as this host saw them. Measured from pre-switchover it left out the time between
        // QEMU pausing the VM and Ferry handling the event, and under-reported.
        long downtimeMs = sinceMs(stoppedNs);
        stats.downtimeMs(downtimeMs);
        // One line that says where the downtime went (times from QEMU's pre-switchover event).
        LOG.log(System.Logger.Level.INFO, String.format(java.util.Locale.ROOT, "switchover: VM stopped %d ms before"
                + " pre-switchover, last pass %d bytes sent at +%d ms, disks verified at +%d ms, device state in the destination"
                + " QEMU at +%d ms, destination running at +%d ms; downtime %d ms", (pausedNs - stoppedNs) / 1_000_000,
                lastPassBytes, lastPassMs, verifiedMs, deviceStateMs, switchoverMs, downtimeMs));
    }

    // ---- events -------------------------------------------------------------------------------

    private void drainEvents() throws MigrationException, Cancelled, LinkLost {
        SourceEvent event;
        while ((event = events.poll()) != null) {
            handle(event);
        }
    }

    private void waitEvents(long timeoutMs) throws MigrationException, Cancelled, LinkLost, InterruptedException {
        SourceEvent event = events.poll(timeoutMs, TimeUnit.MILLISECONDS);
        if (event != null) {
            handle(event);
            drainEvents();
        }
    }

    private void awaitState(SourceState wanted, long timeoutMs, String what)
            throws MigrationException, Cancelled, LinkLost, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (!state.reached(wanted)) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new MigrationException(stats.phase(), "timed out after " + timeoutMs + " ms waiting for " + what);
            }
            SourceEvent event = events.poll(left, TimeUnit.NANOSECONDS);
            if (event != null) {
                handle(event);
            }
        }
    }

    private <F extends Frame> F awaitFrame(Class<F> type, long timeoutMs, String what)
            throws MigrationException, InterruptedException, Cancelled, LinkLost {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            long left = deadline - System.nanoTime();
            SourceEvent event = left > 0 ? events.poll(left, TimeUnit.NANOSECONDS) : null;
            if (event == null) {
                throw new MigrationException(stats.phase(), "timed out after " + timeoutMs + " ms waiting for " + what);
            }
            if (event instanceof SourceEvent.PeerFrame(Frame frame) && type.isInstance(frame)) {
                return type.cast(frame);
            }
            handle(event);
        }
    }

    private void handle(SourceEvent event) throws MigrationException, Cancelled, LinkLost {
        switch (event) {
            case SourceEvent.CancelRequested c -> {
                cancelled = c.reason();
                cancelSeen.countDown();
                if (!state.reached(SourceState.COMMITTED)) {
                    throw new Cancelled(c.reason());
                }
                LOG.log(System.Logger.Level.WARNING, "cancel ignored: the destination may already run the VM (COMMIT was sent)");
            }
            case SourceEvent.Failure f -> {
                if (f.cause() instanceof IOException && !(f.cause() instanceof javax.net.ssl.SSLException)) {
                    throw new LinkLost(f.phase(), f.cause() instanceof java.io.EOFException
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
            case PRE_SWITCHOVER -> moveTo(SourceState.PRE_SWITCHOVER);
            case FAILED, CANCELLED -> throw new MigrationException(Phase.RAM, "QEMU's RAM migration "
                    + status.name().toLowerCase(java.util.Locale.ROOT) + " (see " + vm.qemuLog().map(l -> "QEMU's log " + l)
                    .orElse("the log of that QEMU: Ferry attached to it, and its output goes where its owner sent it") + ")");
            case SETUP, ACTIVE, DEVICE, CANCELLING, COMPLETED, OTHER ->
                    LOG.log(System.Logger.Level.DEBUG, "QEMU migration status: " + status);
        }
    }

    private void peerFrame(Frame frame) throws MigrationException {
        switch (frame) {
            case Frame.Verified v -> moveTo(SourceState.VERIFIED);
            case Frame.DestReady r -> moveTo(SourceState.DEST_READY);
            case Frame.Confirmed c -> ledger.confirmed(c.number());
            case Frame.Running r -> { }          // awaited by awaitFrame; a late duplicate is harmless
            case Frame.Error e -> throw new MigrationException(stats.phase(), "destination failed in " + e.phase() + ": " + e.message());
            default -> throw new MigrationException(stats.phase(), "unexpected " + frame.type() + " frame from the destination");
        }
    }

    private void send(Phase phase, Frame frame) throws LinkLost, InterruptedException {
        stream.send(phase, frame);
    }

    // ---- failure ------------------------------------------------------------------------------

    private void recover(MigrationStatus finalStatus, String reason, Optional<Frame> farewell) {
        Thread.interrupted();              // a cancel's interrupt must not break the recovery's QMP calls
        resumeInfo = null;
        if (state.reached(SourceState.COMMITTED)) {
            state = SourceState.FAILED;
            String message = reason + "; the VM may already run on the destination, so the source stays paused"
                    + " (the VM must never run twice): check the destination, and only if it does not run, `cont --force` here";
            LOG.log(System.Logger.Level.ERROR, "migration failed after commit: " + message);
            closeStream(Optional.empty());
            stats.fail(MigrationStatus.FAILED, message);
            return;
        }
        LOG.log(System.Logger.Level.WARNING, "migration " + finalStatus.qemuName() + ": " + reason + "; resuming the source VM");
        boolean ramStarted = state.reached(SourceState.RAM);
        state = finalStatus == MigrationStatus.CANCELLED ? SourceState.CANCELLED : SourceState.FAILED;
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
        if (tracking && destinationHoldsPartial && ledger != null) {
            try {
                blocks.suspend();
                ResumePoint point = new ResumePoint(migrationId, granuleSize, request.incremental(),
                        disks.stream().map(SourceDisk::size).toList(), ledger, digests, blocks, Instant.now());
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
        writeLimitBytesPerSec = 0;
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

    /** The user cancelled. */
    private static final class Cancelled extends Exception {
        Cancelled(String reason) {
            super(reason);
        }
    }
}
