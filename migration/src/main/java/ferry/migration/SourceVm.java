package ferry.migration;

import java.nio.file.Path;

/**
 * What the migration source needs from the VM it moves. The supervisor implements it with QMP;
 * the migration layer never speaks QMP itself.
 *
 * <p>Threads: called from the {@code migration-send} thread; {@link RamListener} is called from the
 * QMP event thread.
 */
public interface SourceVm {

    /** QEMU's RAM migration status changes. Called on QEMU's event thread: it must not block or send frames. */
    @FunctionalInterface
    interface RamListener {
        void ramStatus(RamStatus status);

        /** QEMU's STOP event: the VM paused (at {@code pre-switchover}, the downtime starts); {@code atNs} is {@link System#nanoTime}. */
        default void vmStopped(long atNs) { }
    }

    /**
     * Starts QEMU's own migration (RAM and device state) into {@code tunnelSocket}, where Ferry
     * listens, with {@code pause-before-switchover} so that QEMU stops at {@code pre-switchover}
     * with the VM paused and its disk I/O drained.
     */
    void startRamMigration(Path tunnelSocket, RamListener listener) throws MigrationException;

    /** {@code migrate-continue pre-switchover}: QEMU sends the device state and completes. */
    void continueSwitchover() throws MigrationException;

    /** QEMU's log file, when Ferry started QEMU and keeps it; empty for a QEMU Ferry only attached to. */
    default java.util.Optional<Path> qemuLog() {
        return java.util.Optional.empty();
    }

    /** Cancels QEMU's RAM migration if one runs, and waits until QEMU has left {@code cancelling}. */
    void cancelRamMigration() throws MigrationException;

    /** Makes sure the VM runs again on this host (after a failed or cancelled migration). */
    void resume() throws MigrationException;

    /**
     * The VM's configuration as QEMU reports it (machine, memory, vCPUs, devices), sent in HELLO so that
     * the destination can refuse a VM it could not run before anything is copied.
     */
    ferry.migration.wire.VmFingerprint fingerprint() throws MigrationException;

    /** QEMU's RAM figures, as of the last query. */
    MigrationReport.Ram ramStats();

    /** The migration has ended: stop listening to QEMU's events for it (listeners must not pile up). */
    void detach();
}
