package ferry.vm;

import ferry.migration.MigrationListener;
import ferry.migration.MigrationParameters;
import ferry.migration.MigrationStatus;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorCommand;
import ferry.monitor.MonitorException;
import ferry.monitor.MonitorOutput;
import ferry.monitor.MonitorParser;
import ferry.qmp.Json;
import ferry.qmp.MigrationState;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpError;
import ferry.qmp.QmpEvent;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpException;
import ferry.qmp.QmpHandler;
import ferry.qmp.QmpRequest;
import ferry.qmp.QmpServer;
import ferry.qmp.VersionInfo;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Ferry's QMP face for one {@link Vm} (docs/qmp.md, "Ferry's QMP server"): answers the migration commands
 * itself, with QEMU 7.2's shapes, and passes every other command to QEMU over Ferry's own QMP connection as
 * opaque JSON. Events: QEMU's reach every client unchanged, except those of the RAM migration Ferry runs
 * inside QEMU ({@code MIGRATION}, {@code MIGRATION_PASS}) and of Ferry's own block exports; in their place
 * come {@code MIGRATION} and {@code MIGRATION_PASS} for Ferry's migration, when a client has turned the
 * {@code events} capability on, as in QEMU.
 *
 * <p>Threads: {@link #execute} on QMP client threads; QEMU's events on {@code qmp-reader}; migration events on
 * the migration's threads. Capabilities are the VM's, shared by every client (as QEMU's are).
 */
final class VmQmp implements QmpHandler, QmpEventListener, MigrationListener {
    /** A forwarded command waits this long for QEMU, which has no timeout of its own. */
    private static final long FORWARD_TIMEOUT_MS = 600_000;
    private static final VersionInfo UNKNOWN_VERSION = new VersionInfo(0, 0, 0, "");
    /** Ferry's own block exports and bitmaps (QemuSourceBlocks) are named so; their events stay inside. */
    private static final String FERRY_PREFIX = "ferry-";

    private final Vm vm;
    private final VmMonitor monitor;
    private final List<QmpServer> servers = new CopyOnWriteArrayList<>();

    VmQmp(Vm vm, VmMonitor monitor) {
        this.vm = vm;
        this.monitor = monitor;
    }

    /** Events go to {@code server}'s clients too. */
    void serve(QmpServer server) {
        servers.add(server);
    }

    @Override
    public VersionInfo version() {
        return vm.qemuVersion().orElse(UNKNOWN_VERSION);
    }

    @Override
    public Json execute(QmpRequest request) throws QmpError {
        return switch (request) {
            case QmpRequest.Migrate m -> migrate(m);
            case QmpRequest.QueryMigrate q -> QueryMigrateView.render(vm.migrations().report(), vm.migrations().reportsIncoming());
            case QmpRequest.MigrateCancel c -> {
                vm.migrations().cancel("migrate_cancel from QMP");
                yield Json.Obj.of();
            }
            case QmpRequest.MigrateIncoming i -> incoming(i);
            case QmpRequest.MigrateIncomingDiscard d -> {
                try {
                    vm.migrations().discardPartial("x-ferry-migrate-incoming-discard from QMP");
                } catch (MonitorException e) {
                    throw QmpError.generic(e.error());
                }
                yield Json.Obj.of();
            }
            case QmpRequest.Quit q -> quit();
            case QmpRequest.MigrateSetParameters p -> setParameters(p);
            case QmpRequest.QueryMigrateParameters p -> parameters();
            case QmpRequest.MigrateSetCapabilities c -> setCapabilities(c);
            case QmpRequest.QueryMigrateCapabilities c -> capabilities();
            case QmpRequest.MigrationStep s -> throw QmpError.generic("Ferry runs this VM's migration itself: " + s.name()
                    + " would drive QEMU's own migration behind its back");
            case QmpRequest.Cont c -> {
                if (vm.migrations().handedOver()) {
                    throw QmpError.generic("the VM was handed over to the destination by the last migration; cont here would"
                            + " run it twice (if the destination surely does not run it, use the monitor's cont --force)");
                }
                yield forward("cont", Json.Obj.of());
            }
            case QmpRequest.QueryStatus s -> vm.qmp().isEmpty() ? waitingStatus() : forward("query-status", Json.Obj.of());
            case QmpRequest.HumanMonitorCommand h -> humanMonitorCommand(h);
            case QmpRequest.Forwarded f -> forward(f.name(), f.arguments());
        };
    }

    private Json forward(String name, Json.Obj arguments) throws QmpError {
        QmpClient qmp = vm.qmp().orElseThrow(() -> QmpError.generic("the VM is not running here yet: it waits for an"
                + " incoming migration"));
        try {
            return qmp.execute(new QmpCommand.Forwarded(name, arguments), FORWARD_TIMEOUT_MS);
        } catch (QmpException e) {
            throw QmpError.of(e);
        }
    }

    /** {@code query-status} on a destination whose QEMU starts with the migration: what QEMU -incoming says. */
    private static Json waitingStatus() {
        Map<String, Json> status = new LinkedHashMap<>();
        status.put("status", Json.of("inmigrate"));
        status.put("singlestep", Json.of(false));
        status.put("running", Json.of(false));
        return new Json.Obj(status);
    }

    /**
     * {@code quit}: QEMU's own once it runs the VM here (QEMU's reply and its SHUTDOWN event, then Ferry ends with it); on
     * a destination that has not received its VM, Ferry's, as the monitor's {@code quit}: the VM ends, and with it
     * the partial state this host keeps.
     */
    private Json quit() throws QmpError {
        if (vm.qmp().isEmpty() || vm.migrations().waitingForIncoming()) {
            vm.quit("quit from QMP");
            return Json.Obj.of();
        }
        return forward("quit", Json.Obj.of());
    }

    private Json migrate(QmpRequest.Migrate m) throws QmpError {
        MigrationUri uri;
        try {
            uri = MigrationUri.parse(m.uri());
        } catch (IllegalArgumentException e) {
            throw QmpError.generic("Parameter 'uri' expects a valid migration protocol: Ferry migrates over tcp:HOST:PORT ("
                    + e.getMessage() + ")");
        }
        try {
            // QMP's migrate never waits
            vm.migrations().start(uri, m.blk() || m.inc() || monitor.capabilities().block(), m.inc(), m.resume());
        } catch (MonitorException e) {
            throw QmpError.generic(e.error());
        }
        return Json.Obj.of();
    }

    private Json incoming(QmpRequest.MigrateIncoming i) throws QmpError {
        try {
            vm.listenForIncoming(VmConfigParser.listenUri(i.uri()));
        } catch (VmConfigParser.BadOptionException e) {
            throw QmpError.generic("Parameter 'uri' expects a valid migration protocol: " + e.getMessage());
        } catch (MonitorException e) {
            throw QmpError.generic(e.error());
        }
        return Json.Obj.of();
    }

    private Json setParameters(QmpRequest.MigrateSetParameters p) throws QmpError {
        if (!p.unsupported().isEmpty()) {
            throw QmpError.generic("Parameter '" + p.unsupported().get(0) + "' is not supported by Ferry (it takes"
                    + " max-bandwidth, downtime-limit, x-granule-size, x-retry-window, x-partial-timeout, tls-creds, tls-hostname"
                    + " and tls-authz)");
        }
        MigrationParameters updated = vm.migrations().parameters();
        try {
            if (p.maxBandwidth().isPresent()) {
                updated = updated.withMaxBandwidth(p.maxBandwidth().getAsLong());
            }
            if (p.downtimeLimitMs().isPresent()) {
                updated = updated.withDowntimeLimitMs(p.downtimeLimitMs().getAsLong());
            }
            if (p.granuleSize().isPresent()) {
                updated = updated.withGranuleSize(Math.toIntExact(p.granuleSize().getAsLong()));
            }
            if (p.retryWindowMs().isPresent()) {
                updated = updated.withRetryWindowMs(p.retryWindowMs().getAsLong());
            }
            if (p.partialTimeoutMs().isPresent()) {
                updated = updated.withPartialTimeoutMs(p.partialTimeoutMs().getAsLong());
            }
            updated = vm.tls().withTls(updated, p.tlsCreds(), p.tlsHostname(), p.tlsAuthz());
            vm.migrations().parameters(updated);
        } catch (IllegalArgumentException | ArithmeticException e) {
            throw QmpError.generic(e.getMessage());
        } catch (MonitorException e) {
            throw QmpError.generic(e.error());
        }
        return Json.Obj.of();
    }

    /**
     * QEMU's {@code query-migrate-parameters} with Ferry's values for what Ferry owns (QEMU's own are what
     * Ferry set for its internal RAM migration: no TLS, since that runs over a local socket) and Ferry's
     * {@code x-granule-size}, {@code x-retry-window} and {@code x-partial-timeout}; before QEMU runs here, Ferry's
     * alone. The TLS members are always present, {@code ""} when unset, as QEMU 7.2 gives them.
     */
    private Json parameters() throws QmpError {
        Map<String, Json> members = new LinkedHashMap<>();
        if (vm.qmp().isPresent()) {
            try {
                members.putAll(forward("query-migrate-parameters", Json.Obj.of()).asObject().members());
            } catch (ferry.qmp.JsonException e) {
                throw QmpError.generic("QEMU's query-migrate-parameters is not an object: " + e.getMessage());
            }
        }
        MigrationParameters p = vm.migrations().parameters();
        members.put("tls-creds", Json.of(p.tlsCreds()));
        members.put("tls-hostname", Json.of(p.tlsHostname()));
        members.put("tls-authz", Json.of(p.tlsAuthz()));
        members.put("max-bandwidth", Json.of(p.maxBandwidthBytesPerSec()));
        members.put("downtime-limit", Json.of(p.downtimeLimitMs()));
        members.put("x-granule-size", Json.of(p.granuleSize()));
        members.put("x-retry-window", Json.of(p.retryWindowMs()));
        members.put("x-partial-timeout", Json.of(p.partialTimeoutMs()));
        return new Json.Obj(members);
    }

    private Json setCapabilities(QmpRequest.MigrateSetCapabilities c) throws QmpError {
        if (vm.migrations().running().isPresent()) {
            throw QmpError.generic("There's a migration process in progress");
        }
        try {
            monitor.capabilities().set(c.capabilities());
        } catch (IllegalArgumentException e) {
            throw QmpError.generic(e.getMessage());
        }
        return Json.Obj.of();
    }

    private Json capabilities() {
        List<Json> list = new ArrayList<>();
        monitor.capabilities().states().forEach((name, state) -> {
            Map<String, Json> entry = new LinkedHashMap<>();
            entry.put("state", Json.of(state));
            entry.put("capability", Json.of(name));
            list.add(new Json.Obj(entry));
        });
        return new Json.Arr(list);
    }

    /**
     * {@code human-monitor-command}: a line Ferry's monitor owns runs there (so HMP {@code migrate} and
     * {@code info migrate} through QMP are Ferry's, as on the monitor); any other goes to QEMU's HMP unchanged.
     * As in QEMU, an HMP error is the command's output text, not a QMP error.
     */
    private Json humanMonitorCommand(QmpRequest.HumanMonitorCommand h) throws QmpError {
        MonitorCommand command;
        try {
            command = MonitorParser.parse(h.commandLine());
        } catch (MonitorException e) {
            return Json.of(e.getMessage() + "\r\n");
        }
        if (command instanceof MonitorCommand.Passthrough) {
            Map<String, Json> arguments = new LinkedHashMap<>();
            arguments.put("command-line", Json.of(h.commandLine()));
            h.cpuIndex().ifPresent(i -> arguments.put("cpu-index", Json.of(i)));
            return forward("human-monitor-command", new Json.Obj(arguments));
        }
        StringBuilder text = new StringBuilder();
        MonitorOutput out = new MonitorOutput() {
            @Override public void println(String line) {
                if (!line.isEmpty()) {
                    text.append(line.stripTrailing().replace("\n", "\r\n")).append("\r\n");
                }
            }

            @Override public boolean open() {
                return true;
            }
        };
        try {
            monitor.execute(command, out);
        } catch (MonitorException e) {
            out.println(e.getMessage());
        }
        return Json.of(text.toString());
    }

    // ---- events -------------------------------------------------------------------------------

    @Override
    public void onEvent(QmpEvent event) {
        // the two-argument form below carries the message this listener passes on
    }

    @Override
    public void onEvent(QmpEvent event, Json.Obj message) {
        boolean internal = switch (event) {
            case QmpEvent.MigrationEvent m -> true;          // QEMU's RAM migration inside Ferry's
            case QmpEvent.MigrationPass p -> true;
            case QmpEvent.BlockExportDeleted b -> b.id().startsWith(FERRY_PREFIX);
            default -> false;
        };
        if (!internal) {
            servers.forEach(s -> s.forward(message));
        }
    }

    @Override
    public void statusChanged(MigrationStatus status) {
        if (monitor.capabilities().events() && status != MigrationStatus.NONE) {
            broadcast(new QmpEvent.MigrationEvent(state(status)));
        }
    }

    @Override
    public void passStarted(int dirtyPass) {
        if (monitor.capabilities().events()) {
            broadcast(new QmpEvent.MigrationPass(dirtyPass + 1L));     // QEMU counts passes from 1
        }
    }

    private void broadcast(QmpEvent event) {
        servers.forEach(s -> s.broadcast(event));
    }

    private static MigrationState state(MigrationStatus status) {
        return switch (status) {
            case NONE -> MigrationState.NONE;
            case SETUP -> MigrationState.SETUP;
            case ACTIVE -> MigrationState.ACTIVE;
            case COMPLETED -> MigrationState.COMPLETED;
            case FAILED -> MigrationState.FAILED;
            case CANCELLING -> MigrationState.CANCELLING;
            case CANCELLED -> MigrationState.CANCELLED;
        };
    }
}
