package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.wire.Frame;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * The source's disk copy, DESIGN.md "Migration, step by step" 2 to 5: the bulk pass of a fresh start (or the
 * resume pass of a later attempt), dirty passes until QEMU pauses the VM at {@code pre-switchover}, and the
 * last pass inside the switchover; with what they keep from one attempt to the next: the {@link ResendLedger}
 * of what the destination may lack, the {@link GranuleDigests} of what was sent, and the remainder that
 * {@code info migrate} shows.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Each pass hands its granules to the ledger ({@link ResendLedger#planned}) before it reads them, and a
 *       CHECKPOINT follows whenever the ledger says one is due, also between two runs of a pass: a link lost
 *       anywhere leaves the ledger able to say what to send again.</li>
 *   <li>Between two runs of granules ({@link #afterRun}), during the bulk pass only, queued events are handled
 *       (a cancel is seen at once, not after a pass of many minutes) and QEMU's dirty count is asked at most
 *       every {@link #REMAINING_CHECK_INTERVAL_NS}, so that {@link Convergence#duringBulk} may throttle the
 *       guest before the pass ends.</li>
 *   <li>The passes decide when QEMU's RAM migration starts ({@link Convergence#readyForRam}) but do not start
 *       it: the procedure owns the tunnel and QEMU's listener ({@link RamStart}).</li>
 *   <li>Logs under {@link MigrationSource}'s name, as these lines did before they moved here.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send}; {@link #diskRemaining}, {@link #remainingBytes},
 * {@link #writeLimitBytesPerSec} and {@link #cap} may be called from any thread ({@code info migrate},
 * {@code migrate_set_parameter}).
 */
final class DiskPasses {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    /** Pause between dirty passes once the remainder is small, so an idle guest costs no busy loop. */
    private static final long IDLE_PASS_INTERVAL_MS = 20;
    /** QEMU's dirty count is asked at most this often during a pass (one QMP round trip each). */
    private static final long REMAINING_CHECK_INTERVAL_NS = 250_000_000L;

    /** Starts QEMU's RAM migration: called once, from a dirty pass, when the disk remainder is small enough. */
    @FunctionalInterface
    interface RamStart {
        void startRam() throws MigrationException;
    }

    private final List<SourceDisk> disks;
    private final SourceBlocks blocks;
    private final boolean incremental;
    private final long downtimeLimitMs;
    private final MigrationStats stats;
    private final SourceEvents events;
    private final SourceStateMachine machine;
    private final RamStart ramStart;
    private long checkpointBytes = ResendLedger.CHECKPOINT_BYTES;

    // The migration's, across attempts.
    private ResendLedger ledger;
    private List<GranuleDigests> digests = new ArrayList<>();
    private volatile Convergence convergence;
    /** QEMU's count of bytes dirtied since the last pass, refreshed by the send thread (info migrate reads it). */
    private volatile long remainingBytes;
    private long remainingCheckedNs;
    private volatile long writeLimitBytesPerSec;

    // This attempt's.
    private SourceStream stream;
    private int granuleSize;
    private final List<BlockSender> senders = new ArrayList<>();
    /** While the bulk pass runs: the disk bytes transferred when it will be done ({@code -1}: no bulk pass runs). */
    private volatile long bulkEndTransferred = -1;
    private volatile long bulkLaterDisksBytes;
    private boolean bulkRunning;

    DiskPasses(List<SourceDisk> disks, SourceBlocks blocks, MigrationRequest request, long downtimeLimitMs, MigrationStats stats,
               SourceEvents events, SourceStateMachine machine, RamStart ramStart) {
        this.disks = List.copyOf(disks);
        this.blocks = blocks;
        this.incremental = request.incremental();
        this.downtimeLimitMs = downtimeLimitMs;
        this.stats = stats;
        this.events = events;
        this.machine = machine;
        this.ramStart = ramStart;
        long total = 0;
        for (SourceDisk disk : disks) {
            total += disk.size();
        }
        remainingBytes = request.copyDisks() ? total : 0;     // nothing copied yet: 0 % until the bulk pass says more
    }

    /** Checkpoints every {@code bytes} of disk data instead of every 64 MiB; before the first copy. */
    void checkpointEvery(long bytes) {
        this.checkpointBytes = bytes;
    }

    /** {@code migrate -r}: goes on with the ledger and digests of the interrupted migration. */
    void adopt(ResendLedger adopted, List<GranuleDigests> adoptedDigests) {
        ledger = adopted;
        digests = new ArrayList<>(adoptedDigests);
    }

    /** True once a copy began or a resume point was adopted: there is a ledger and there are digests. */
    boolean hasLedger() {
        return ledger != null;
    }

    ResendLedger ledger() {
        return ledger;
    }

    List<GranuleDigests> digests() {
        return digests;
    }

    /** The destination confirmed checkpoint {@code number}: the ledger drops what it covers. */
    void confirmed(long number) {
        ledger.confirmed(number);
    }

    /** The user changed max-bandwidth: the estimates start from it (until measured). */
    void cap(long bytesPerSec) {
        Convergence c = convergence;
        if (c != null) {
            c.cap(bytesPerSec);
        }
    }

    /**
     * A fresh start, after WELCOME: a new ledger and digests, the bulk pass of {@code readers} ({@code fresh}: per
     * disk, whether the destination's image starts out all zero), then dirty passes until pre-switchover.
     */
    void copyFresh(SourceStream attemptStream, List<BlockImage> readers, int granule, long bandwidthCap, List<Boolean> fresh)
            throws Exception {
        begin(attemptStream, granule, bandwidthCap);
        ledger = new ResendLedger(disks.stream().map(SourceDisk::size).toList(), granuleSize, checkpointBytes, System.nanoTime());
        digests.clear();
        for (SourceDisk disk : disks) {
            digests.add(new GranuleDigests(disk.size(), granuleSize));
        }
        startSenders(readers);
        machine.moveTo(SourceState.COPYING);
        bulkPass(readers, fresh);
        dirtyPasses();
    }

    /** A later attempt, after the resume handshake: what the destination lacks, then dirty passes until pre-switchover. */
    void copyResumed(SourceStream attemptStream, List<BlockImage> readers, int granule, long bandwidthCap) throws Exception {
        begin(attemptStream, granule, bandwidthCap);
        startSenders(readers);
        machine.moveTo(SourceState.COPYING);
        resumePass();
        dirtyPasses();
    }

    /**
     * In the switchover (QEMU has drained the guest's disk I/O, so nothing follows): sends the last dirty granules
     * and returns the group digests of every disk for DISKS_DONE.
     */
    List<int[]> lastPass() throws Exception {
        List<DirtySnapshot> last = blocks.takeDirty();
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
        return groups;
    }

    /** QEMU's write throttle is gone (the block layer suspended or stopped): no limit is in force. */
    void throttleLifted() {
        writeLimitBytesPerSec = 0;
    }

    /** The attempt's link was lost: its senders and bulk progress go; the ledger, digests and estimates stay. */
    void attemptEnded() {
        senders.clear();
        bulkEndTransferred = -1;
        stream = null;
    }

    /**
     * What is left to copy of the disks, for {@code info migrate} ("remaining disk", the progress and the ETA):
     * during the bulk pass, the data of the disk being copied not sent yet and all of the disks after it
     * (holes and zero ranges the plan skips are done: a sparse disk reaches 100 %); afterwards, the dirty bytes
     * of the last check.
     */
    long diskRemaining() {
        long bulkEnd = bulkEndTransferred;
        if (bulkEnd >= 0) {
            return Math.max(0, bulkEnd - stats.diskTransferredBytes()) + bulkLaterDisksBytes;
        }
        return remainingBytes;
    }

    /** QEMU's dirty bytes as of the last check. */
    long remainingBytes() {
        return remainingBytes;
    }

    /** The guest write limit in force; 0: none. */
    long writeLimitBytesPerSec() {
        return writeLimitBytesPerSec;
    }

    private void begin(SourceStream attemptStream, int granule, long bandwidthCap) {
        stream = attemptStream;
        granuleSize = granule;
        convergence = new Convergence(bandwidthCap, System.nanoTime());
    }

    private void startSenders(List<BlockImage> readers) {
        senders.clear();
        for (int i = 0; i < disks.size(); i++) {
            BlockSender sender = new BlockSender(i, readers.get(i), digests.get(i), stream.writer(), stats, ledger);
            sender.afterEachRun(this::afterRun);
            senders.add(sender);
        }
    }

    private void dirtyPasses() throws Exception {
        int pass = 0;
        while (!machine.reached(SourceState.PRE_SWITCHOVER)) {
            pass++;
            dirtyPass(pass);
            events.drain();
            long remaining = refreshRemaining();
            stats.expectedDowntimeMs(convergence.expectedDowntimeMs(remaining));
            if (machine.state() == SourceState.COPYING && convergence.readyForRam(remaining, downtimeLimitMs)) {
                ramStart.startRam();
            }
            limitWrites(convergence.afterPass(pass, remaining));
            if (!machine.reached(SourceState.PRE_SWITCHOVER) && remaining < 4L * granuleSize * 256) {
                events.waitFor(IDLE_PASS_INTERVAL_MS);
            }
        }
    }

    private void bulkPass(List<BlockImage> readers, List<Boolean> fresh) throws Exception {
        stats.phase(Phase.BULK_COPY);
        stats.dirtyPass(0);
        long start = System.nanoTime();
        long wireBefore = wire();
        List<BulkPlan> plans = new ArrayList<>();
        for (int i = 0; i < disks.size(); i++) {
            BulkPlan plan;
            try {
                plan = BulkPlan.of(readers.get(i), granuleSize, incremental, fresh.get(i));
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
            events.drain();
        }
        convergence.passSent(wire() - wireBefore, System.nanoTime() - start);
        refreshRemaining();
        bulkEndTransferred = -1;
        stream.send(Phase.BULK_COPY, new Frame.PassEnd(0, remainingBytes));
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
            events.drain();
        }
        convergence.passSent(wire() - wireBefore, System.nanoTime() - start);
        stream.send(Phase.RESUME, new Frame.PassEnd(0, refreshRemaining()));
        checkpointIfDue();
        LOG.log(System.Logger.Level.INFO, "resume pass: " + (stats.diskTransferredBytes() - diskBefore) + " bytes of disk data in "
                + (System.nanoTime() - start) / 1_000_000 + " ms");
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
        stream.send(Phase.ITERATE, new Frame.PassEnd(pass, refreshRemaining()));
        checkpointIfDue();
    }

    /** After each run sent: a due checkpoint; during the bulk pass, a cancel is seen at once and a long pass may throttle the guest. */
    private void afterRun() throws RunCheckFailed, InterruptedException {
        try {
            checkpointIfDue();
            if (bulkRunning) {
                events.drain();
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
            stream.send(stats.phase(), new Frame.Checkpoint(ledger.checkpoint(now)));
        }
    }

    private long wire() {
        return stream.writer().bytesWritten();
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
}
