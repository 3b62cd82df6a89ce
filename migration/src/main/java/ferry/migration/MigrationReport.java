package ferry.migration;

import java.util.Optional;
import java.util.OptionalLong;

/**
 * One consistent snapshot of a migration for {@code info migrate}, on either side.
 * Byte counts are bytes; rates are bytes per second; times are milliseconds.
 *
 * @param status QEMU-style status
 * @param phase where the migration is (Ferry's own line)
 * @param dirtyPass number of the current dirty pass (0 during the bulk pass)
 * @param totalTimeMs since {@code migrate} was given (frozen once finished)
 * @param expectedDowntimeMs estimate from the current remainder and bandwidth
 * @param downtimeMs measured downtime once completed: from the source QEMU's STOP (seen on the source) to the
 *     destination's RUNNING frame (sent once its QEMU has resumed), so one-way latency more, never less
 * @param ram RAM figures as QEMU reports them through the tunnel
 * @param diskTransferredBytes disk payload bytes sent (or received) so far, all passes
 * @param diskRemainingBytes dirty bytes still to send
 * @param diskTotalBytes sum of the migrated disks' sizes
 * @param wireBytes every byte the one TCP stream carried, headers included
 * @param throughputBytesPerSec measured stream throughput over the last interval
 * @param diskDirtyRateBytesPerSec guest disk write rate seen by the dirty bitmaps
 * @param writeLimitBytesPerSec the limit QEMU puts on guest writes so that the copy converges (0: none)
 * @param error the failure's one-line cause
 * @param resume a retry under way, a failed migration that {@code migrate -r} can resume, or (destination) the
 *     partial state kept for one
 */
public record MigrationReport(
        MigrationStatus status,
        Phase phase,
        int dirtyPass,
        long totalTimeMs,
        long expectedDowntimeMs,
        OptionalLong downtimeMs,
        Ram ram,
        long diskTransferredBytes,
        long diskRemainingBytes,
        long diskTotalBytes,
        long wireBytes,
        long throughputBytesPerSec,
        long diskDirtyRateBytesPerSec,
        long writeLimitBytesPerSec,
        Optional<String> error,
        Optional<ResumeInfo> resume) {

    /** Without anything to say about resuming. */
    public MigrationReport(MigrationStatus status, Phase phase, int dirtyPass, long totalTimeMs, long expectedDowntimeMs,
                           OptionalLong downtimeMs, Ram ram, long diskTransferredBytes, long diskRemainingBytes, long diskTotalBytes,
                           long wireBytes, long throughputBytesPerSec, long diskDirtyRateBytesPerSec, long writeLimitBytesPerSec,
                           Optional<String> error) {
        this(status, phase, dirtyPass, totalTimeMs, expectedDowntimeMs, downtimeMs, ram, diskTransferredBytes, diskRemainingBytes,
                diskTotalBytes, wireBytes, throughputBytesPerSec, diskDirtyRateBytesPerSec, writeLimitBytesPerSec, error, Optional.empty());
    }

    /** QEMU's RAM counters (from {@code query-migrate}), zero before RAM migration starts. */
    public record Ram(long transferredBytes, long remainingBytes, long totalBytes, long duplicatePages,
                      long normalPages, long dirtyPagesRate, long dirtySyncCount) {
        public static final Ram NONE = new Ram(0, 0, 0, 0, 0, 0, 0);
    }

    /**
     * How much of the copy is done, 0..100: of the disks ({@code (total - remaining) / total}, so holes and zero
     * ranges the bulk pass skips count as done, and a sparse disk reaches 100), or of RAM when no disk is copied.
     * 100 exactly when completed; at most 99 before, since a dirty pass can always follow.
     */
    public int progressPercent() {
        if (status == MigrationStatus.COMPLETED) {
            return 100;
        }
        long total = diskTotalBytes > 0 ? diskTotalBytes : ram.totalBytes();
        long remaining = diskTotalBytes > 0 ? diskRemainingBytes : ram.remainingBytes();
        if (total <= 0) {
            return 0;
        }
        long done = Math.max(0, total - remaining);
        return (int) Math.min(99, done * 100 / total);
    }

    /**
     * The time still to go while the migration is active: what remains of the disks and of RAM at the stream's
     * throughput of the last interval; empty when nothing moves yet or the migration is not active.
     */
    public OptionalLong etaMs() {
        if (status != MigrationStatus.ACTIVE || throughputBytesPerSec <= 0) {
            return OptionalLong.empty();
        }
        return OptionalLong.of((diskRemainingBytes + ram.remainingBytes()) * 1000 / throughputBytesPerSec);
    }

    public static MigrationReport idle() {
        return new MigrationReport(MigrationStatus.NONE, Phase.HANDSHAKE, 0, 0, 0, OptionalLong.empty(), Ram.NONE,
                0, 0, 0, 0, 0, 0, 0, Optional.empty());
    }
}
