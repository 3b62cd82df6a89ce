package ferry.vm;

import ferry.migration.DestinationHost;
import ferry.migration.MigrationDestination;
import ferry.migration.MigrationException;
import ferry.migration.MigrationListener;
import ferry.migration.MigrationParameters;
import ferry.migration.MigrationReport;
import ferry.migration.MigrationRequest;
import ferry.migration.MigrationSource;
import ferry.migration.MigrationStatus;
import ferry.migration.ResumeInfo;
import ferry.migration.ResumePoint;
import ferry.migration.SourceBlocks;
import ferry.migration.SourceDisk;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorException;
import ferry.qmp.BlockInfo;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The migrations of one {@link Vm}, out and in, whoever started its QEMU: the parameters, the current (or
 * last) outgoing migration, the incoming listener, and what is kept for a resume on either side: the
 * {@link ResumePoint} of the last interrupted outgoing migration, and the {@link PartialState} of an
 * interrupted incoming one. The monitor ({@link VmMonitor}) and the QMP server ({@link VmQmp}) both start,
 * cancel and report migrations here, so that every client sees one migration with one set of parameters,
 * as in QEMU.
 *
 * <p>Threads: monitor and QMP client threads; claiming a new migration is synchronized, so that of two
 * {@code migrate} commands the second is refused before it touches anything of the first. The partial
 * state has its own thread ({@link PartialState}).
 */
final class Migrations implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Migrations.class.getName());

    private final Vm vm;
    private final List<MigrationListener> listeners = new CopyOnWriteArrayList<>();
    private volatile MigrationParameters parameters;
    private volatile MigrationSource source;
    private volatile MigrationDestination destination;
    private final PartialState partial = new PartialState(() -> parameters.partialTimeoutMs());
    /** The last resume point a migration took over or discarded: its source still names it, but it is spent. */
    private ResumePoint spent;

    /** @param initial the parameters the VM starts with (QEMU's {@code -global migration.*}, or the defaults) */
    Migrations(Vm vm, MigrationParameters initial) {
        this.vm = vm;
        this.parameters = initial;
    }

    /** The partial state this host keeps of an interrupted incoming migration: the destination's side of a resume. */
    PartialState partial() {
        return partial;
    }

    /** Hears every later migration's status changes and passes, out and in (QMP's MIGRATION events). */
    void addListener(MigrationListener listener) {
        listeners.add(listener);
    }

    MigrationParameters parameters() {
        return parameters;
    }

    /** Changes the parameters; a running migration takes the new bandwidth at once. Refuses a granule change while one runs. */
    synchronized void parameters(MigrationParameters updated) throws MonitorException {
        if (running().isPresent() && updated.granuleSize() != parameters.granuleSize()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "granule-size cannot change while a migration runs");
        }
        boolean timeoutChanged = updated.partialTimeoutMs() != parameters.partialTimeoutMs();
        parameters = updated;
        MigrationSource current = source;
        if (current != null) {
            current.maxBandwidth(updated.maxBandwidthBytesPerSec());
        }
        if (timeoutChanged) {
            partial.timeoutChanged();
        }
    }

    /** The current or last outgoing migration. */
    Optional<MigrationSource> source() {
        return Optional.ofNullable(source);
    }

    /** The outgoing migration, while it runs. */
    Optional<MigrationSource> running() {
        return source().filter(m -> !m.stats().status().finished());
    }

    /** The incoming listener, once this host waits for (or received) a migration. */
    Optional<MigrationDestination> destination() {
        return Optional.ofNullable(destination);
    }

    /** True while this host waits for an incoming migration that has not completed: the VM does not run here. */
    boolean waitingForIncoming() {
        MigrationDestination d = destination;
        return d != null && d.runningVm().isEmpty();
    }

    /** True when the last outgoing migration handed the VM over to its destination: {@code cont} here would run it twice. */
    boolean handedOver() {
        return source().map(MigrationSource::handedOver).orElse(false);
    }

    /**
     * What {@code info migrate} and {@code query-migrate} show: the outgoing migration, else the incoming one, else
     * nothing but the partial state this host may keep (found at start, before any source came).
     */
    MigrationReport report() {
        MigrationSource s = source;
        if (s != null) {
            return s.stats().report();
        }
        MigrationDestination d = destination;
        if (d == null || d.waitingForFirstSource()) {
            MigrationReport idle = MigrationReport.idle();
            return new MigrationReport(idle.status(), idle.phase(), idle.dirtyPass(), idle.totalTimeMs(), idle.expectedDowntimeMs(),
                    idle.downtimeMs(), idle.ram(), idle.diskTransferredBytes(), idle.diskRemainingBytes(), idle.diskTotalBytes(),
                    idle.wireBytes(), idle.throughputBytesPerSec(), idle.diskDirtyRateBytesPerSec(), idle.writeLimitBytesPerSec(),
                    idle.error(), partial.held().map(ResumeInfo.class::cast));
        }
        return d.stats().report();
    }

    /** True when {@link #report()} describes an incoming migration. */
    boolean reportsIncoming() {
        return source == null && destination != null && !destination.waitingForFirstSource();
    }

    /** Starts listening for a source; the destination's sessions report to the listeners. */
    synchronized MigrationDestination listen(MigrationUri uri, DestinationHost host) throws IOException {
        if (destination != null) {
            throw new IllegalStateException("already listening for an incoming migration");
        }
        MigrationDestination d;
        try {
            d = new MigrationDestination(uri.host(), uri.port(), host, vm.tls().destination(parameters));
        } catch (ferry.tls.TlsException e) {
            throw new IOException(e.getMessage(), e);
        }
        listeners.forEach(d::addListener);
        d.start();
        destination = d;
        return d;
    }

    /**
     * Claims and starts an outgoing migration; returns it running (detached: the caller may follow it). With
     * {@code resume} ({@code -r}) it goes on from the resume point the last interrupted migration kept; without, a
     * kept resume point is discarded first (its dirty tracking leaves QEMU) and the migration starts over.
     */
    MigrationSource start(MigrationUri uri, boolean blocks, boolean incremental, boolean resume) throws MonitorException {
        if (waitingForIncoming()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "this VM waits for an incoming migration; it cannot migrate out");
        }
        MigrationSource started;
        synchronized (this) {
            MigrationSource previous = source;
            if (previous != null && !previous.stats().status().finished()) {
                throw new MonitorException(MonitorException.Kind.REFUSED, "There's a migration process in progress");
            }
            if (previous != null && previous.stats().status() == MigrationStatus.COMPLETED) {
                throw new MonitorException(MonitorException.Kind.REFUSED, "the VM already runs on the destination"
                        + " (the last migration completed); migrating this paused copy would run the VM twice");
            }
            Optional<ResumePoint> kept = Optional.ofNullable(previous).flatMap(MigrationSource::resumePoint).filter(p -> p != spent);
            if (resume && kept.isEmpty()) {
                throw new MonitorException(MonitorException.Kind.REFUSED, "nothing to resume: no interrupted migration of this VM"
                        + " (migrate without -r starts one)");
            }
            started = newSource(uri, blocks, incremental, resume ? kept : Optional.empty());
            if (!resume && kept.isPresent()) {
                discard(kept.get());
            }
            kept.ifPresent(point -> spent = point);
            listeners.forEach(started.stats()::addListener);
            source = started;
        }
        started.start();
        return started;
    }

    /** {@code migrate_cancel}: silent when nothing runs, as in QEMU. */
    void cancel(String reason) {
        running().ifPresent(m -> m.cancel(reason));
    }

    /** A fresh start after an interrupted migration: what that one kept in QEMU goes first, with one log line. */
    private static void discard(ResumePoint point) throws MonitorException {
        LOG.log(System.Logger.Level.INFO, "discarding the resume point of migration " + point.migrationId() + " ("
                + point.info().owedBytes() + " bytes owed): migrate without -r starts over");
        try {
            point.discard();
        } catch (MigrationException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, "removing what the interrupted migration " + point.migrationId()
                    + " kept in QEMU (its dirty bitmap) failed: " + e.getMessage() + "; query-block shows what is left", e);
        }
    }

    /** @param resumeFrom {@code -r}: the resume point the new migration goes on from, with its block layer */
    private MigrationSource newSource(MigrationUri uri, boolean blocks, boolean incremental, Optional<ResumePoint> resumeFrom)
            throws MonitorException {
        QmpClient qmp = vm.qmp().orElseThrow(() -> new MonitorException(MonitorException.Kind.REFUSED,
                "the VM is not running here yet: it waits for an incoming migration"));
        try {
            List<QemuSourceBlocks.Drive> drives = vm.migratedDrives(qmp);
            List<SourceDisk> disks = new ArrayList<>();
            for (QemuSourceBlocks.Drive drive : drives) {
                disks.add(new SourceDisk(drive.id(), drive.size(), drive.format(),
                        incremental ? Optional.of(base(qmp, drive)) : Optional.empty()));
            }
            SourceBlocks sourceBlocks = resumeFrom.isPresent() ? resumeFrom.get().blocks()
                    : new QemuSourceBlocks(qmp, drives, vm.runtime().resolve("qemu-nbd.sock"));
            MigrationParameters p = parameters;
            MigrationRequest request;
            try {
                request = new MigrationRequest(uri.host(), uri.port(), blocks || incremental, incremental, vm.tls().source(p),
                        resumeFrom.isPresent());
            } catch (IllegalArgumentException e) {
                throw new MonitorException(MonitorException.Kind.REFUSED, e.getMessage() + " (or migrate_set_capability block on)");
            }
            return new MigrationSource(vm.name(), disks, new QmpSourceVm(qmp, p.downtimeLimitMs(), vm.qemuLog()), sourceBlocks,
                    request, p, vm.runtime().path(), resumeFrom);
        } catch (ferry.tls.TlsException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, "asking QEMU for the VM's state failed: " + e.getMessage(), e);
        } catch (MigrationException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        }
    }

    /**
     * For {@code -i}: the base under the drive's qcow2 overlay (as QEMU reports it), identified by
     * size and content digest on the migration's thread. Ferry reads the base, which nobody writes,
     * with its own image code.
     */
    private static SourceDisk.Base base(QmpClient qmp, QemuSourceBlocks.Drive drive) throws MonitorException, QmpException {
        Optional<BlockInfo.Inserted> inserted = qmp.execute(new QmpCommand.QueryBlock()).stream()
                .flatMap(b -> b.inserted().stream())
                .filter(i -> i.nodeName().equals(Optional.of(drive.nodeName()))).findFirst();
        Optional<String> backing = inserted.flatMap(BlockInfo.Inserted::backingFile);
        if (!drive.format().equals("qcow2") || backing.isEmpty()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "incremental migration (-i) needs qcow2 disks with a"
                    + " backing file; " + drive.id() + " is " + drive.format() + " without a base");
        }
        Path overlay = Path.of(inserted.get().file()).toAbsolutePath();
        Path base = overlay.getParent().resolve(backing.get());
        if (!Files.isRegularFile(base)) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "the base image " + base + " of " + drive.id() + " is not a file");
        }
        String name = Path.of(backing.get()).getFileName().toString();
        return () -> {
            try (ferry.image.BlockImage image = ferry.image.Images.open(base, ferry.image.Images.probeFormat(base), true)) {
                return ferry.migration.BaseIdentities.of(image, name, Thread.currentThread()::isInterrupted);   // cancel interrupts
            } catch (IOException e) {
                throw new MigrationException(ferry.migration.Phase.HANDSHAKE, "reading the base image " + base + " of "
                        + drive.id() + " failed: " + e.getMessage(), e);
            }
        };
    }

    /**
     * {@code migrate_incoming_discard} (and {@code quit} on a destination): removes the partial state this host keeps;
     * returns what was removed, empty when nothing was kept. Refused while an incoming migration uses it.
     */
    Optional<ResumeInfo.PartialHeld> discardPartial(String why) throws MonitorException {
        return partial.discard(why);
    }

    /**
     * Cancels an outgoing migration (the source VM resumes), stops listening for an incoming one and stops waiting to
     * remove a kept partial state (it stays on disk for the next start).
     */
    @Override
    public void close() throws IOException, InterruptedException {
        MigrationSource s = source;
        if (s != null) {
            s.close();
        }
        MigrationDestination d = destination;
        if (d != null) {
            d.close();
        }
        partial.close();
    }
}
