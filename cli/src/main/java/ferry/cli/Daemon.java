package ferry.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code -daemonize} as QEMU does it: the command returns (status 0) once the VM runs, and the daemon goes on
 * in its own session, detached from the terminal. A JVM cannot fork, so the parent starts the same command
 * again, under {@code setsid}, with {@value #ENV} set; the child's standard input is {@code /dev/null}, its
 * standard error (Ferry's log) goes to {@code LOGDIR/NAME.ferry.log}, and its standard output is a pipe on
 * which it writes {@value #READY} once the VM has started ({@link #ready}). The parent waits for that line;
 * if the child ends first, the parent says so, with the end of that log, and exits with the child's status.
 *
 * <p>Threads: the caller's.
 */
final class Daemon {
    /** Set in the daemon's environment: it is the child, and must report readiness. */
    static final String ENV = "FERRY_DAEMONIZED";
    static final String READY = "ferry-ready";

    private Daemon() {}

    static boolean isChild() {
        return System.getenv(ENV) != null;
    }

    /** Starts the daemon and waits until it is ready; returns this (the parent's) exit status. */
    static int detach(String command, Path log) throws IOException, InterruptedException {
        ProcessHandle.Info self = ProcessHandle.current().info();
        List<String> argv = new ArrayList<>();
        argv.add("setsid");
        argv.add(self.command().orElseThrow(() -> new IOException("cannot read this JVM's command to start the daemon")));
        argv.addAll(List.of(self.arguments().orElseThrow(() -> new IOException("cannot read this JVM's arguments"))));
        Files.createDirectories(log.toAbsolutePath().getParent());
        ProcessBuilder builder = new ProcessBuilder(argv)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
        builder.environment().put(ENV, "1");
        Process child = builder.start();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line = out.readLine(); line != null; line = out.readLine()) {
                if (line.equals(READY)) {
                    System.err.println("ferry " + command + ": running as daemon pid " + child.pid() + "; its log: " + log);
                    return 0;
                }
            }
        }
        int status = child.waitFor();
        System.err.println("ferry " + command + ": the daemon ended before it was ready (status " + status + "); its log: " + log);
        List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
        lines.subList(Math.max(0, lines.size() - 10), lines.size()).forEach(l -> System.err.println("  " + l));
        return status == 0 ? 1 : status;
    }

    /** In the daemon: tells the parent it may exit, and lets go of the pipe (nothing else is ever written to it). */
    static void ready() {
        System.out.println(READY);
        System.out.flush();
        System.out.close();
        System.setOut(new PrintStream(OutputStream.nullOutputStream()));
    }
}
