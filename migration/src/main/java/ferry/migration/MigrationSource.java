package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.linux.Threads;
import ferry.migration.stream.MigrationStream;
import ferry.migration.stream.StreamConnector;
import ferry.migration.stream.StreamRefused;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The source side of one migration, DESIGN.md "Migration, step by step": handshake, bulk pass,
 * dirty passes with convergence control, RAM migration through the tunnel, switchover in QEMU's
 * {@code pre-switchover}, digest check, commit.
 *
 * <p>Until the COMMIT frame is sent, any failure resumes the source VM with its disks untouched.
 * After COMMIT the destination may already run the VM, so the source stays paused and says so:
 * running the VM twice would corrupt its disks.
 *
 * <p>The disks stay QEMU's: {@link SourceBlocks} tracks guest writes in QEMU's own dirty bitmaps,
 * reads through QEMU's block layer and throttles guest writes with QEMU's I/O throttling, only while
 * the migration runs. Where the source is: {@link SourceState}.
 *
 * <p>Size: about 770 lines, past the 600 the style asks for. The procedure, its state machine and its
 * recovery are one story told in order; what should leave next is the connection half (connect with
 * TLS, the {@code migration-recv} thread, peer reasons, closing the stream) as a {@code SourceStream},
 * which resume (issue 11) needs anyway to reconnect without restarting the procedure.
 *
 * <p>Threads: {@link #start()} starts {@code migration-send} (the procedure below) which starts
 * {@code migration-recv} (frames from the destination) and the RAM tunnel's pump; {@link #close()}
 * joins them. {@link #cancel}, {@link #maxBandwidth} and {@link #stats()} may be called from any thread.
 */
public final class MigrationSource implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    private static final int CONNECT_TIMEOUT_MS = 10_000;
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
    private int granuleSize;   // the parameter, raised in handshake() when the disks' digests need it

    private Thread sendThread;
    private volatile Thread recvThread;
    private volatile MigrationStream channel;
    private volatile FrameWriter writer;
    private volatile RamTunnel tunnel;
    private final List<GranuleDigests> digests = new ArrayList<>();
    private final List<BlockSender> senders = new ArrayList<>();
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
    private long lastPassBytes;
    private long lastPassMs;

    public MigrationSource(String vmName, List<SourceDisk> disks, SourceVm vm, SourceBlocks blocks, MigrationRequest request,
                           MigrationParameters parameters, Path runtimeDir) {
        this.vmName = vmName;
        this.disks = List.copyOf(disks);
        this.vm = vm;
        this.blocks = blocks;
        this.request = request;
        this.runtimeDir = runtimeDir;
        this.limiter = new RateLimiter(parameters.maxBandwidthBytesPerSec());
        this.downtimeLimitMs = parameters.downtimeLimitMs();
        this.granuleSize = parameters.granuleSize();
        long total = 0;
        for (SourceDisk disk : disks) {
            total += disk.size();
        }
        stats.diskTotalBytes(request.copyDisks() ? total : 0);
        remainingBytes = request.copyDisks() ? total : 0;     // nothing copied yet: 0 % until the bulk pass says more
    }

    public MigrationStats stats() {
        return stats;
    }

    /** Changes the stream's bandwidth cap while the migration runs. */
    public void maxBandwidth(long bytesPerSec) {
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

    /** Waits until the migration has finished; true when it did within the time. */
    public boolean await(long timeoutMs) throws InterruptedException {
        return sendThread.join(java.time.Duration.ofMillis(timeoutMs));
    }

    private void run() {
        try {
            List<Frame.DiskOffer> offers = offers();   // before connecting: a base's digest may take long, HELLO may not
            connect();
            handshake(offers);
            if (request.copyDisks()) {
                copyDisks();
            } else {
                startRam();
                awaitPreSwitchoverWithoutDisks();
            }
            switchover();
            moveTo(SourceState.COMPLETED);
            stopTracking();                // QEMU holds nothing of Ferry's once `completed` is reported
            stats.phase(Phase.COMPLETE);
            stats.status(MigrationStatus.COMPLETED);
            LOG.log(System.Logger.Level.INFO, "migration of " + vmName + " completed in " + stats.elapsedMs() + " ms");
            closeStream(null);
        } catch (Cancelled c) {
            recover(MigrationStatus.CANCELLED, "cancelled: " + c.getMessage(), new Frame.Cancel(c.getMessage()));
        } catch (MigrationException e) {
            // The destination's own ERROR, when it sent one, is the cause; what failed here followed from it.
            String reason = queuedPeerReason().map(r -> e.phase().label() + ": " + r).orElse(e.oneLine());
            recover(MigrationStatus.FAILED, reason, new Frame.Error(e.phase().label(), e.getMessage()));
        } catch (IOException e) {
            if (cancelReason().isPresent()) {
                recover(MigrationStatus.CANCELLED, "cancelled: " + cancelReason().get(), null);
                return;
            }
            String reason = peerReason().orElse("connection to the destination lost: " + e.getMessage());
            recover(MigrationStatus.FAILED, stats.phase().label() + ": " + reason, new Frame.Error(stats.phase().label(), reason));
        } catch (InterruptedException e) {
            // Interrupted by a cancel whose send was blocked: the stream is stuck, so no farewell frame
            // (it would block the same way); the destination sees the stream end and cleans up.
            String reason = cancelReason().map(r -> "cancelled: " + r).orElse(stats.phase().label() + ": interrupted");
            recover(cancelReason().isPresent() ? MigrationStatus.CANCELLED : MigrationStatus.FAILED, reason, null);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "migration failed unexpectedly", t);
            String reason = stats.phase().label() + ": " + t;
            recover(MigrationStatus.FAILED, reason, new Frame.Error(stats.phase().label(), t.toString()));
        } finally {
            Thread.interrupted();          // a cancel's interrupt must not break the clean-up's QMP calls
            stopTracking();
            vm.detach();
        }
    }

    /** The user's cancel reason, when a cancel was asked for (also when it interrupted the send thread). */
    private java.util.Optional<String> cancelReason() {
        for (SourceEvent event : events) {
            if (event instanceof SourceEvent.CancelRequested(String reason)) {
                return java.util.Optional.of(reason);
            }
        }
        return cancelled == null ? java.util.Optional.empty() : java.util.Optional.of(cancelled);
    }

    private volatile String cancelled;

    /**
     * When a send fails because the destination closed the stream, the destination usually said why
     * first (an ERROR frame the receiver thread queued): that reason beats "broken pipe".
     */
    private java.util.Optional<String> peerReason() {
        try {
            Thread recv = recvThread;
            if (recv != null) {
                recv.join(1000);            // let it queue what it read before the close
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return queuedPeerReason();
    }

    /** The destination's ERROR among the events already queued, without waiting for more. */
    private java.util.Optional<String> queuedPeerReason() {
        for (SourceEvent event : events) {
            if (event instanceof SourceEvent.PeerFrame(Frame.Error error)) {
                return java.util.Optional.of("destination failed in " + error.phase() + ": " + error.message());
            }
        }
        return java.util.Optional.empty();
    }

    // ---- setup --------------------------------------------------------------------------------

    /** TCP connect and, with tls-creds, the TLS handshake: the stream is authenticated before HELLO is sent. */
    private void connect() throws MigrationException {
        stats.phase(Phase.HANDSHAKE);
        moveTo(SourceState.HANDSHAKE);
        try {
            channel = StreamConnector.connect(request.host(), request.port(), CONNECT_TIMEOUT_MS, SOCKET_BUFFER, request.security());
        } catch (StreamRefused e) {
            throw new MigrationException(Phase.HANDSHAKE, e.getMessage(), e);
        } catch (IOException e) {
            throw new MigrationException(Phase.HANDSHAKE, "cannot connect to " + request.host() + ":" + request.port()
                    + ": " + e.getMessage() + " (is the destination started with -incoming tcp:0:" + request.port() + "?)", e);
        }
        writer = new FrameWriter(channel.output(), limiter);
        FrameReader reader = new FrameReader(channel.input());
        stats.sources(this::diskRemaining, writer::bytesWritten, () -> writeLimitBytesPerSec, vm::ramStats);
        recvThread = Threads.unstartedVirtual("migration-recv", () -> receive(reader));
        recvThread.start();
    }

    private List<Frame.DiskOffer> offers() throws MigrationException {
        List<Frame.DiskOffer> offers = new ArrayList<>();
        for (SourceDisk disk : disks) {
            java.util.Optional<Frame.BaseIdentity> base = java.util.Optional.empty();
            if (request.incremental() && disk.base().isPresent()) {
                long startNs = System.nanoTime();
                base = java.util.Optional.of(disk.base().get().identity());
                LOG.log(System.Logger.Level.INFO, "base of " + disk.id() + " hashed in " + sinceMs(startNs) + " ms");
            }
            offers.add(new Frame.DiskOffer(disk.id(), disk.size(), disk.format(), base));
        }
        return offers;
    }

    private void handshake(List<Frame.DiskOffer> offers) throws MigrationException, InterruptedException, Cancelled {
        if (request.copyDisks()) {
            granuleSize = granuleFor(disks.stream().map(SourceDisk::size).toList(), granuleSize);
        }
        send(Phase.HANDSHAKE, new Frame.Hello(MigrationWire.VERSION, vmName, granuleSize, request.copyDisks(),
                request.incremental(), offers, vm.fingerprint()));
        Frame.Welcome welcome = awaitFrame(Frame.Welcome.class, WELCOME_TIMEOUT_MS, "the destination's WELCOME");
        if (request.copyDisks() && welcome.freshDisks().size() != disks.size()) {
            throw new MigrationException(Phase.HANDSHAKE, "destination prepared " + welcome.freshDisks().size()
                    + " disks, source has " + disks.size());
        }
        this.fresh = welcome.freshDisks();
        stats.status(MigrationStatus.ACTIVE);
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

    private void copyDisks() throws Exception {
        convergence = new Convergence(limiter.rate(), System.nanoTime());
        tracking = true;                           // from here on stopTracking() must undo what start() added
        List<BlockImage> readers = blocks.start(granuleSize, request.incremental());   // tracking starts before the bulk reads
        moveTo(SourceState.COPYING);
        for (int i = 0; i < disks.size(); i++) {
            GranuleDigests digest = new GranuleDigests(disks.get(i).size(), granuleSize);
            digests.add(digest);
            senders.add(new BlockSender(i, readers.get(i), digest, writer, stats));
        }
        bulkPass(readers);
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
        long wireBefore = writer.bytesWritten();
        for (int i = 0; i < disks.size(); i++) {
            BulkPlan plan = BulkPlan.of(readers.get(i), granuleSize, request.incremental(), fresh.get(i));
            LOG.log(System.Logger.Level.INFO, "bulk pass: disk=" + disks.get(i).id() + " data=" + plan.dataBytes()
                    + " bytes, zero granules=" + plan.zero().count());
            senders.get(i).sendZeroes(plan.zero());
            long later = 0;
            for (int j = i + 1; j < disks.size(); j++) {
                later += disks.get(j).size();                  // not planned yet: all of it counts as to go
            }
            bulkLaterDisksBytes = later;
            bulkEndTransferred = stats.diskTransferredBytes() + plan.dataBytes();
            senders.get(i).afterEachRun(this::duringBulk);
            try {
                senders.get(i).sendData(plan.data());
            } catch (BulkCheckFailed stop) {
                throw stop.cause;
            } finally {
                senders.get(i).afterEachRun(() -> { });
            }
            drainEvents();
        }
        convergence.passSent(writer.bytesWritten() - wireBefore, System.nanoTime() - start);
        refreshRemaining();
        bulkEndTransferred = -1;
        send(Phase.BULK_COPY, new Frame.PassEnd(0, remainingBytes));
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

    /** After each run of the bulk pass: a cancel is seen at once, and a long pass may throttle the guest. */
    private void duringBulk() throws BulkCheckFailed {
        try {
            drainEvents();
            long now = System.nanoTime();
            if (now - remainingCheckedNs >= REMAINING_CHECK_INTERVAL_NS) {
                limitWrites(convergence.duringBulk(refreshRemaining(), now));
            }
        } catch (MigrationException | Cancelled e) {
            throw new BulkCheckFailed(e);
        }
    }

    /** Carries a failure or a cancel out of {@link BlockSender}'s run loop, which only passes I/O exceptions on. */
    private static final class BulkCheckFailed extends IOException {
        private final Exception cause;

        BulkCheckFailed(Exception cause) {
            super(cause.getMessage(), cause);
            this.cause = cause;
        }
    }

    private void dirtyPass(int pass) throws Exception {
        stats.phase(Phase.ITERATE);
        stats.dirtyPass(pass);
        long start = System.nanoTime();
        long wireBefore = writer.bytesWritten();
        long found = 0;
        List<DirtySnapshot> dirty = blocks.takeDirty();      // a fresh set starts BEFORE these granules are read
        for (int i = 0; i < senders.size(); i++) {
            found += dirty.get(i).bytes();
            senders.get(i).sendData(dirty.get(i));
        }
        convergence.snapshotTaken(found, start);
        convergence.passSent(writer.bytesWritten() - wireBefore, System.nanoTime() - start);
        stats.rates(convergence.bandwidthBytesPerSec(), convergence.dirtyRateBytesPerSec());
        send(Phase.ITERATE, new Frame.PassEnd(pass, refreshRemaining()));
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
        tunnel = RamTunnel.listening(socket, writer, e -> events.add(new SourceEvent.Failure(Phase.RAM, e)));
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
        // rate limit at this point too).
        limiter.rate(UNCAPPED_BYTES_PER_SEC);
        if (request.copyDisks()) {
            long wire = writer.bytesWritten();
            List<DirtySnapshot> last = blocks.takeDirty();     // QEMU has drained the guest's disk I/O: nothing follows
            for (int i = 0; i < disks.size(); i++) {
                senders.get(i).sendData(last.get(i));
            }
            List<int[]> groups = new ArrayList<>();
            for (GranuleDigests d : digests) {
                groups.add(d.groupDigests());
            }
            send(Phase.SWITCHOVER, new Frame.DisksDone(groups));
            moveTo(SourceState.DISKS_SENT);
            lastPassBytes = writer.bytesWritten() - wire;
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

    private void receive(FrameReader reader) {
        try {
            while (true) {
                Frame frame = reader.next();
                switch (frame) {
                    case Frame.Ram ram -> tunnel().deliver(ram.data());
                    case Frame.RamEof eof -> tunnel().peerFinished();
                    default -> events.add(new SourceEvent.PeerFrame(frame));
                }
            }
        } catch (Exception e) {
            events.add(new SourceEvent.Failure(stats.phase(), e));
        }
    }

    private RamTunnel tunnel() throws IOException {
        RamTunnel t = tunnel;
        if (t == null) {
            throw new IOException("destination sent RAM data before the RAM migration started");
        }
        return t;
    }

    private void drainEvents() throws MigrationException, Cancelled {
        SourceEvent event;
        while ((event = events.poll()) != null) {
            handle(event);
        }
    }

    private void waitEvents(long timeoutMs) throws MigrationException, Cancelled, InterruptedException {
        SourceEvent event = events.poll(timeoutMs, TimeUnit.MILLISECONDS);
        if (event != null) {
            handle(event);
            drainEvents();
        }
    }

    private void awaitState(SourceState wanted, long timeoutMs, String what)
            throws MigrationException, Cancelled, InterruptedException {
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
            throws MigrationException, InterruptedException, Cancelled {
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

    private void handle(SourceEvent event) throws MigrationException, Cancelled {
        switch (event) {
            case SourceEvent.CancelRequested c -> {
                cancelled = c.reason();
                cancelSeen.countDown();
                if (!state.reached(SourceState.COMMITTED)) {
                    throw new Cancelled(c.reason());
                }
                LOG.log(System.Logger.Level.WARNING, "cancel ignored: the destination may already run the VM (COMMIT was sent)");
            }
            case SourceEvent.Failure f -> throw new MigrationException(f.phase(),
                    f.cause() instanceof java.io.EOFException ? "connection to the destination lost: " + f.cause().getMessage()
                            : String.valueOf(f.cause().getMessage()), f.cause());
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
            case Frame.Running r -> { }          // awaited by awaitFrame; a late duplicate is harmless
            case Frame.Error e -> throw new MigrationException(stats.phase(), "destination failed in " + e.phase() + ": " + e.message());
            default -> throw new MigrationException(stats.phase(), "unexpected " + frame.type() + " frame from the destination");
        }
    }

    private void send(Phase phase, Frame frame) throws MigrationException, InterruptedException {
        try {
            writer.send(frame);
        } catch (IOException e) {
            throw new MigrationException(phase, "sending " + frame.type() + " to the destination failed: " + e.getMessage(), e);
        }
    }

    // ---- failure ------------------------------------------------------------------------------

    private void recover(MigrationStatus finalStatus, String reason, Frame farewell) {
        Thread.interrupted();              // a cancel's interrupt must not break the recovery's QMP calls
        if (state.reached(SourceState.COMMITTED)) {
            state = SourceState.FAILED;
            String message = reason + "; the VM may already run on the destination, so the source stays paused"
                    + " (the VM must never run twice): check the destination, and only if it does not run, `cont --force` here";
            LOG.log(System.Logger.Level.ERROR, "migration failed after commit: " + message);
            closeStream(null);
            stats.fail(MigrationStatus.FAILED, message);
            return;
        }
        LOG.log(System.Logger.Level.WARNING, "migration " + finalStatus.qemuName() + ": " + reason + "; resuming the source VM");
        boolean ramStarted = state.reached(SourceState.RAM);
        state = finalStatus == MigrationStatus.CANCELLED ? SourceState.CANCELLED : SourceState.FAILED;
        closeStream(farewell);
        StringBuilder message = new StringBuilder(reason);
        stopTracking();                    // QEMU's bitmaps, export and throttle go before the VM runs on
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

    /** Tells the destination why (when the stream still works), then closes everything. */
    private void closeStream(Frame farewell) {
        FrameWriter w = writer;
        MigrationStream ch = channel;
        if (farewell != null && w != null && ch != null && ch.isOpen()) {
            try {
                ch.lingerSeconds(2);
                w.send(farewell);
            } catch (IOException | InterruptedException e) {
                LOG.log(System.Logger.Level.DEBUG, "could not tell the destination why: " + e.getMessage());
            }
        }
        try {
            if (ch != null) {
                ch.close();
            }
            RamTunnel t = tunnel;
            if (t != null) {
                t.close();
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "closing the migration stream: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
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
        closeStream(null);
        Thread recv = recvThread;
        if (recv != null) {
            recv.join(5_000);
        }
    }

    /** The user cancelled. */
    private static final class Cancelled extends Exception {
        Cancelled(String reason) {
            super(reason);
        }
    }
}
