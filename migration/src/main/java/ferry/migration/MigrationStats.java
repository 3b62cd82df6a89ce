package ferry.migration;

import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * The live counters of one migration, on either side, and the {@link MigrationReport} built from
 * them for {@code info migrate}. Writers are the migration threads; readers are monitor clients.
 */
public final class MigrationStats {
    private final long startNs = System.nanoTime();
    private volatile long endNs;
    private volatile MigrationStatus status = MigrationStatus.SETUP;
    private volatile Phase phase = Phase.HANDSHAKE;
    private volatile int dirtyPass;
    private volatile String error;
    private volatile long downtimeMs = -1;
    private volatile long expectedDowntimeMs;
    private volatile long bandwidthBytesPerSec;
    private volatile long dirtyRateBytesPerSec;
    private volatile long diskTotalBytes;
    private final AtomicLong diskTransferredBytes = new AtomicLong();
    private volatile LongSupplier diskRemaining = () -> 0;
    private volatile LongSupplier wireBytes = () -> 0;
    private volatile LongSupplier writeLimitBytesPerSec = () -> 0;
    private volatile Supplier<MigrationReport.Ram> ram = () -> MigrationReport.Ram.NONE;
    private volatile Supplier<Optional<ResumeInfo>> resume = Optional::empty;
    private final java.util.List<MigrationListener> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();

    public MigrationStatus status() {
        return status;
    }

    public Phase phase() {
        return phase;
    }

    public synchronized void status(MigrationStatus status) {
        MigrationStatus before = this.status;
        this.status = status;
        if (status.finished() && endNs == 0) {
            endNs = System.nanoTime();
        }
        if (status != before) {
            listeners.forEach(l -> l.statusChanged(status));
        }
    }

    /** {@code migrate_cancel} was given: {@code cancelling} (as QEMU shows it) unless the migration already ended. */
    public synchronized void cancelling() {
        if (!status.finished()) {
            status(MigrationStatus.CANCELLING);
        }
    }

    /**
     * Tells {@code listener} about every later change of status and every pass; it first hears the
     * current status, so that it misses none. Listeners run on the migration's threads and must not block.
     */
    public void addListener(MigrationListener listener) {
        listeners.add(listener);
        listener.statusChanged(status);
    }

    public void phase(Phase phase) {
        this.phase = phase;
    }

    /** A pass starts: 0 is the bulk pass, 1.. the dirty passes. */
    public void dirtyPass(int pass) {
        this.dirtyPass = pass;
        listeners.forEach(l -> l.passStarted(pass));
    }

    public void fail(MigrationStatus finalStatus, String error) {
        this.error = error;
        status(finalStatus);
    }

    /** Cleaning up after the migration left something behind; the message says what (appended to the error line). */
    public void cleanupFailed(String message) {
        this.error = error == null ? "clean-up failed: " + message : error + "; clean-up failed: " + message;
    }

    public Optional<String> error() {
        return Optional.ofNullable(error);
    }

    public void downtimeMs(long ms) {
        this.downtimeMs = ms;
    }

    public void expectedDowntimeMs(long ms) {
        this.expectedDowntimeMs = ms;
    }

    public void rates(long bandwidthBytesPerSec, long dirtyRateBytesPerSec) {
        this.bandwidthBytesPerSec = bandwidthBytesPerSec;
        this.dirtyRateBytesPerSec = dirtyRateBytesPerSec;
    }

    public long bandwidthBytesPerSec() {
        return bandwidthBytesPerSec;
    }

    public void diskTotalBytes(long bytes) {
        this.diskTotalBytes = bytes;
    }

    public void addDiskBytes(long bytes) {
        diskTransferredBytes.addAndGet(bytes);
    }

    public long diskTransferredBytes() {
        return diskTransferredBytes.get();
    }

    public void sources(LongSupplier diskRemaining, LongSupplier wireBytes, LongSupplier writeLimitBytesPerSec,
                        Supplier<MigrationReport.Ram> ram) {
        this.diskRemaining = diskRemaining;
        this.wireBytes = wireBytes;
        this.writeLimitBytesPerSec = writeLimitBytesPerSec;
        this.ram = ram;
    }

    /** Where {@code info migrate} reads what there is to say about resuming. */
    public void resume(Supplier<Optional<ResumeInfo>> resume) {
        this.resume = resume;
    }

    public long elapsedMs() {
        long end = endNs == 0 ? System.nanoTime() : endNs;
        return (end - startNs) / 1_000_000;
    }

    public MigrationReport report() {
        long elapsedMs = elapsedMs();
        long wire = wireBytes.getAsLong();
        return new MigrationReport(status, phase, dirtyPass, elapsedMs, expectedDowntimeMs,
                downtimeMs >= 0 ? OptionalLong.of(downtimeMs) : OptionalLong.empty(), ram.get(),
                diskTransferredBytes.get(), status.finished() ? 0 : diskRemaining.getAsLong(), diskTotalBytes, wire,
                bandwidthBytesPerSec > 0 ? bandwidthBytesPerSec : (elapsedMs > 0 ? wire * 1000 / elapsedMs : 0),
                dirtyRateBytesPerSec, status.finished() ? 0 : writeLimitBytesPerSec.getAsLong(), Optional.ofNullable(error),
                resume.get());
    }
}
