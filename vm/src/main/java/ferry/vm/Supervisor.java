package ferry.vm;

import ferry.migration.MigrationDestination;
import ferry.migration.MigrationException;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorException;
import ferry.monitor.MonitorServer;
import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpException;
import ferry.qmp.QmpServer;
import ferry.qmp.VersionInfo;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/**
 * One {@code ferry run}: supervises one VM the way one {@code qemu-system-x86_64} process is one VM.
 * Wires QEMU (its child, which opens the VM's disks itself, as the user's {@code -drive}s say), the
 * monitor, the QMP server, and migration in either direction. Ferry joins QEMU's block layer only while it migrates.
 *
 * <p>Lifecycle: {@link #start()} brings everything up (or, with {@code -incoming}, only the monitor,
 * the QMP server and the migration listener, after a moment's probe of the configuration: images and
 * QEMU come with the first source); {@link #awaitExit()} blocks until QEMU exits or {@code quit};
 * {@link #close()} stops QEMU and removes the runtime directory. Ferry exits with the VM; QEMU
 * survives a crash of Ferry (kill -9): the guest goes on, and the runtime directory with QEMU's QMP
 * socket stays until QEMU exits ({@code ferry attach --qmp} takes it back).
 *
 * <p>A destination ({@code -incoming}) that starts again after it was killed or its host restarted: a QEMU its killed
 * predecessor left waiting for the migration is quit ({@link StaleIncomingQemu}), and the images and resume journals
 * it left are kept as this host's partial state ({@link PartialState#find}), so that {@code migrate -r} goes on. Its
 * {@code quit} removes that state; a signal does not.
 *
 * <p>Threads: the caller's thread starts and awaits; QEMU's exit is seen on {@code qemu-wait};
 * the monitor's and QMP server's client threads call the {@code VmMonitor} and {@code VmQmp};
 * {@code vm-adopt} waits for an incoming migration.
 */
public final class Supervisor implements Vm, AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Supervisor.class.getName());
    /** How long a second {@link #close()} waits for the first: QEMU's stop (10 s) plus flushing the disks. */
    private static final long CLOSE_WAIT_MS = 60_000;

    private final VmConfig config;
    private final CompletableFuture<String> exit = new CompletableFuture<>();
    private final Migrations migrations;
    private TlsObjects tls;
    private Thread tlsWarmUp;
    private final List<QmpEventListener> qemuListeners = new CopyOnWriteArrayList<>();
    private final List<QmpServer> qmpServers = new ArrayList<>();
    private RuntimeDir runtime;
    private QemuLauncher launcher;
    private MonitorServer monitor;
    private MetricsServer metrics;
    private Thread adopter;
    private volatile QemuLauncher.Probe probe;
    private volatile QemuProcess qemu;
    private volatile boolean crashed;
    /** {@code quit} ended the VM (not a signal): the partial state of an incoming migration goes with it. */
    private volatile boolean quitRequested;
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
    private final java.util.concurrent.CountDownLatch closeDone = new java.util.concurrent.CountDownLatch(1);

    public Supervisor(VmConfig config) {
        this.config = config;
        this.migrations = new Migrations(this, config.migrationParameters());
    }

    public VmConfig config() {
        return config;
    }

    public void start() throws IOException, QemuException {
        tls = TlsObjects.load(config.objects());           // unreadable credentials fail the start, as in QEMU
        if (config.objects().stream().anyMatch(o -> o instanceof VmObject.TlsCredsX509)) {
            // a platform thread: seconds of CPU on a virtual thread would hold a carrier the monitor may need
            tlsWarmUp = ferry.linux.Threads.platform("tls-warmup").newThread(tls::warmUp);
            tlsWarmUp.start();
        }
        java.nio.file.Path runtimeParent = config.runtimeDir().orElse(RuntimeDir.defaultParent());
        if (config.isIncoming()) {
            StaleIncomingQemu.handle(runtimeParent, config.name());   // a killed destination's QEMU holds our images
        }
        runtime = RuntimeDir.create(runtimeParent, config.name());
        launcher = new QemuLauncher(config, runtime);
        VmMonitor vmMonitor = new VmMonitor(this);
        monitor = new MonitorServer(vmMonitor, config.monitors());
        VmQmp vmQmp = new VmQmp(this, vmMonitor);
        addQemuListener(vmQmp);
        migrations.addListener(vmQmp);
        for (ferry.qmp.QmpEndpoint endpoint : config.qmpServers()) {
            QmpServer server = new QmpServer(vmQmp, List.of(endpoint));
            vmQmp.serve(server);
            qmpServers.add(server);
        }
        if (config.isIncoming()) {
            // what an earlier run of this destination left: its images and journals (a resume goes on from them)
            migrations.partial().find(config.drives().stream().map(VmConfig.Drive::file).toList());
            probe = launcher.probe();                  // this host's fingerprint, before any source can come
            switch (config.incoming().get()) {
                case VmConfig.Incoming.Listen listen -> listen(listen.uri());
                case VmConfig.Incoming.Defer defer -> System.err.println("ferry: " + config.name() + " waits for"
                        + " migrate_incoming tcp:HOST:PORT in its monitor or migrate-incoming on its QMP socket (-incoming defer)");
            }
        } else {
            for (VmConfig.Drive drive : config.drives()) {
                if (!Files.exists(drive.file())) {
                    throw new IOException("disk " + drive.id() + ": " + drive.file() + " does not exist (create it with qemu-img create)");
                }
            }
            attach(launcher.start(false));
        }
        for (QmpServer server : qmpServers) {
            server.start();
        }
        if (config.process().metrics().isPresent()) {
            metrics = new MetricsServer(config.process().metrics().get(), this);
            metrics.start();
        }
        monitor.start();
    }

    private synchronized void listen(MigrationUri requested) throws IOException {
        MigrationUri uri = VmConfigParser.listenAddress(requested);
        MigrationDestination destination = migrations.listen(uri,
                new IncomingVm(config, runtime, launcher, probe.fingerprint(), migrations.partial()));
        adopter = ferry.linux.Threads.unstartedVirtual("vm-adopt", this::adoptIncoming);
        adopter.start();
        String tlsCreds = migrations.parameters().tlsCreds();
        System.err.println("ferry: " + config.name() + " waits for an incoming migration on tcp:" + uri.host() + ":"
                + destination.port() + (tlsCreds.isEmpty() ? "" : " (TLS, tls-creds " + tlsCreds + ")"));
    }

    @Override
    public synchronized void listenForIncoming(MigrationUri uri) throws MonitorException {
        if (!(config.incoming().orElse(null) instanceof VmConfig.Incoming.Defer)) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "'-incoming' was not specified on the command line");
        }
        if (migrations.destination().isPresent()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "The incoming migration has already been started");
        }
        try {
            listen(uri);
        } catch (IOException e) {
            throw new MonitorException(MonitorException.Kind.FAILED, "listening on tcp:" + uri.host() + ":" + uri.port()
                    + " failed: " + e.getMessage(), e);
        }
    }

    private void attach(QemuProcess process) {
        qemuListeners.forEach(process::addListener);
        qemu = process;
        process.onExit().thenAccept(code -> {
            if (!exit.isDone()) {
                crashed = code != 0;
                String why = code == 0 ? "QEMU exited (the guest powered off or quit)"
                        : "QEMU exited unexpectedly with status " + code + (code > 128 ? " (signal " + (code - 128) + ")" : "")
                          + "; its log: " + process.logFile();
                exit.complete(why);
            }
        });
    }

    private void adoptIncoming() {
        MigrationDestination destination = migrations.destination().orElseThrow();
        try {
            while (!exit.isDone() && !destination.awaitCompleted(500)) {
                // wait for a source, or for quit
            }
            destination.runningVm().ifPresent(vm -> {
                IncomingVm.Prepared prepared = (IncomingVm.Prepared) vm;
                attach(prepared.qemu());
                System.err.println("ferry: incoming migration completed; " + config.name() + " runs here");
            });
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Blocks until the VM is gone (QEMU exited, or {@code quit}); returns why. */
    public String awaitExit() throws InterruptedException {
        try {
            return exit.get();
        } catch (java.util.concurrent.ExecutionException e) {
            return "supervisor failed: " + e.getCause();
        }
    }

    public boolean crashed() {
        return crashed;
    }

    // ---- Vm: what the monitor, the QMP server and the migrations read and change ---------------

    @Override
    public String name() {
        return config.name();
    }

    @Override
    public Optional<QmpClient> qmp() {
        return Optional.ofNullable(qemu).map(QemuProcess::qmp);
    }

    @Override
    public Optional<java.nio.file.Path> qemuLog() {
        QemuLauncher l = launcher;
        return l == null ? Optional.empty() : Optional.of(l.qemuLog());
    }

    @Override
    public Optional<VersionInfo> qemuVersion() {
        QemuProcess q = qemu;
        if (q != null) {
            return Optional.ofNullable(q.qmp().version());
        }
        return Optional.ofNullable(probe).map(QemuLauncher.Probe::version);
    }

    /** The command line's {@code -drive}s, in order. */
    @Override
    public List<QemuSourceBlocks.Drive> migratedDrives(QmpClient qmp) throws QmpException, MigrationException {
        return QemuSourceBlocks.describe(qmp, config.drives().stream().map(VmConfig.Drive::id).toList());
    }

    @Override
    public RuntimeDir runtime() {
        return runtime;
    }

    @Override
    public Migrations migrations() {
        return migrations;
    }

    /**
     * {@code quit} (the monitor's, or QMP's on a destination): the VM ends, {@link #close()} stops QEMU, and a destination
     * removes the partial state it keeps. A signal ends the VM through {@link #close()} alone: a destination restarted
     * by its service manager finds its partial state again.
     */
    @Override
    public void quit(String why) {
        quitRequested = true;
        exit.complete(why);
    }

    @Override
    public void addQemuListener(QmpEventListener listener) {
        qemuListeners.add(listener);
        QemuProcess q = qemu;
        if (q != null) {
            q.addListener(listener);
        }
    }

    /**
     * Stops everything, once. The shutdown hook and the main thread both call this, and the first
     * to arrive does the work: a later caller waits for it, because a shutdown hook that returned
     * early would let the JVM halt in the middle of the other's cleanup (QEMU killed by its death
     * signal instead of stopped, images not flushed, the runtime directory left behind).
     */
    @Override
    public void close() throws IOException, InterruptedException {
        if (!closed.compareAndSet(false, true)) {
            exit.complete("ferry is shutting down");
            if (!closeDone.await(CLOSE_WAIT_MS, TimeUnit.MILLISECONDS)) {
                throw new IOException("shutting down " + config.name() + ": the other shutdown did not end within "
                        + CLOSE_WAIT_MS + " ms");
            }
            return;
        }
        try {
            exit.complete("ferry is shutting down");
            closeOnce();
        } finally {
            closeDone.countDown();
        }
    }

    @Override
    public TlsObjects tls() {
        return tls;
    }

    private void closeOnce() throws IOException, InterruptedException {
        if (tlsWarmUp != null) {
            tlsWarmUp.interrupt();
            tlsWarmUp.join(5_000);
        }
        List<Exception> failures = new ArrayList<>();
        if (migrations.source().isPresent()) {
            migrations.source().get().close();
        }
        Thread a;
        synchronized (this) {
            a = adopter;
        }
        if (a != null) {
            a.interrupt();
            a.join(5_000);
        }
        if (migrations.destination().isPresent()) {
            try {
                migrations.destination().get().close();
            } catch (IOException e) {
                failures.add(e);
            }
        }
        if (quitRequested) {
            discardPartial();                  // after the destination closed: its session gave the state back
        }
        migrations.partial().close();
        for (QmpServer server : qmpServers) {
            try {
                server.close();
            } catch (IOException e) {
                failures.add(e);
            }
        }
        QemuProcess q = qemu;
        if (q != null) {
            try {
                q.close();
            } catch (QemuException e) {
                failures.add(e);
            }
        }
        if (monitor != null) {
            monitor.close();
        }
        if (metrics != null) {
            metrics.close();
        }
        if (runtime != null) {
            if (q != null && crashed) {
                printLogTail(q);
            }
            runtime.close();
        }
        if (!failures.isEmpty()) {
            IOException failure = new IOException("shutting down " + config.name() + ": " + failures.get(0).getMessage(), failures.get(0));
            failures.stream().skip(1).forEach(failure::addSuppressed);
            throw failure;
        }
    }

    /** {@code quit} on a destination: the partial state it keeps goes (one log line, from {@link PartialState}). */
    private void discardPartial() {
        try {
            migrations.discardPartial("quit");
        } catch (MonitorException e) {
            LOG.log(System.Logger.Level.WARNING, "quit: the partial state was left as it is: " + e.error());
        }
    }

    private static void printLogTail(QemuProcess q) {
        try {
            List<String> lines = Files.readAllLines(q.logFile());
            lines.subList(Math.max(0, lines.size() - 10), lines.size()).forEach(l -> System.err.println("qemu: " + l));
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot read QEMU's log " + q.logFile() + ": " + e.getMessage());
        }
    }

    static long elapsedSince(long startNs) {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNs);
    }
}
