package ferry.cli;

import java.util.function.Consumer;

/**
 * SIGTERM, SIGINT and SIGHUP end Ferry the way they end QEMU and qemu-nbd: a clean stop and exit status 0
 * ({@code qemu-system-x86_64: terminating on signal 15}). The JVM's default would run the shutdown hooks
 * and exit 128 + the signal (143), which scripts and service managers read as a failure. The handler only
 * tells the command why it should end; the command's own thread stops everything and returns its status.
 *
 * <p>Threads: the JVM runs {@code stop} on its signal dispatcher thread; it must return at once.
 */
final class Signals {
    private Signals() {}

    /** From now on each of those signals calls {@code stop} with {@code terminating on signal N (SIGNAME)}. */
    @SuppressWarnings("removal")
    static void onTermination(Consumer<String> stop) {
        for (String name : new String[] {"TERM", "INT", "HUP"}) {
            sun.misc.Signal signal = new sun.misc.Signal(name);
            sun.misc.Signal.handle(signal, s -> stop.accept("terminating on signal " + s.getNumber() + " (SIG" + s.getName() + ")"));
        }
    }
}
