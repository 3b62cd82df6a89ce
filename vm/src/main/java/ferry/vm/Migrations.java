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
 * last) outgoing migration and the incoming listener. The monitor ({@link VmMonitor}) and the QMP server
 * ({@link VmQmp}) both start, cancel and report migrations here, so that every client sees one migration
 * with one set of parameters, as in QEMU.
 *
 * <p>Threads: monitor and QMP client threads; claiming a new migration is synchronized, so that of two
 * {@code migrate} commands the second is refused before it touches anything of the first.
 */
final class Migrations implements AutoCloseable {
    private final Vm vm;
    private final List<MigrationListener> listeners = new CopyOnWriteArrayList<>();
    private volatile MigrationParameters parameters;
    private volatile MigrationSource source;
    private volatile MigrationDestination destination;

    /** @param initial the parameters the VM starts with (QEMU's {@code -global migration.*}, or the defaults) */
    Migrations(Vm vm, MigrationParameters initial) {
        this.vm = vm;
        this.parameters = initial;
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
        parameters = updated;
        MigrationSource current = source;
        if (current != null) {
            current.maxBandwidth(updated.maxBandwidthBytesPerSec());
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

    /** What {@code info migrate} and {@code query-migrate} show: the outgoing migration, else the incoming one. */
    MigrationReport report() {
        MigrationSource s = source;
        if (s != null) {
            return s.stats().report();
        }
        MigrationDestination d = destination;
        return d == null || d.waitingForFirstSource() ? MigrationReport.idle() : d.stats().report();
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

    /** Claims and starts an outgoing migration; returns it running (detached: the caller may follow it). */
    MigrationSource start(MigrationUri uri, boolean blocks, boolean incremental) throws MonitorException {
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
            started = newSource(uri, blocks, incremental);
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

    private MigrationSource newSource(MigrationUri uri, boolean blocks, boolean incremental) throws MonitorException {
        QmpClient qmp = vm.qmp().orElseThrow(() -> new MonitorException(MonitorException.Kind.REFUSED,
                "the VM is not running here yet: it waits for an incoming migration"));
        try {
            List<QemuSourceBlocks.Drive> drives = vm.migratedDrives(qmp);
            List<SourceDisk> disks = new ArrayList<>();
            for (QemuSourceBlocks.Drive drive : drives) {
                disks.add(new SourceDisk(drive.id(), drive.size(), drive.format(),
                        incremental ? Optional.of(base(qmp, drive)) : Optional.empty()));
            }
            SourceBlocks sourceBlocks = new QemuSourceBlocks(qmp, drives, vm.runtime().resolve("qemu-nbd.sock"));
            MigrationParameters p = parameters;
            return new MigrationSource(vm.name(), disks, new QmpSourceVm(qmp, p.downtimeLimitMs(), vm.qemuLog()), sourceBlocks,
                    new MigrationRequest(uri.host(), uri.port(), blocks || incremental, incremental, vm.tls().source(p)), p,
                    vm.runtime().path());
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

    /** Cancels an outgoing migration (the source VM resumes) and stops listening for an incoming one. */
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
    }
}
