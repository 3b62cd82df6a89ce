package ferry.vm;

import ferry.migration.MigrationException;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorException;
import ferry.monitor.MonitorServer;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpException;
import ferry.qmp.QmpServer;
import ferry.qmp.RunState;
import ferry.qmp.VersionInfo;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One {@code ferry attach}: Ferry's monitor, QMP server and migration for a QEMU that Ferry did not start,
 * found by its QMP socket (started by hand, by a script, by libvirt with an extra QMP socket, or left
 * running by a {@code ferry run} that died). Everything that {@code ferry run} offers once its QEMU runs
 * works the same, through the same {@link VmMonitor}, {@link VmQmp} and {@link Migrations}; the drives a
 * migration moves are every drive with an inserted, writable medium ({@link QemuSourceBlocks#discover}).
 * A QEMU started with {@code -incoming defer} receives a migration ({@link AttachedIncoming}).
 *
 * <p>Ferry never stops the QEMU it attached to: it ends when QEMU exits (the guest powered off, or
 * {@code quit} from a client, which QEMU obeys), and on a signal it only lets go (a migration in progress is
 * cancelled first, which resumes the VM).
 *
 * <p>Threads: the caller's thread starts and awaits; QEMU's events and the end of its connection arrive on
 * {@code qmp-reader}; the monitor's and QMP server's client threads call {@link VmMonitor} and {@link VmQmp}.
 */
public final class Attachment implements Vm, AutoCloseable {
    private static final long CONNECT_TIMEOUT_MS = 10_000;

    private final AttachConfig config;
    private final CompletableFuture<String> exit = new CompletableFuture<>();
    private final Migrations migrations = new Migrations(this, ferry.migration.MigrationParameters.defaults());
    /** An attached QEMU's command line is not Ferry's: no -object for TLS; the parameters name none. */
    private final TlsObjects tls = TlsObjects.none();

    @Override
    public TlsObjects tls() {
        return tls;
    }
    private final List<QmpServer> qmpServers = new ArrayList<>();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final QmpClient qmp;
    private volatile String name = "vm";
    private RuntimeDir runtime;
    private MonitorServer monitor;
    private AttachedIncoming incoming;
    /** {@code quit} ended the VM (not a signal): the partial state of an incoming migration goes with it. */
    private volatile boolean quitRequested;

    public Attachment(AttachConfig config) {
        this.config = config;
        this.qmp = new QmpClient(config.qmpSocket());
    }

    /** Connects to QEMU, then brings up the monitor and QMP server (and, with {@code -incoming}, the listener). */
    public void start() throws IOException {
        VmMonitor vmMonitor = new VmMonitor(this);
        VmQmp vmQmp = new VmQmp(this, vmMonitor);
        qmp.addListener(vmQmp);                         // before start: every event
        migrations.addListener(vmQmp);
        VersionInfo version;
        RunState state;
        try {
            version = qmp.start(CONNECT_TIMEOUT_MS);
            name = config.name().or(() -> queryName()).orElse("vm");
            state = qmp.execute(new QmpCommand.QueryStatus()).status();
        } catch (QmpException e) {
            throw new IOException("attaching to the QEMU at " + config.qmpSocket() + " failed: " + e.getMessage()
                    + " (is QEMU running with -qmp unix:" + config.qmpSocket() + ",server,nowait, and no other client connected?)", e);
        }
        qmp.closed().thenAccept(reason -> exit.complete("QEMU's QMP connection ended (QEMU exited or quit): " + reason.getMessage()));
        removeLeftovers();
        runtime = RuntimeDir.create(config.runtimeDir().orElse(RuntimeDir.defaultParent()), name);
        monitor = new MonitorServer(vmMonitor, config.monitors());
        for (ferry.qmp.QmpEndpoint endpoint : config.qmpServers()) {
            QmpServer server = new QmpServer(vmQmp, List.of(endpoint));
            vmQmp.serve(server);
            qmpServers.add(server);
        }
        incoming = new AttachedIncoming(qmp, runtime, config.incomingOverwrite(), migrations.partial());
        if (config.incoming().isPresent()) {
            if (state != RunState.INMIGRATE) {
                throw new IOException("-incoming: the QEMU at " + config.qmpSocket() + " does not wait for a migration (status "
                        + state.qapiName() + "); start it with -incoming defer");
            }
            try {
                listenForIncoming(config.incoming().get());
            } catch (MonitorException e) {
                throw new IOException(e.error(), e);
            }
        }
        for (QmpServer server : qmpServers) {
            server.start();
        }
        monitor.start();
        System.err.println("ferry: attached to " + name + " (QEMU " + version + ", " + state.qapiName() + ") through "
                + config.qmpSocket() + "; QEMU runs on when Ferry exits");
    }

    /** A Ferry that died while migrating this VM left bitmaps and exports in QEMU: they would block the next migration. */
    private void removeLeftovers() throws IOException {
        try {
            List<String> removed = QemuSourceBlocks.removeLeftovers(qmp);
            if (!removed.isEmpty()) {
                System.err.println("ferry: removed what an earlier Ferry left in QEMU: " + String.join(", ", removed));
            }
        } catch (MigrationException e) {
            throw new IOException("removing what an earlier Ferry left in QEMU failed: " + e.getMessage(), e);
        }
    }

    private Optional<String> queryName() {
        try {
            return qmp.execute(new QmpCommand.QueryName());
        } catch (QmpException e) {
            return Optional.empty();
        }
    }

    /** Blocks until QEMU is gone (exited or quit) or Ferry is told to let go; returns why. */
    public String awaitExit() throws InterruptedException {
        try {
            return exit.get();
        } catch (ExecutionException e) {
            return "attachment failed: " + e.getCause();
        }
    }

    // ---- Vm ------------------------------------------------------------------------------------

    @Override
    public String name() {
        return name;
    }

    @Override
    public Optional<QmpClient> qmp() {
        return Optional.of(qmp);
    }

    @Override
    public Optional<VersionInfo> qemuVersion() {
        return Optional.ofNullable(qmp.version());
    }

    /** Every drive with an inserted, writable medium. */
    @Override
    public List<QemuSourceBlocks.Drive> migratedDrives(QmpClient client) throws QmpException, MigrationException {
        return QemuSourceBlocks.discover(client);
    }

    @Override
    public RuntimeDir runtime() {
        return runtime;
    }

    @Override
    public Migrations migrations() {
        return migrations;
    }

    @Override
    public synchronized void listenForIncoming(MigrationUri uri) throws MonitorException {
        if (migrations.destination().isPresent()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "The incoming migration has already been started");
        }
        try {
            RunState state = qmp.execute(new QmpCommand.QueryStatus()).status();
            if (state != RunState.INMIGRATE) {
                throw new MonitorException(MonitorException.Kind.REFUSED, "'-incoming' was not specified on the command line");
            }
            var destination = migrations.listen(uri, incoming);
            System.err.println("ferry: " + name + " waits for an incoming migration on tcp:" + uri.host() + ":" + destination.port());
        } catch (IOException e) {                      // QmpException too
            throw new MonitorException(MonitorException.Kind.FAILED, "listening for an incoming migration failed: " + e.getMessage(), e);
        }
    }

    /**
     * {@code quit}: QEMU quits (as it would for its own monitor's quit), and so does this Ferry; the partial state of an
     * incoming migration goes too (its journals: the images are QEMU's).
     */
    @Override
    public void quit(String why) {
        quitRequested = true;
        try {
            qmp.execute(new QmpCommand.Quit());
        } catch (QmpException e) {
            // quit's reply races with QEMU closing the socket; QEMU's exit is what counts
            System.getLogger(Attachment.class.getName()).log(System.Logger.Level.DEBUG, "quit: " + e.getMessage());
        }
        exit.complete(why);
    }

    /** A signal to Ferry (SIGTERM): this Ferry ends and lets go; QEMU runs on, as DESIGN.md says. */
    public void quitFerry(String why) {
        exit.complete(why);
    }

    @Override
    public void addQemuListener(QmpEventListener listener) {
        qmp.addListener(listener);
    }

    /** Lets go of QEMU, which runs on: cancels a migration in progress, closes the servers and the QMP connection. */
    @Override
    public void close() throws IOException, InterruptedException {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        exit.complete("ferry is letting go");
        List<IOException> failures = new ArrayList<>();
        try {
            migrations.close();
        } catch (IOException e) {
            failures.add(e);
        }
        if (quitRequested) {
            try {
                migrations.discardPartial("quit");     // after the destination closed: its session gave the state back
            } catch (MonitorException e) {
                System.getLogger(Attachment.class.getName()).log(System.Logger.Level.WARNING,
                        "quit: the partial state was left as it is: " + e.error());
            }
        }
        for (QmpServer server : qmpServers) {
            try {
                server.close();
            } catch (IOException e) {
                failures.add(e);
            }
        }
        if (monitor != null) {
            monitor.close();
        }
        qmp.close();
        if (runtime != null) {
            runtime.close();
        }
        if (!failures.isEmpty()) {
            IOException failure = new IOException("letting go of " + name + ": " + failures.get(0).getMessage(), failures.get(0));
            failures.stream().skip(1).forEach(failure::addSuppressed);
            throw failure;
        }
    }
}
