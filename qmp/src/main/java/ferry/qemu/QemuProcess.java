package ferry.qemu;

import ferry.linux.Threads;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpException;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * One QEMU child process and its QMP connection.
 *
 * <p>{@link Tie} says whether QEMU may outlive Ferry. A VM that {@code ferry run} supervises does: QEMU
 * owns the guest's disks, so a crash of Ferry must not take the guest with it (DESIGN.md). Helper
 * QEMUs (tests, tools) do not: they are started through {@code setpriv --pdeathsig TERM} (util-linux)
 * when that exists, so the kernel sends them SIGTERM when their parent dies. The kernel's "parent" is the
 * thread that forked it, so the fork happens on a platform thread of our own, {@code qemu-wait}, that
 * lives exactly as long as QEMU (it waits for the exit); a short-lived caller thread cannot take QEMU
 * down with it. QEMU's stdout and stderr go to {@code logFile} (appended), never to a pipe nobody reads.
 *
 * <p>Threads: {@link #start} starts {@code qemu-wait} and the client's {@code qmp-reader};
 * {@link #close} stops QEMU and joins both. Other methods may be called from any thread.
 */
public final class QemuProcess implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(QemuProcess.class.getName());
    private static final long POLL_MS = 20;
    private static final long CLOSE_TIMEOUT_MS = 10_000;

    private final String name;
    private final List<String> command;
    private final Path qmpSocket;
    private final Path logFile;
    private final QmpClient qmp;
    private final Tie tie;
    private final CompletableFuture<Process> spawned = new CompletableFuture<>();
    private final CompletableFuture<Integer> exit = new CompletableFuture<>();
    private Thread waiter;
    private Process process;

    /**
     * @param name for thread names and messages (the VM name)
     * @param command the QEMU argument vector ({@link QemuCommandLine#of})
     * @param qmpSocket the QMP socket named in the command line
     * @param logFile where QEMU's stdout and stderr go
     */
    public QemuProcess(String name, List<String> command, Path qmpSocket, Path logFile) {
        this(name, command, qmpSocket, logFile, Tie.DIES_WITH_FERRY);
    }

    /** Whether QEMU ends when the Ferry process that started it dies. */
    public enum Tie {
        /** A guest's QEMU: runs on if Ferry crashes (Ferry stops it on a normal exit). */
        OUTLIVES_FERRY,
        /** A helper QEMU: gets SIGTERM when Ferry dies. */
        DIES_WITH_FERRY
    }

    public QemuProcess(String name, List<String> command, Path qmpSocket, Path logFile, Tie tie) {
        this.tie = Objects.requireNonNull(tie, "tie");
        this.name = Objects.requireNonNull(name, "name");
        this.command = List.copyOf(command);
        this.qmpSocket = Objects.requireNonNull(qmpSocket, "qmpSocket");
        this.logFile = Objects.requireNonNull(logFile, "logFile");
        this.qmp = new QmpClient(qmpSocket);
    }

    public static QemuProcess of(QemuConfig config, Path logFile) {
        return new QemuProcess(config.name(), QemuCommandLine.of(config), config.qmpSocket(), logFile);
    }

    /** Adds a QMP event listener; add before {@link #start} to see every event. */
    public void addListener(QmpEventListener listener) {
        qmp.addListener(listener);
    }

    /**
     * Starts QEMU, waits for its QMP socket and connects. On failure QEMU is killed and the message
     * carries the end of its log.
     */
    public synchronized void start(long timeoutMs) throws QemuException {
        if (waiter != null) {
            throw new IllegalStateException("qemu already started: name=" + name);
        }
        long deadlineNs = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        try {
            Files.deleteIfExists(qmpSocket);
            Files.createDirectories(logFile.toAbsolutePath().getParent());
        } catch (IOException e) {
            throw new QemuException(QemuException.Kind.START, "qemu start failed: name=" + name
                    + " socket=" + qmpSocket + " log=" + logFile + ": " + e.getMessage(), e);
        }
        List<String> argv = wrapped(command, tie);
        LOG.log(Level.INFO, "starting qemu: name={0} log={1} command={2}", name, logFile, QemuCommandLine.render(argv));
        waiter = Threads.platform("qemu-wait").newThread(() -> spawnAndWait(argv));
        waiter.start();
        try {
            process = spawned.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new QemuException(QemuException.Kind.START, "qemu start failed: name=" + name + " command="
                    + command.get(0) + ": " + e.getCause().getMessage(), e.getCause());
        } catch (TimeoutException | InterruptedException e) {
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            throw new QemuException(QemuException.Kind.TIMEOUT, "qemu start failed: name=" + name + ": not spawned", e);
        }
        try {
            awaitSocket(deadlineNs);
            qmp.start(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadlineNs - System.nanoTime())));
        } catch (QemuException | QmpException e) {
            kill();
            String message = "qemu start failed: name=" + name + " log=" + logFile + ": " + e.getMessage() + logTail();
            throw new QemuException(e instanceof QemuException q ? q.kind() : QemuException.Kind.QMP, message, e);
        }
    }

    /** The QMP connection, usable after {@link #start}. */
    public QmpClient qmp() {
        return qmp;
    }

    public synchronized long pid() {
        if (process == null) {
            throw new IllegalStateException("qemu not started: name=" + name);
        }
        return process.pid();
    }

    /** Completes with QEMU's exit code when it has exited (128+N for signal N, as a shell reports it). */
    public CompletableFuture<Integer> onExit() {
        return exit;
    }

    public boolean alive() {
        return !exit.isDone() && spawned.isDone();
    }

    public Path logFile() {
        return logFile;
    }

    /**
     * Stops QEMU: QMP {@code quit}, then SIGTERM, then SIGKILL, each given a share of {@code timeoutMs}.
     *
     * @return the exit code
     */
    public int stop(long timeoutMs) throws QemuException {
        Process p;
        synchronized (this) {
            p = process;
        }
        if (p == null) {
            throw new IllegalStateException("qemu not started: name=" + name);
        }
        long stepMs = Math.max(100, timeoutMs / 3);
        if (alive()) {
            try {
                qmp.execute(new QmpCommand.Quit(), stepMs);
            } catch (QmpException e) {
                // quit's reply races with QEMU closing the socket; the exit below is what counts
                LOG.log(Level.DEBUG, "qemu quit: name={0}: {1}", name, e.getMessage());
            }
        }
        if (awaitExit(stepMs)) {
            return exit.join();
        }
        LOG.log(Level.WARNING, "qemu did not quit: name={0} pid={1} timeoutMs={2}: sending SIGTERM", name,
                Long.toString(p.pid()), Long.toString(stepMs));      // MessageFormat would group them by locale
        p.destroy();
        if (awaitExit(stepMs)) {
            return exit.join();
        }
        LOG.log(Level.WARNING, "qemu ignored SIGTERM: name={0} pid={1}: sending SIGKILL", name, Long.toString(p.pid()));
        kill();
        if (awaitExit(stepMs)) {
            return exit.join();
        }
        throw new QemuException(QemuException.Kind.TIMEOUT,
                "qemu stop failed: name=" + name + " pid=" + p.pid() + " still running after SIGKILL", null);
    }

    /** Stops QEMU if it runs, closes QMP, and joins the threads. */
    @Override
    public void close() throws QemuException {
        QemuException failure = null;
        Thread w;
        synchronized (this) {
            w = waiter;
        }
        if (w != null && alive()) {
            try {
                stop(CLOSE_TIMEOUT_MS);
            } catch (QemuException e) {
                failure = e;
            }
        }
        qmp.close();
        if (w != null) {
            try {
                w.join(CLOSE_TIMEOUT_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    private void kill() {
        Process p = process;
        if (p != null) {
            p.destroyForcibly();
        }
    }

    private boolean awaitExit(long timeoutMs) {
        try {
            exit.get(timeoutMs, TimeUnit.MILLISECONDS);
            return true;
        } catch (TimeoutException e) {
            return false;
        } catch (ExecutionException e) {
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return exit.isDone();
        }
    }

    /** The body of {@code qemu-wait}: forks QEMU (this thread is its parent for PDEATHSIG), then waits for it. */
    private void spawnAndWait(List<String> argv) {
        Process p;
        try {
            p = new ProcessBuilder(argv)
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                    .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
                    .start();
        } catch (IOException | RuntimeException e) {
            spawned.completeExceptionally(e);
            exit.completeExceptionally(e);
            return;
        }
        spawned.complete(p);
        while (true) {
            try {
                int code = p.waitFor();
                LOG.log(code == 0 ? Level.INFO : Level.WARNING, "qemu exited: name={0} pid={1} code={2}", name, Long.toString(p.pid()),
                        Integer.toString(code));
                exit.complete(code);
                return;
            } catch (InterruptedException e) {
                // nobody interrupts this thread on purpose; leaving would fire QEMU's PDEATHSIG
                LOG.log(Level.DEBUG, "qemu-wait interrupted: name={0}", name);
            }
        }
    }

    private void awaitSocket(long deadlineNs) throws QemuException {
        while (!Files.exists(qmpSocket) || !listening()) {   // QEMU binds, then listens: the file comes first
            if (exit.isDone()) {
                throw new QemuException(QemuException.Kind.EXITED,
                        "qemu exited before opening its QMP socket: code=" + exit.getNow(-1), null);
            }
            if (System.nanoTime() > deadlineNs) {
                throw new QemuException(QemuException.Kind.TIMEOUT, "qemu did not open its QMP socket: socket=" + qmpSocket, null);
            }
            try {
                Thread.sleep(POLL_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new QemuException(QemuException.Kind.TIMEOUT, "interrupted waiting for the QMP socket: socket=" + qmpSocket, e);
            }
        }
    }

    /** True once QEMU accepts connections on the QMP socket (a probe connection, closed at once). */
    private boolean listening() {
        try (java.nio.channels.SocketChannel probe = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            probe.connect(java.net.UnixDomainSocketAddress.of(qmpSocket));
            return true;
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "qmp socket not accepting yet: socket={0}: {1}", qmpSocket, e.getMessage());
            return false;
        }
    }

    private String logTail() {
        try {
            List<String> lines = Files.readAllLines(logFile, StandardCharsets.UTF_8);
            List<String> tail = lines.subList(Math.max(0, lines.size() - 5), lines.size());
            return tail.isEmpty() ? "" : " | qemu log: " + String.join(" | ", tail);
        } catch (IOException e) {
            return " | qemu log unreadable: " + e.getMessage();
        }
    }

    /** Prefixes {@code setpriv --pdeathsig TERM --} when util-linux's setpriv is installed. */
    static List<String> wrapped(List<String> command, Tie tie) {
        if (tie == Tie.OUTLIVES_FERRY) {
            return command;
        }
        for (String dir : new String[] {"/usr/bin", "/bin", "/usr/sbin", "/sbin"}) {
            Path setpriv = Path.of(dir, "setpriv");
            if (Files.isExecutable(setpriv)) {
                List<String> argv = new ArrayList<>(List.of(setpriv.toString(), "--pdeathsig", "TERM", "--"));
                argv.addAll(command);
                return argv;
            }
        }
        LOG.log(Level.WARNING, "setpriv not found (util-linux): QEMU will outlive Ferry if Ferry is killed");
        return command;
    }
}
