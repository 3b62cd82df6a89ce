package ferry.migration;

import ferry.migration.wire.Frame;
import java.util.List;
import java.util.Locale;

/**
 * The source's last steps, DESIGN.md "Migration, step by step" 5 to 7: from QEMU's {@code pre-switchover}
 * (the VM paused, its disk I/O drained) to the destination's RUNNING. The last pass and DISKS_DONE, QEMU's
 * {@code migrate-continue}, VERIFIED, DEST_READY, COMMIT, RUNNING; then the guest's downtime, and one log
 * line that says where it went.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>The device state goes out while the destination flushes and compares digests: the destination runs
 *       the VM only on COMMIT, and COMMIT waits for VERIFIED, so nothing runs on unverified disks.</li>
 *   <li>The state moves to COMMITTED before COMMIT is sent: a COMMIT that may have left counts as sent, and
 *       from then on the source never runs the VM again on its own (the COMMIT rule).</li>
 *   <li>The downtime runs from the source QEMU's STOP to the destination's RUNNING, both as this host saw
 *       them. Measured from pre-switchover it left out the time between QEMU pausing the VM and Ferry
 *       handling the event, and under-reported.</li>
 *   <li>Logs under {@link MigrationSource}'s name, as these lines did before they moved here.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} only.
 */
final class Switchover {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    private static final long VERIFY_TIMEOUT_MS = 120_000;
    private static final long DEST_READY_TIMEOUT_MS = 300_000;
    private static final long RUNNING_TIMEOUT_MS = 60_000;
    private static final long UNCAPPED_BYTES_PER_SEC = 1L << 40;

    private final boolean copyDisks;
    private final SourceVm vm;
    private final RateLimiter limiter;
    private final DiskPasses passes;
    private final SourceEvents events;
    private final SourceStateMachine machine;
    private final MigrationStats stats;

    Switchover(MigrationRequest request, SourceVm vm, RateLimiter limiter, DiskPasses passes, SourceEvents events,
               SourceStateMachine machine, MigrationStats stats) {
        this.copyDisks = request.copyDisks();
        this.vm = vm;
        this.limiter = limiter;
        this.passes = passes;
        this.events = events;
        this.machine = machine;
        this.stats = stats;
    }

    /**
     * Runs the switchover over {@code stream}, the state at PRE_SWITCHOVER; {@code vmStoppedNs} is when QEMU's
     * STOP arrived ({@link System#nanoTime}; 0: not seen). Returns once the destination said RUNNING.
     */
    void run(SourceStream stream, long vmStoppedNs) throws Exception {
        long pausedNs = System.nanoTime();
        long stoppedNs = vmStoppedNs != 0 ? vmStoppedNs : pausedNs;   // QEMU's STOP comes just before pre-switchover
        stats.phase(Phase.SWITCHOVER);
        // The VM is paused: the bandwidth cap would only lengthen the downtime (QEMU lifts its own
        // rate limit at this point too); a later attempt gets the cap back (MigrationSource.endAttempt).
        limiter.rate(UNCAPPED_BYTES_PER_SEC);
        long lastPassBytes = 0;
        long lastPassMs = 0;
        if (copyDisks) {
            long wireStart = stream.writer().bytesWritten();
            List<int[]> groups = passes.lastPass();            // QEMU has drained the guest's disk I/O: nothing follows
            stream.send(Phase.SWITCHOVER, new Frame.DisksDone(groups));
            machine.moveTo(SourceState.DISKS_SENT);
            lastPassBytes = stream.writer().bytesWritten() - wireStart;
            lastPassMs = sinceMs(pausedNs);
        }
        vm.continueSwitchover();                               // the device state goes out while the disks are verified
        if (!copyDisks) {
            machine.moveTo(SourceState.VERIFIED);              // shared disks: nothing to verify
        }
        events.awaitState(SourceState.VERIFIED, VERIFY_TIMEOUT_MS, "the destination's digest verification");
        long verifiedMs = sinceMs(pausedNs);
        events.awaitState(SourceState.DEST_READY, DEST_READY_TIMEOUT_MS, "the destination QEMU to receive the device state");
        long deviceStateMs = sinceMs(pausedNs);
        machine.moveTo(SourceState.COMMITTED);                 // before the send: a COMMIT that may have left counts as sent
        stream.send(Phase.SWITCHOVER, new Frame.Commit());
        events.awaitFrame(Frame.Running.class, RUNNING_TIMEOUT_MS, "the destination to confirm that the VM runs");
        long switchoverMs = sinceMs(pausedNs);
        long downtimeMs = sinceMs(stoppedNs);                  // from QEMU's STOP to the destination's RUNNING
        stats.downtimeMs(downtimeMs);
        // One line that says where the downtime went (times from QEMU's pre-switchover event).
        LOG.log(System.Logger.Level.INFO, String.format(Locale.ROOT, "switchover: VM stopped %d ms before"
                + " pre-switchover, last pass %d bytes sent at +%d ms, disks verified at +%d ms, device state in the destination"
                + " QEMU at +%d ms, destination running at +%d ms; downtime %d ms", (pausedNs - stoppedNs) / 1_000_000,
                lastPassBytes, lastPassMs, verifiedMs, deviceStateMs, switchoverMs, downtimeMs));
    }

    private static long sinceMs(long startNs) {
        return (System.nanoTime() - startNs) / 1_000_000;
    }
}
