package ferry.cli;

import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.Logger;

/**
 * One line per log record on standard error ({@code 12:01:02 INFO MigrationSource: ...}), at INFO,
 * or at the level in {@code FERRY_LOG} (error, warning, info, debug).
 */
final class Logs {
    private Logs() {}

    static void configure() {
        System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tT.%1$tL %4$s %3$s: %5$s%6$s%n");
        LogManager.getLogManager().reset();
        Logger root = Logger.getLogger("");
        java.util.logging.ConsoleHandler handler = new java.util.logging.ConsoleHandler();
        Level level = switch (System.getenv().getOrDefault("FERRY_LOG", "info").toLowerCase(java.util.Locale.ROOT)) {
            case "error" -> Level.SEVERE;
            case "warning", "warn" -> Level.WARNING;
            case "debug" -> Level.FINE;
            case "trace" -> Level.FINEST;
            default -> Level.INFO;
        };
        handler.setLevel(level);
        handler.setFormatter(new ShortNames());
        root.setLevel(level);
        root.addHandler(handler);
    }

    /** Logger names without their package. */
    private static final class ShortNames extends java.util.logging.SimpleFormatter {
        @Override
        public String format(java.util.logging.LogRecord record) {
            String name = record.getLoggerName();
            if (name != null) {
                record.setLoggerName(name.substring(name.lastIndexOf('.') + 1));
                record.setSourceClassName(record.getLoggerName());
                record.setSourceMethodName(null);
            }
            return super.format(record);
        }
    }
}
