package ferry.cli;

import java.time.OffsetDateTime;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * One line per log record on standard error, dated in ISO 8601 with the local offset
 * ({@code 2026-11-29T20:30:18.862+01:00 INFO MigrationSource: ...}), at INFO, or at the level in
 * {@code FERRY_LOG} (error, warning, info, debug, trace).
 *
 * <p>Each notice is either logged or printed, never both: a notice that used to be logged here and
 * printed with {@code System.err.println} beside it appeared twice. Parameters ({@code pid={0}}) are
 * put in with {@link String#valueOf}, not {@link java.text.MessageFormat}, which groups numbers by
 * locale ({@code pid=6,489}).
 */
final class Logs {
    private static final DateTimeFormatter ISO_8601 = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSSXXX");

    private Logs() {}

    static void configure() {
        LogManager.getLogManager().reset();
        Logger root = Logger.getLogger("");
        java.util.logging.ConsoleHandler handler = new java.util.logging.ConsoleHandler();
        Level level = level(System.getenv().getOrDefault("FERRY_LOG", "info"));
        handler.setLevel(level);
        handler.setFormatter(new Line(ZoneId.systemDefault()));
        root.setLevel(level);
        root.addHandler(handler);
    }

    static Level level(String name) {
        return switch (name.toLowerCase(java.util.Locale.ROOT)) {
            case "error" -> Level.SEVERE;
            case "warning", "warn" -> Level.WARNING;
            case "debug" -> Level.FINE;
            case "trace" -> Level.FINEST;
            default -> Level.INFO;
        };
    }

    /** {@code DATE LEVEL Logger: message}, the logger without its package, the stack trace (if any) below. */
    static final class Line extends java.util.logging.Formatter {
        private final ZoneId zone;

        Line(ZoneId zone) {
            this.zone = zone;
        }

        @Override
        public String format(LogRecord record) {
            String name = record.getLoggerName() == null ? "" : record.getLoggerName();
            StringBuilder line = new StringBuilder()
                    .append(ISO_8601.format(OffsetDateTime.ofInstant(record.getInstant(), zone)))
                    .append(' ').append(levelName(record.getLevel()))
                    .append(' ').append(name.substring(name.lastIndexOf('.') + 1)).append(": ")
                    .append(formatMessage(record)).append(System.lineSeparator());
            if (record.getThrown() != null) {
                java.io.StringWriter trace = new java.io.StringWriter();
                record.getThrown().printStackTrace(new java.io.PrintWriter(trace));
                line.append(trace);
            }
            return line.toString();
        }

        /** The message with {@code {N}} replaced by parameter N as {@link String#valueOf} writes it. */
        @Override
        public String formatMessage(LogRecord record) {
            String message = record.getMessage() == null ? "" : record.getMessage();
            Object[] parameters = record.getParameters();
            if (parameters == null || parameters.length == 0) {
                return message;
            }
            StringBuilder out = new StringBuilder();
            int at = 0;
            while (at < message.length()) {
                int open = message.indexOf('{', at);
                int close = open < 0 ? -1 : message.indexOf('}', open);
                if (close < 0) {
                    out.append(message, at, message.length());
                    break;
                }
                out.append(message, at, open);
                String index = message.substring(open + 1, close);
                if (index.matches("[0-9]{1,3}") && Integer.parseInt(index) < parameters.length) {
                    out.append(parameters[Integer.parseInt(index)]);
                } else {
                    out.append(message, open, close + 1);
                }
                at = close + 1;
            }
            return out.toString();
        }

        /** System.Logger's names for JUL's levels (DEBUG rather than FINE), as FERRY_LOG spells them. */
        private static String levelName(Level level) {
            int value = level.intValue();
            if (value >= Level.SEVERE.intValue()) {
                return "ERROR";
            }
            if (value >= Level.WARNING.intValue()) {
                return "WARNING";
            }
            if (value >= Level.INFO.intValue()) {
                return "INFO";
            }
            return value >= Level.FINE.intValue() ? "DEBUG" : "TRACE";
        }
    }
}
