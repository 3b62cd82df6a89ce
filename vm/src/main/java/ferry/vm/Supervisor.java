package ferry.vm;

import ferry.migration.MigrationDestination;
import ferry.migration.MigrationParameters;
import ferry.migration.MigrationSource;
import ferry.monitor.MonitorServer;
import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * One {@code ferry run}: supervises one VM the way one {@code qemu-system-x86_64} process is one VM.
 * Wires QEMU (its child, which opens the VM's disks itself, as the user's {@code -drive}s say), the
 * monitor, and migration in either direction. Ferry joins QEMU's block layer only while it migrates.
 *
 * <p>Lifecycle: {@link #start()} brings everything up (or, with {@code -incoming}, only the monitor
 * and the migration listener: images and QEMU come with the first source; with {@code -incoming defer}
 * the listener waits for the monitor's {@code migrate_incoming}); {@link #awaitExit()}
 * blocks until QEMU exits or {@code quit}; {@link #close()} stops QEMU and removes the runtime
 * directory. Ferry exits with the VM; QEMU survives a crash of Ferry (kill -9): the guest goes on,
 * and the runtime directory with QEMU's QMP socket stays until QEMU exits.
 *
 * <p>Threads: the caller's thread starts and awaits; QEMU's exit is seen on {@code qemu-wait};
 * the monitor's client threads call the {@code VmMonitor}; {@code vm-adopt} waits for an incoming migration.
 */
public final class Supervisor implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Supervisor.class.getName());
    /** How long a second {@link #close()} waits for the first: QEMU's stop (10 s) plus flushing the disks. */
    private static final long CLOSE_WAIT_MS = 60_000;

    private final VmConfig config;
    private final CompletableFuture<String> exit = new CompletableFuture<>();
    private RuntimeDir runtime;
    private QemuLauncher launcher;
    private MonitorServer monitor;
    private TlsObjects tls;
    private Thread tlsWarmUp;
    private volatile MigrationDestination destination;
    private volatile Thread adopter;
    private volatile QemuProcess qemu;
    private volatile MigrationParameters parameters;
    private volatile MigrationSource migration;
    private volatile boolean crashed;
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
    private final java.util.concurrent.CountDownLatch closeDone = new java.util.concurrent.CountDownLatch(1);

    public Supervisor(VmConfig config) {
        this.config = config;
        this.parameters = config.migrationParameters();
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
        runtime = RuntimeDir.create(config.runtimeDir().orElse(RuntimeDir.defaultParent()), config.name());
        launcher = new QemuLauncher(config, runtime);
        monitor = new MonitorServer(new VmMonitor(this), config.monitors());
        if (config.incoming().isPresent()) {
            switch (config.incoming().get()) {
                case VmConfig.Incoming.Listen listen -> listen(listen.uri());
                case VmConfig.Incoming.Defer defer -> System.err.println("ferry: " + config.name() + " waits for"
                        + " migrate_incoming tcp:HOST:PORT in its monitor (-incoming defer)");
            }
        } else {
            for (VmConfig.Drive drive : config.drives()) {
                if (!Files.exists(drive.file())) {
                    throw new IOException("disk " + drive.id() + ": " + drive.file() + " does not exist (create it with qemu-img create)");
                }
            }
            attach(launcher.start(false));
        }
        monitor.start();
    }

    /**
     * Starts the migration listener ({@code -incoming tcp:...} at start, or {@code migrate_incoming}
     * for {@code -incoming defer}), with TLS when the tls-creds parameter is set. Once.
     */
    synchronized void listen(ferry.monitor.MigrationUri uri) throws IOException {
        if (destination != null) {
            throw new IOException("The incoming migration has already been started");
        }
        ferry.monitor.MigrationUri at = VmConfigParser.listenAddress(uri);
        MigrationDestination listener = new MigrationDestination(at.host(), at.port(), new IncomingVm(config, runtime, launcher),
                tls.destination(parameters));
        listener.start();
        destination = listener;
        adopter = ferry.linux.Threads.unstartedVirtual("vm-adopt", this::adoptIncoming);
        adopter.start();
        System.err.println("ferry: " + config.name() + " waits for an incoming migration on tcp:" + at.host() + ":"
                + listener.port() + (parameters.tlsCreds().isEmpty() ? "" : " (TLS, tls-creds " + parameters.tlsCreds() + ")"));
    }

    /** Whether {@code -incoming defer} still waits for {@code migrate_incoming}. */
    boolean deferred() {
        return config.incoming().orElse(null) instanceof VmConfig.Incoming.Defer && destination == null;
    }

    TlsObjects tls() {
        return tls;
    }

    private void attach(QemuProcess process) {
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

    /** Ends the VM (the monitor's {@code quit}, a signal). */
    void requestExit(String why) {
        exit.complete(why);
    }

    // ---- what the monitor reads and changes ---------------------------------------------------

    Optional<QemuProcess> qemu() {
        return Optional.ofNullable(qemu);
    }

    Optional<MigrationDestination> destination() {
        return Optional.ofNullable(destination);
    }

    Optional<MigrationSource> migration() {
        return Optional.ofNullable(migration);
    }

    void migration(MigrationSource source) {
        this.migration = source;
    }

    MigrationParameters parameters() {
        return parameters;
    }

    void parameters(MigrationParameters updated) {
        this.parameters = updated;
        MigrationSource current = migration;
        if (current != null) {
            current.maxBandwidth(updated.maxBandwidthBytesPerSec());
        }
    }

    RuntimeDir runtime() {
        return runtime;
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

    private void closeOnce() throws IOException, InterruptedException {
        List<Exception> failures = new ArrayList<>();
        if (tlsWarmUp != null) {
            tlsWarmUp.interrupt();
            tlsWarmUp.join(5_000);
        }
        MigrationSource source = migration;
        if (source != null) {
            source.close();
        }
        Thread adopting = adopter;
        if (adopting != null) {
            adopting.interrupt();
            adopting.join(5_000);
        }
        MigrationDestination listener = destination;
        if (listener != null) {
            try {
                listener.close();
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
