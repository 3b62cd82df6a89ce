package ferry.monitor;

/**
 * Where a command's output goes: one monitor client. Long-running commands ({@code migrate} without
 * {@code -d}) print progress lines as they go. Safe to call from any thread; each call is written and
 * flushed whole.
 *
 * <p>Writing never throws: once the client has gone, output is dropped (the first failure is logged)
 * and {@link #open()} turns false, so a command that only waits to print progress can stop waiting,
 * while the work it started (a migration) goes on, as in QEMU.
 */
public interface MonitorOutput {
    /** Writes {@code text} (one or more lines) and a newline, then flushes. An empty text writes nothing. */
    void println(String text);

    /** False once the client has disconnected or the monitor is closing. */
    boolean open();
}
