package ferry.cli;

import ferry.monitor.MonitorClient;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One "host" of the demo and the VM tests: a {@code ferry run} child process with its own
 * directory, disk, serial log and monitor socket. Two of them on one machine stand for the source
 * and destination of a migration.
 */
public final class LocalHost implements AutoCloseable {
    private final String role;
    private final Path dir;
    private final Process process;
    private final Path monitorSocket;
    private MonitorClient monitor;

    private LocalHost(String role, Path dir, Process process, Path monitorSocket) {
        this.role = role;
        this.dir = dir;
        this.process = process;
        this.monitorSocket = monitorSocket;
    }

    /**
     * Starts {@code ferryCommand run ARGS -monitor unix:DIR/monitor.sock,server,nowait -serial file:DIR/serial.log
     * --log-dir DIR/logs}, output to DIR/ferry.log.
     */
    public static LocalHost start(String role, List<String> ferryCommand, Path dir, List<String> args) throws IOException {
        Files.createDirectories(dir);
        Path monitor = dir.resolve("monitor.sock");
        List<String> command = new ArrayList<>(ferryCommand);
        command.add("run");
        command.addAll(args);
        command.addAll(List.of("-monitor", "unix:" + monitor + ",server,nowait", "-serial", "file:" + dir.resolve("serial.log"),
                "-display", "none", "--runtime-dir", dir.resolve("run").toString(), "--log-dir", dir.resolve("logs").toString()));
        Process process = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("ferry.log").toFile())).start();
        return new LocalHost(role, dir, process, monitor);
    }

    /**
     * Starts {@code ferryCommand attach ARGS -monitor unix:DIR/monitor.sock,server,nowait --runtime-dir DIR/run}
     * (ARGS hold {@code --qmp} of a QEMU already running), output to DIR/ferry.log. The guest's serial
     * console is whatever that QEMU was given.
     */
    public static LocalHost attach(String role, List<String> ferryCommand, Path dir, List<String> args) throws IOException {
        Files.createDirectories(dir);
        Path monitor = dir.resolve("monitor.sock");
        List<String> command = new ArrayList<>(ferryCommand);
        command.add("attach");
        command.addAll(args);
        command.addAll(List.of("-monitor", "unix:" + monitor + ",server,nowait", "--runtime-dir", dir.resolve("run").toString()));
        Process process = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("ferry.log").toFile())).start();
        return new LocalHost(role, dir, process, monitor);
    }

    /** The {@code ferry} command of this installation: this JVM running this jar. */
    public static List<String> ferryCommand() {
        String java = ProcessHandle.current().info().command().orElse("java");
        String jar = Path.of(System.getenv().getOrDefault("FERRY_HOME", ".")).resolve("cli/target/ferry.jar").toString();
        return List.of(java, "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-jar", jar);
    }

    public String role() {
        return role;
    }

    public Path dir() {
        return dir;
    }

    public Process process() {
        return process;
    }

    public Path serialLog() {
        return dir.resolve("serial.log");
    }

    public Path ferryLog() {
        return dir.resolve("ferry.log");
    }

    /** QEMU's log of the VM {@code name} (a {@link #start}ed host keeps it in DIR/logs). */
    public Path qemuLog(String name) {
        return dir.resolve("logs").resolve(name + ".qemu.log");
    }

    /**
     * The pid of the QEMU this host's ferry started, from its runtime directory ({@code DIR/run/ferry-NAME-PID/qemu.pid});
     * known once the monitor answers.
     */
    public long qemuPid() throws IOException {
        String suffix = "-" + process.pid();
        try (java.util.stream.Stream<Path> dirs = Files.list(dir.resolve("run"))) {
            Path runtime = dirs.filter(d -> d.getFileName().toString().startsWith("ferry-") && d.getFileName().toString().endsWith(suffix))
                    .findFirst()
                    .orElseThrow(() -> new IOException(role + ": no runtime directory of ferry pid " + process.pid() + " in " + dir.resolve("run")));
            return Long.parseLong(Files.readString(runtime.resolve("qemu.pid")).strip());
        }
    }

    /** {@code kill -9} of this host's ferry, as a crash would end it (its QEMU lives on); returns once it is gone. */
    public void kill() throws InterruptedException {
        process.destroyForcibly().waitFor();
    }

    /** One monitor command; connects on first use. */
    public synchronized String monitor(String line) throws IOException, InterruptedException {
        if (monitor == null) {
            monitor = MonitorClient.connect(monitorSocket, 30_000);
        }
        return monitor.command(line);
    }

    /** Waits until the guest's serial console printed a line containing {@code text}; the line. */
    public String awaitSerial(String text, long timeoutMs) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (System.nanoTime() < deadline) {
            String found = lastSerialLine(text);
            if (found != null) {
                return found;
            }
            if (!process.isAlive()) {
                throw new IOException(role + ": ferry exited with " + process.exitValue() + " before the guest printed '" + text
                        + "'; see " + ferryLog());
            }
            Thread.sleep(200);
        }
        throw new IOException(role + ": the guest did not print '" + text + "' within " + timeoutMs + " ms; see " + serialLog());
    }

    /** The last serial line containing {@code text}, or null. */
    public String lastSerialLine(String text) throws IOException {
        if (!Files.exists(serialLog())) {
            return null;
        }
        String found = null;
        for (String line : Files.readAllLines(serialLog(), java.nio.charset.StandardCharsets.ISO_8859_1)) {
            if (line.contains(text)) {
                found = line.strip();
            }
        }
        return found;
    }

    /** Waits for the process to end; its exit status. */
    public int awaitExit(long timeoutMs) throws InterruptedException, IOException {
        if (!process.waitFor(timeoutMs, TimeUnit.MILLISECONDS)) {
            throw new IOException(role + ": ferry did not exit within " + timeoutMs + " ms");
        }
        return process.exitValue();
    }

    @Override
    public void close() throws IOException, InterruptedException {
        if (monitor != null) {
            monitor.close();
        }
        if (process.isAlive()) {
            process.destroy();                                  // SIGTERM: ferry stops QEMU and flushes
            if (!process.waitFor(20, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor();
            }
        }
    }
}
