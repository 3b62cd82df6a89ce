package ferry.vm;

import ferry.migration.MigrationReport;
import ferry.migration.MigrationRequest;
import ferry.migration.MigrationSource;
import ferry.migration.MigrationStats;
import ferry.migration.MigrationStatus;
import ferry.migration.SourceBlocks;
import ferry.migration.SourceDisk;
import ferry.migration.MigrationException;
import ferry.monitor.InfoMigrateParametersView;
import ferry.monitor.InfoMigrateView;
import ferry.monitor.MonitorCommand;
import ferry.monitor.MonitorException;
import ferry.monitor.MonitorHandler;
import ferry.monitor.MonitorHelp;
import ferry.monitor.MonitorOutput;
import ferry.qemu.QemuProcess;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import ferry.qmp.StatusInfo;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Runs the monitor's commands against the supervised VM: Ferry's own ({@code info block},
 * {@code migrate}, {@code info migrate} ...) here, everything else through QEMU's human monitor.
 *
 * <p>Threads: the monitor's client threads; several clients may run commands at once.
 */
final class VmMonitor implements MonitorHandler {
    private static final long PROGRESS_INTERVAL_MS = 1000;
    /** How QEMU 7.2's HMP (also through human-monitor-command) answers a command it does not know. */
    private static final String QEMU_UNKNOWN_COMMAND = "unknown command: '";

    private final Supervisor vm;

    VmMonitor(Supervisor vm) {
        this.vm = vm;
    }

    @Override
    public void execute(MonitorCommand command, MonitorOutput out) throws MonitorException {
        switch (command) {
            case MonitorCommand.Help help -> out.println(help.topic().map(t -> MonitorHelp.topic(t).orElseGet(() -> passthrough("help " + t)))
                    .orElse(MonitorHelp.all()));
            case MonitorCommand.InfoStatus s -> out.println(status());
            case MonitorCommand.InfoBlock b -> out.println(blocks());
            case MonitorCommand.InfoVersion v -> out.println(version());
            case MonitorCommand.InfoMigrate m -> out.println(InfoMigrateView.render(report()));
            case MonitorCommand.InfoMigrateParameters p -> out.println(InfoMigrateParametersView.render(vm.parameters()));
            case MonitorCommand.Stop s -> qmp(new QmpCommand.Stop());
            case MonitorCommand.Cont c -> cont(c);
            case MonitorCommand.SystemReset r -> qmp(new QmpCommand.SystemReset());
            case MonitorCommand.SystemPowerdown p -> qmp(new QmpCommand.SystemPowerdown());
            case MonitorCommand.Quit q -> vm.requestExit("quit from the monitor");
            case MonitorCommand.Migrate m -> migrate(m, out);
            case MonitorCommand.MigrateCancel c -> cancel();
            case MonitorCommand.MigrateSetSpeed s -> vm.parameters(s.applyTo(vm.parameters()));
            case MonitorCommand.MigrateSetDowntime d -> vm.parameters(d.applyTo(vm.parameters()));
            case MonitorCommand.MigrateSetParameter p -> setParameter(p);
            case MonitorCommand.MigrateSetTextParameter p -> setTextParameter(p);
            case MonitorCommand.MigrateIncoming i -> migrateIncoming(i);
            case MonitorCommand.Passthrough p -> out.println(passthroughOrFail(p.line()));
        }
    }

    private QemuProcess qemu() throws MonitorException {
        return vm.qemu().orElseThrow(() -> new MonitorException(MonitorException.Kind.REFUSED,
                "the VM is not running here yet: it waits for an incoming migration"));
    }

    private void qmp(QmpCommand<?> command) throws MonitorException {
        try {
            qemu().qmp().execute(command);
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        }
    }

    private String status() throws MonitorException {
        if (vm.qemu().isEmpty()) {
            return "VM status: paused (inmigrate)";
        }
        try {
            StatusInfo status = qemu().qmp().execute(new QmpCommand.QueryStatus());
            return status.running() ? "VM status: running" : "VM status: paused (" + status.status().qapiName() + ")";
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        }
    }

    private String version() {
        String qemuVersion = vm.qemu().map(q -> q.qmp().version().toString()).orElse("not started");
        return "Ferry " + Optional.ofNullable(Supervisor.class.getPackage().getImplementationVersion()).orElse("0.1.0")
                + " (QEMU " + qemuVersion + ")";
    }

    /** QEMU owns the disks: its own {@code info block} describes them. */
    private String blocks() throws MonitorException {
        if (vm.qemu().isEmpty()) {
            return "no disks yet: they are created when the incoming migration starts";
        }
        return passthroughOrFail("info block");
    }

    private MigrationReport report() {
        Optional<MigrationSource> source = vm.migration();
        if (source.isPresent()) {
            return source.get().stats().report();
        }
        return vm.destination().map(d -> d.waitingForFirstSource() ? MigrationReport.idle() : d.stats().report())
                .orElse(MigrationReport.idle());
    }

    private void migrate(MonitorCommand.Migrate command, MonitorOutput out) throws MonitorException {
        if (vm.destination().isPresent() && vm.destination().get().runningVm().isEmpty()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "this VM waits for an incoming migration; it cannot migrate out");
        }
        MigrationSource source;
        // Check and claim in one step: of two migrate commands from two clients, the second is refused
        // before it touches anything of the first (QEMU's bitmaps, the stream).
        synchronized (vm) {
            Optional<MigrationSource> previous = vm.migration();
            if (previous.isPresent() && !previous.get().stats().status().finished()) {
                throw new MonitorException(MonitorException.Kind.REFUSED, "There's a migration process in progress");
            }
            if (previous.isPresent() && previous.get().stats().status() == MigrationStatus.COMPLETED) {
                throw new MonitorException(MonitorException.Kind.REFUSED, "the VM already runs on the destination"
                        + " (the last migration completed); migrating this paused copy would run the VM twice");
            }
            source = newSource(command);
            vm.migration(source);
        }
        source.start();
        if (!command.detach()) {
            follow(source, out);
        }
    }

    private MigrationSource newSource(MonitorCommand.Migrate command) throws MonitorException {
        QemuProcess qemu = qemu();
        List<String> ids = vm.config().drives().stream().map(VmConfig.Drive::id).toList();
        try {
            List<QemuSourceBlocks.Drive> drives = QemuSourceBlocks.describe(qemu.qmp(), ids);
            List<SourceDisk> disks = new ArrayList<>();
            for (int i = 0; i < drives.size(); i++) {
                QemuSourceBlocks.Drive drive = drives.get(i);
                disks.add(new SourceDisk(drive.id(), drive.size(), drive.format(),
                        command.incremental() ? Optional.of(base(qemu, drive)) : Optional.empty()));
            }
            SourceBlocks blocks = new QemuSourceBlocks(qemu.qmp(), drives, vm.runtime().resolve("qemu-nbd.sock"));
            return new MigrationSource(vm.config().name(), disks, new QmpSourceVm(qemu, vm.parameters().downtimeLimitMs()), blocks,
                    new MigrationRequest(command.uri().host(), command.uri().port(), command.blocks(), command.incremental(),
                            vm.tls().source(vm.parameters())), vm.parameters(), vm.runtime().path());
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
    private static SourceDisk.Base base(QemuProcess qemu, QemuSourceBlocks.Drive drive) throws MonitorException, QmpException {
        var inserted = qemu.qmp().execute(new ferry.qmp.QmpCommand.QueryBlock()).stream()
                .filter(b -> b.device().equals(drive.id())).findFirst().flatMap(ferry.qmp.BlockInfo::inserted);
        Optional<String> backing = inserted.flatMap(ferry.qmp.BlockInfo.Inserted::backingFile);
        if (!drive.format().equals("qcow2") || backing.isEmpty()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "incremental migration (-i) needs qcow2 disks with a"
                    + " backing file; " + drive.id() + " is " + drive.format() + " without a base");
        }
        java.nio.file.Path overlay = java.nio.file.Path.of(inserted.get().file()).toAbsolutePath();
        java.nio.file.Path base = overlay.getParent().resolve(backing.get());
        if (!java.nio.file.Files.isRegularFile(base)) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "the base image " + base + " of " + drive.id() + " is not a file");
        }
        String name = java.nio.file.Path.of(backing.get()).getFileName().toString();
        return () -> {
            try (ferry.image.BlockImage image = ferry.image.Images.open(base, ferry.image.Images.probeFormat(base), true)) {
                return ferry.migration.BaseIdentities.of(image, name, Thread.currentThread()::isInterrupted);   // cancel interrupts
            } catch (java.io.IOException e) {
                throw new MigrationException(ferry.migration.Phase.HANDSHAKE, "reading the base image " + base + " of "
                        + drive.id() + " failed: " + e.getMessage(), e);
            }
        };
    }

    /** {@code migrate} without {@code -d}: progress lines until the end, as QEMU's monitor waits. */
    private void follow(MigrationSource source, MonitorOutput out) throws MonitorException {
        try {
            while (!source.await(PROGRESS_INTERVAL_MS)) {
                if (!out.open()) {
                    return;                       // the client left; the migration goes on
                }
                MigrationReport r = source.stats().report();
                out.println(String.format("migrate: %s, disk %d/%d kbytes, ram %d kbytes, %d ms",
                        r.phase().label() + (r.dirtyPass() > 0 ? " " + r.dirtyPass() : ""), r.diskTransferredBytes() >> 10,
                        r.diskTotalBytes() >> 10, r.ram().transferredBytes() >> 10, r.totalTimeMs()));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        }
        MigrationStats stats = source.stats();
        if (stats.status() != MigrationStatus.COMPLETED) {
            throw new MonitorException(MonitorException.Kind.FAILED, "migration " + stats.status().qemuName() + ": "
                    + stats.error().orElse("no reason given"));
        }
        out.println("migration completed in " + stats.report().totalTimeMs() + " ms, downtime "
                + stats.report().downtimeMs().orElse(0) + " ms");
    }

    private void cancel() throws MonitorException {
        Optional<MigrationSource> source = vm.migration();
        if (source.isPresent() && !source.get().stats().status().finished()) {
            source.get().cancel("migrate_cancel from the monitor");
        }                                   // QEMU: migrate_cancel with nothing running is silent
    }

    /**
     * {@code cont}, refused on a source whose VM was handed to the destination (a completed migration,
     * or one that failed after COMMIT): running it here too would run the VM twice and corrupt its
     * disks. {@code cont --force} is the documented way out when the destination surely does not run it.
     */
    private void cont(MonitorCommand.Cont c) throws MonitorException {
        Optional<MigrationSource> last = vm.migration();
        if (!c.force() && last.isPresent() && last.get().handedOver()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "the VM was handed over to the destination by the last"
                    + " migration; `cont` here would run it twice. If the destination surely does not run it, use `cont --force`");
        }
        qmp(new QmpCommand.Cont());
    }

    private void setParameter(MonitorCommand.MigrateSetParameter p) throws MonitorException {
        Optional<MigrationSource> running = vm.migration().filter(m -> !m.stats().status().finished());
        if (running.isPresent() && p.parameter() == ferry.monitor.MigrationParameter.GRANULE_SIZE) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "granule-size cannot change while a migration runs");
        }
        vm.parameters(p.applyTo(vm.parameters()));
    }

    /** tls-creds and tls-authz must name objects of their kind (QEMU checks only at use; Ferry says it at once). */
    private void setTextParameter(MonitorCommand.MigrateSetTextParameter p) throws MonitorException {
        String value = p.value();
        if (!value.isEmpty() && p.parameter() == ferry.monitor.MigrationParameter.TLS_CREDS && !vm.tls().hasCredentials(value)) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "No TLS credentials with id '" + value
                    + "' (start with -object tls-creds-x509,id=" + value + ",dir=DIR,endpoint=server|client)");
        }
        if (!value.isEmpty() && p.parameter() == ferry.monitor.MigrationParameter.TLS_AUTHZ && !vm.tls().hasAuthorizer(value)) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "No authorization object with id '" + value
                    + "' (start with -object authz-simple,id=" + value + ",identity=DN or authz-list-file)");
        }
        vm.parameters(p.applyTo(vm.parameters()));
    }

    /** {@code migrate_incoming URI} on a VM started with {@code -incoming defer}: listen now, with the TLS parameters set so far. */
    private void migrateIncoming(MonitorCommand.MigrateIncoming command) throws MonitorException {
        if (vm.config().incoming().isEmpty()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "For use with '-incoming defer'");
        }
        if (!vm.deferred()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "The incoming migration has already been started");
        }
        try {
            vm.listen(command.uri());
        } catch (java.io.IOException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        }
    }

    private String passthrough(String line) {
        try {
            return passthroughOrFail(line);
        } catch (MonitorException e) {
            return e.getMessage();
        }
    }

    private String passthroughOrFail(String line) throws MonitorException {
        try {
            String text = qemu().qmp().execute(new QmpCommand.HumanMonitorCommand(line)).stripTrailing();
            if (text.startsWith(QEMU_UNKNOWN_COMMAND) && text.lines().count() == 1) {
                // QEMU's HMP answers a mistyped command with this line as a *successful* reply
                throw MonitorException.usage(text, MonitorHelp.all());
            }
            return text;
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, "QEMU's monitor refused '" + line + "': " + e.getMessage(), e);
        }
    }
}
