package ferry.vm;

import ferry.migration.MigrationParameters;
import ferry.migration.MigrationReport;
import ferry.migration.MigrationSource;
import ferry.migration.MigrationStats;
import ferry.migration.MigrationStatus;
import ferry.monitor.InfoMigrateParametersView;
import ferry.monitor.InfoMigrateView;
import ferry.monitor.MonitorCommand;
import ferry.monitor.MonitorException;
import ferry.monitor.MonitorHandler;
import ferry.monitor.MonitorHelp;
import ferry.monitor.MonitorOutput;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import ferry.qmp.StatusInfo;
import java.util.Map;
import java.util.Optional;

/**
 * Runs the monitor's commands against a {@link Vm} ({@code ferry run}'s or {@code ferry attach}'s):
 * Ferry's own ({@code info block}, {@code migrate}, {@code info migrate} ...) here, everything else
 * through QEMU's human monitor.
 *
 * <p>Threads: the monitor's client threads (and QMP clients' for {@code human-monitor-command}); several
 * clients may run commands at once.
 */
final class VmMonitor implements MonitorHandler {
    private static final long PROGRESS_INTERVAL_MS = 1000;

    private final Vm vm;
    private final MigrationCapabilities capabilities = new MigrationCapabilities();

    VmMonitor(Vm vm) {
        this.vm = vm;
    }

    /** The VM's migration capabilities, which QMP shares. */
    MigrationCapabilities capabilities() {
        return capabilities;
    }

    @Override
    public void execute(MonitorCommand command, MonitorOutput out) throws MonitorException {
        switch (command) {
            case MonitorCommand.Help help -> out.println(help.topic().map(t -> MonitorHelp.topic(t).orElseGet(() -> passthrough("help " + t)))
                    .orElse(MonitorHelp.all()));
            case MonitorCommand.InfoStatus s -> out.println(status());
            case MonitorCommand.InfoBlock b -> out.println(blocks(b.arguments()));
            case MonitorCommand.InfoVersion v -> out.println(version());
            case MonitorCommand.InfoMigrate m -> out.println(InfoMigrateView.render(report()));
            case MonitorCommand.InfoMigrateParameters p -> out.println(InfoMigrateParametersView.render(vm.migrations().parameters()));
            case MonitorCommand.InfoMigrateCapabilities c -> out.println(capabilities.hmpText());
            case MonitorCommand.MigrateSetCapability c -> setCapability(c);
            case MonitorCommand.Stop s -> qmp(new QmpCommand.Stop());
            case MonitorCommand.Cont c -> cont(c);
            case MonitorCommand.SystemReset r -> qmp(new QmpCommand.SystemReset());
            case MonitorCommand.SystemPowerdown p -> qmp(new QmpCommand.SystemPowerdown());
            case MonitorCommand.Quit q -> vm.quit("quit from the monitor");
            case MonitorCommand.Migrate m -> migrate(m, out);
            case MonitorCommand.MigrateCancel c -> vm.migrations().cancel("migrate_cancel from the monitor");
            case MonitorCommand.MigrateSetSpeed s -> vm.migrations().parameters(s.applyTo(vm.migrations().parameters()));
            case MonitorCommand.MigrateSetDowntime d -> vm.migrations().parameters(d.applyTo(vm.migrations().parameters()));
            case MonitorCommand.MigrateSetParameter p -> vm.migrations().parameters(p.applyTo(vm.migrations().parameters()));
            case MonitorCommand.MigrateSetTextParameter p -> setTextParameter(p);
            case MonitorCommand.MigrateIncoming i -> vm.listenForIncoming(i.uri());
            case MonitorCommand.MigrateIncomingDiscard d -> out.println(vm.migrations().discardPartial("migrate_incoming_discard from the"
                    + " monitor").map(held -> "removed the partial state of migration " + held.migrationId() + " (" + held.heldBytes()
                    + " bytes held since " + held.since() + ")").orElse("nothing to discard: this host keeps no partial state of an"
                    + " incoming migration"));
            case MonitorCommand.Passthrough p -> out.println(passthroughOrFail(p.line()));
        }
    }

    private QmpClient qemu() throws MonitorException {
        return vm.qmp().orElseThrow(() -> new MonitorException(MonitorException.Kind.REFUSED,
                "the VM is not running here yet: it waits for an incoming migration"));
    }

    private void qmp(QmpCommand<?> command) throws MonitorException {
        try {
            qemu().execute(command);
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        }
    }

    private String status() throws MonitorException {
        if (vm.qmp().isEmpty()) {
            return "VM status: paused (inmigrate)";
        }
        try {
            StatusInfo status = qemu().execute(new QmpCommand.QueryStatus());
            // QEMU 7.2's hmp_info_status: the run state in brackets only when it is not plain "paused"
            return status.running() ? "VM status: running" : status.status().qapiName().equals("paused") ? "VM status: paused"
                    : "VM status: paused (" + status.status().qapiName() + ")";
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, e.getMessage(), e);
        }
    }

    private String version() {
        String qemuVersion = vm.qemuVersion().map(Object::toString).orElse("not started");
        return "Ferry " + Optional.ofNullable(VmMonitor.class.getPackage().getImplementationVersion()).orElse("0.1.0")
                + " (QEMU " + qemuVersion + ")";
    }

    /** QEMU owns the disks: its own {@code info block} describes them. */
    private String blocks(String arguments) throws MonitorException {
        if (vm.qmp().isEmpty()) {
            return "no disks yet: they are created when the incoming migration starts";
        }
        return passthroughOrFail(arguments.isEmpty() ? "info block" : "info block " + arguments);
    }

    private MigrationReport report() {
        return vm.migrations().report();
    }

    private void migrate(MonitorCommand.Migrate command, MonitorOutput out) throws MonitorException {
        MigrationSource source = vm.migrations().start(command.uri(), command.blocks() || capabilities.block(), command.incremental(),
                command.resume());
        if (!command.detach()) {
            follow(source, out);
        }
    }

    /** {@code migrate} without {@code -d}: progress lines until the end, as QEMU's monitor waits. */
    private void follow(MigrationSource source, MonitorOutput out) throws MonitorException {
        try {
            while (!source.await(PROGRESS_INTERVAL_MS)) {
                if (!out.open()) {
                    return;                       // the client left; the migration goes on
                }
                MigrationReport r = source.stats().report();
                out.println(String.format(java.util.Locale.ROOT, "migrate: %s, %d %%, disk %d kbytes sent of %d, ram %d kbytes, %d ms",
                        r.phase().label() + (r.dirtyPass() > 0 ? " " + r.dirtyPass() : ""), r.progressPercent(),
                        r.diskTransferredBytes() >> 10, r.diskTotalBytes() >> 10, r.ram().transferredBytes() >> 10, r.totalTimeMs()));
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

    /**
     * {@code cont}, refused on a source whose VM was handed to the destination (a completed migration,
     * or one that failed after COMMIT): running it here too would run the VM twice and corrupt its
     * disks. {@code cont --force} is the documented way out when the destination surely does not run it.
     */
    private void cont(MonitorCommand.Cont c) throws MonitorException {
        if (!c.force() && vm.migrations().handedOver()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "the VM was handed over to the destination by the last"
                    + " migration; `cont` here would run it twice. If the destination surely does not run it, use `cont --force`");
        }
        qmp(new QmpCommand.Cont());
    }

    /** tls-creds and tls-authz must name objects of their kind (QEMU checks only at use; Ferry says it at once). */
    private void setTextParameter(MonitorCommand.MigrateSetTextParameter p) throws MonitorException {
        Optional<String> value = Optional.of(p.value());
        Optional<String> none = Optional.empty();
        MigrationParameters current = vm.migrations().parameters();
        vm.migrations().parameters(switch (p.parameter()) {
            case TLS_CREDS -> vm.tls().withTls(current, value, none, none);
            case TLS_HOSTNAME -> vm.tls().withTls(current, none, value, none);
            case TLS_AUTHZ -> vm.tls().withTls(current, none, none, value);
            default -> p.applyTo(current);
        });
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
            // QEMU's HMP answers a mistyped command with "unknown command: 'x'" as a successful reply; Ferry
            // passes it on as it is, one line as in QEMU (no longer with the whole help below it)
            return qemu().execute(new QmpCommand.HumanMonitorCommand(line)).stripTrailing();
        } catch (QmpException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, "QEMU's monitor refused '" + line + "': " + e.getMessage(), e);
        }
    }

    /** {@code migrate_set_capability NAME on|off}: QEMU's checks, then Ferry's capabilities (see {@link MigrationCapabilities}). */
    private void setCapability(MonitorCommand.MigrateSetCapability c) throws MonitorException {
        if (vm.migrations().running().isPresent()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "There's a migration process in progress");
        }
        try {
            capabilities.set(Map.of(c.capability(), c.state()));
        } catch (IllegalArgumentException e) {
            throw new MonitorException(MonitorException.Kind.REFUSED, e.getMessage());
        }
    }
}
