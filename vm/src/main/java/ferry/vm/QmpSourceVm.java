package ferry.vm;

import ferry.migration.MigrationException;
import ferry.migration.MigrationReport;
import ferry.migration.Phase;
import ferry.migration.SourceVm;
import ferry.qmp.MigrationInfo;
import ferry.qmp.QmpClient;
import ferry.qmp.MigrationState;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpEvent;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpException;
import ferry.qmp.StatusInfo;
import java.nio.file.Path;
import java.util.Map;
import java.util.OptionalLong;

/**
 * The migration source's VM, driven through QMP: QEMU migrates its RAM and device state into
 * Ferry's tunnel socket with {@code pause-before-switchover} and {@code events} on, and its own
 * bandwidth cap lifted (Ferry's one stream applies {@code max-bandwidth} to disks and RAM together).
 *
 * <p>Threads: the {@code migration-send} thread calls it; QMP events arrive on {@code qmp-reader}.
 */
final class QmpSourceVm implements SourceVm {
    private static final System.Logger LOG = System.getLogger(QmpSourceVm.class.getName());
    /** QEMU's own rate limit, lifted: 100 GB/s. */
    private static final long UNLIMITED = 100_000_000_000L;
    private static final long SETTLE_TIMEOUT_MS = 15_000;

    private final QmpClient qmp;
    private final long downtimeLimitMs;
    private final boolean wasRunning;
    private volatile QmpEventListener listener;

    private final java.util.Optional<java.nio.file.Path> qemuLog;

    QmpSourceVm(QmpClient qmp, long downtimeLimitMs, java.util.Optional<java.nio.file.Path> qemuLog) throws QmpException {
        this.qmp = qmp;
        this.qemuLog = qemuLog;
        this.downtimeLimitMs = downtimeLimitMs;
        this.wasRunning = qmp.execute(new QmpCommand.QueryStatus()).running();
    }

    @Override
    public void startRamMigration(Path tunnelSocket, RamListener ramListener) throws MigrationException {
        listener = event -> {
            if (event instanceof QmpEvent.MigrationEvent(MigrationState status)) {
                ramListener.ramStatus(ferry.migration.RamStatus.ofQapi(status.qapiName()));
            } else if (event instanceof QmpEvent.Stop) {
                ramListener.vmStopped(System.nanoTime());      // stamped on arrival: the downtime's start
            }
        };
        qmp.addListener(listener);
        try {
            qmp.execute(new QmpCommand.MigrateSetCapabilities(Map.of("pause-before-switchover", true, "events", true)));
            // The RAM's share of the downtime: the disks' last pass takes the other half (Convergence).
            qmp.execute(new QmpCommand.MigrateSetParameters(OptionalLong.of(UNLIMITED),
                    OptionalLong.of(Math.max(1, downtimeLimitMs / 2))));
            qmp.execute(new QmpCommand.Migrate("unix:" + tunnelSocket));
        } catch (QmpException e) {
            qmp.removeListener(listener);
            throw new MigrationException(Phase.RAM, "QEMU refused to start its RAM migration: " + e.getMessage(), e);
        }
    }

    @Override
    public void continueSwitchover() throws MigrationException {
        try {
            qmp.execute(new QmpCommand.MigrateContinue(MigrationState.PRE_SWITCHOVER));
        } catch (QmpException e) {
            throw new MigrationException(Phase.SWITCHOVER, "QEMU refused migrate-continue: " + e.getMessage(), e);
        }
    }

    @Override
    public void cancelRamMigration() throws MigrationException {
        try {
            qmp.execute(new QmpCommand.MigrateCancel());
            long deadline = System.currentTimeMillis() + SETTLE_TIMEOUT_MS;
            while (System.currentTimeMillis() < deadline) {
                MigrationInfo info = qmp.execute(new QmpCommand.QueryMigrate());
                MigrationState state = info.status().orElse(MigrationState.NONE);
                if (state != MigrationState.CANCELLING && state != MigrationState.ACTIVE && state != MigrationState.SETUP
                        && state != MigrationState.PRE_SWITCHOVER && state != MigrationState.DEVICE) {
                    return;
                }
                Thread.sleep(20);
            }
            throw new MigrationException(Phase.RAM, "QEMU's migration did not stop within " + SETTLE_TIMEOUT_MS + " ms of migrate_cancel");
        } catch (QmpException e) {
            throw new MigrationException(Phase.RAM, "migrate_cancel failed: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrationException(Phase.RAM, "interrupted while QEMU's migration was being cancelled", e);
        } finally {
            QmpEventListener l = listener;
            if (l != null) {
                qmp.removeListener(l);
            }
        }
    }

    @Override
    public void resume() throws MigrationException {
        if (!wasRunning) {
            return;                     // the user had stopped it before migrating: leave it stopped
        }
        try {
            StatusInfo status = qmp.execute(new QmpCommand.QueryStatus());
            if (!status.running()) {
                LOG.log(System.Logger.Level.INFO, "resuming the source VM (was " + status.status().qapiName() + ")");
                qmp.execute(new QmpCommand.Cont());
            }
        } catch (QmpException e) {
            throw new MigrationException(Phase.COMPLETE, "cont on the source VM failed: " + e.getMessage(), e);
        }
    }

    @Override
    public ferry.migration.wire.VmFingerprint fingerprint() throws MigrationException {
        try {
            return QemuFingerprint.of(qmp);
        } catch (QmpException e) {
            throw new MigrationException(Phase.HANDSHAKE, "reading the VM's configuration from QEMU failed: " + e.getMessage(), e);
        }
    }

    @Override
    public MigrationReport.Ram ramStats() {
        try {
            MigrationInfo info = qmp.execute(new QmpCommand.QueryMigrate(), 2_000);
            return info.ram().map(r -> new MigrationReport.Ram(r.transferredBytes(), r.remainingBytes(), r.totalBytes(),
                    r.duplicatePages(), r.normalPages(), r.dirtyPagesRate(), r.dirtySyncCount())).orElse(MigrationReport.Ram.NONE);
        } catch (QmpException e) {
            LOG.log(System.Logger.Level.DEBUG, "query-migrate for info migrate failed: " + e.getMessage());
            return MigrationReport.Ram.NONE;
        }
    }

    @Override
    public void detach() {
        QmpEventListener l = listener;
        if (l != null) {
            qmp.removeListener(l);
        }
    }

    @Override
    public java.util.Optional<java.nio.file.Path> qemuLog() {
        return qemuLog;
    }
}
