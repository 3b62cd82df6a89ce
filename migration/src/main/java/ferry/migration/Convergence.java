package ferry.migration;

/**
 * The copy scheduler's arithmetic: bandwidth and dirty-rate estimates, the expected downtime,
 * when to start RAM migration, and how hard to throttle guest writes.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Bandwidth B is measured from passes that sent at least {@link #MIN_SAMPLE_BYTES}: smaller
 *       passes are dominated by latency. Until then B is the configured cap. B is an EWMA (alpha 0.5).</li>
 *   <li>Dirty rate D = bytes found dirty at a snapshot / time since the previous snapshot.</li>
 *   <li>RAM migration starts once the disk remainder would take at most half the downtime limit:
 *       the other half is for QEMU's last RAM pages and device state.</li>
 *   <li>Throttling starts when, after {@link #PASSES_BEFORE_THROTTLE} dirty passes, the remainder
 *       did not shrink and D is at least {@link #THROTTLE_DIRTY_FRACTION} of B. The guest's write
 *       rate is then capped at half of B, and halved again after each pass that still does not
 *       shrink the remainder, down to a floor below the bandwidth (B/16, at most {@link #MIN_GUEST_RATE}):
 *       the copy then always outruns the guest. A long bulk pass on a slow link is checked every
 *       second ({@link #duringBulk}), so the throttle need not wait for it to end.</li>
 * </ul>
 *
 * <p>Threads: the {@code migration-send} thread only.
 */
final class Convergence {
    static final long MIN_SAMPLE_BYTES = 1 << 20;
    static final int PASSES_BEFORE_THROTTLE = 2;
    static final double THROTTLE_DIRTY_FRACTION = 0.5;
    static final long MIN_GUEST_RATE = 256 << 10;
    static final long MIN_FLOOR = 4 << 10;
    static final long BULK_CHECK_INTERVAL_NS = 1_000_000_000L;

    private long capBytesPerSec;
    private double bandwidth;            // 0: not measured yet
    private double dirtyRate;
    private long lastSnapshotNs;
    private long previousRemaining = Long.MAX_VALUE;
    private int stalledPasses;
    private long guestLimit;             // 0: no throttle
    private long lastBulkCheckNs;
    private long lastBulkDirtyBytes;
    private int bulkStalls;

    Convergence(long capBytesPerSec, long nowNs) {
        this.capBytesPerSec = capBytesPerSec;
        this.lastSnapshotNs = nowNs;
        this.lastBulkCheckNs = nowNs;
    }

    void cap(long bytesPerSec) {
        this.capBytesPerSec = bytesPerSec;
    }

    /** A pass sent {@code bytes} over the wire in {@code durationNs}. */
    void passSent(long bytes, long durationNs) {
        if (bytes >= MIN_SAMPLE_BYTES && durationNs > 0) {
            double sample = bytes * 1e9 / durationNs;
            bandwidth = bandwidth == 0 ? sample : 0.5 * bandwidth + 0.5 * sample;
        }
    }

    /** A snapshot at {@code nowNs} found {@code dirtyBytes} dirty. */
    void snapshotTaken(long dirtyBytes, long nowNs) {
        long elapsed = nowNs - lastSnapshotNs;
        if (elapsed > 0) {
            double sample = dirtyBytes * 1e9 / elapsed;
            dirtyRate = dirtyRate == 0 ? sample : 0.5 * dirtyRate + 0.5 * sample;
        }
        lastSnapshotNs = nowNs;
    }

    long bandwidthBytesPerSec() {
        double measured = bandwidth == 0 ? capBytesPerSec : Math.min(bandwidth, capBytesPerSec);
        return Math.max(1, (long) measured);
    }

    long dirtyRateBytesPerSec() {
        return (long) dirtyRate;
    }

    long expectedDowntimeMs(long remainingBytes) {
        return remainingBytes * 1000 / bandwidthBytesPerSec();
    }

    boolean readyForRam(long remainingBytes, long downtimeLimitMs) {
        return expectedDowntimeMs(remainingBytes) <= downtimeLimitMs / 2;
    }

    /**
     * After dirty pass {@code pass} left {@code remainingBytes}: the guest write limit to apply,
     * 0 for none.
     */
    long afterPass(int pass, long remainingBytes) {
        boolean shrinking = remainingBytes < previousRemaining;
        previousRemaining = remainingBytes;
        stalledPasses = shrinking ? 0 : stalledPasses + 1;
        boolean outrun = dirtyRate >= THROTTLE_DIRTY_FRACTION * bandwidthBytesPerSec();
        if (guestLimit == 0) {
            if (pass >= PASSES_BEFORE_THROTTLE && stalledPasses > 0 && outrun) {
                guestLimit = Math.max(floor(), bandwidthBytesPerSec() / 2);
            }
        } else if (stalledPasses > 0) {
            guestLimit = Math.max(floor(), guestLimit / 2);
        }
        return guestLimit;
    }

    /**
     * While the bulk pass runs (it can take minutes on a slow link), about once a second: when the
     * dirty set grew at half the bandwidth or more in two checks running, the guest is throttled to
     * half the bandwidth already, instead of after the bulk pass and two dirty passes.
     */
    long duringBulk(long dirtyBytes, long nowNs) {
        if (nowNs - lastBulkCheckNs < BULK_CHECK_INTERVAL_NS) {
            return guestLimit;
        }
        double growth = (dirtyBytes - lastBulkDirtyBytes) * 1e9 / (nowNs - lastBulkCheckNs);
        lastBulkCheckNs = nowNs;
        lastBulkDirtyBytes = dirtyBytes;
        bulkStalls = growth >= THROTTLE_DIRTY_FRACTION * bandwidthBytesPerSec() ? bulkStalls + 1 : 0;
        if (guestLimit == 0 && bulkStalls >= 2) {
            guestLimit = Math.max(floor(), bandwidthBytesPerSec() / 2);
        }
        return guestLimit;
    }

    /** The lowest guest write rate: below the bandwidth on any link, so the copy always gains. */
    private long floor() {
        return Math.max(MIN_FLOOR, Math.min(MIN_GUEST_RATE, bandwidthBytesPerSec() / 16));
    }

    long guestLimit() {
        return guestLimit;
    }
}
