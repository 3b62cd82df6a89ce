package ferry.monitor;

/**
 * The monitor layer's one checked exception. Its message is exactly the text the monitor prints
 * to the client: an {@code Error: ...} line and, for {@link Kind#USAGE}, the QEMU-style help of the
 * command that was mistyped. Never a stack trace.
 */
public final class MonitorException extends Exception {
    /** Why the command did not run. */
    public enum Kind {
        /** Unknown option, missing or extra argument, malformed value: the command's help follows. */
        USAGE,
        /** Well-formed but not allowed now or not supported (e.g. a second {@code migrate}). */
        REFUSED,
        /** The command ran and failed; the cause is attached. */
        FAILED
    }

    private final Kind kind;
    private final String error;

    /** {@code error} is the one-line cause, without the {@code Error: } prefix. */
    public MonitorException(Kind kind, String error) {
        this(kind, error, "", null);
    }

    public MonitorException(Kind kind, String error, Throwable cause) {
        this(kind, error, "", cause);
    }

    private MonitorException(Kind kind, String error, String help, Throwable cause) {
        super("Error: " + error + (help.isEmpty() ? "" : "\n" + help), cause);
        this.kind = kind;
        this.error = error;
    }

    /** A mistyped command: the message is the error line followed by {@code help}. */
    public static MonitorException usage(String error, String help) {
        return new MonitorException(Kind.USAGE, error, help, null);
    }

    public Kind kind() {
        return kind;
    }

    /** The one-line cause, without the {@code Error: } prefix and without help text. */
    public String error() {
        return error;
    }
}
