package ferry.monitor;

import ferry.monitor.MonitorCommand.Cont;
import ferry.monitor.MonitorCommand.Help;
import ferry.monitor.MonitorCommand.InfoBlock;
import ferry.monitor.MonitorCommand.InfoMigrate;
import ferry.monitor.MonitorCommand.InfoMigrateParameters;
import ferry.monitor.MonitorCommand.InfoStatus;
import ferry.monitor.MonitorCommand.InfoVersion;
import ferry.monitor.MonitorCommand.Migrate;
import ferry.monitor.MonitorCommand.MigrateCancel;
import ferry.monitor.MonitorCommand.MigrateIncoming;
import ferry.monitor.MonitorCommand.MigrateSetDowntime;
import ferry.monitor.MonitorCommand.MigrateSetParameter;
import ferry.monitor.MonitorCommand.MigrateSetSpeed;
import ferry.monitor.MonitorCommand.MigrateSetTextParameter;
import ferry.monitor.MonitorCommand.Passthrough;
import ferry.monitor.MonitorCommand.Quit;
import ferry.monitor.MonitorCommand.Stop;
import ferry.monitor.MonitorCommand.SystemPowerdown;
import ferry.monitor.MonitorCommand.SystemReset;
import ferry.migration.MigrationParameters;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Turns one HMP command line into a {@link MonitorCommand}: the only place in Ferry that reads HMP
 * text. Words are separated by blanks; there is no quoting (no Ferry command takes a blank in an
 * argument). Command words Ferry does not own become {@link Passthrough} for QEMU's monitor, except
 * the migration commands that would bypass Ferry's own migration, which are refused.
 *
 * <p>Stateless; any thread may call it.
 */
public final class MonitorParser {
    /** QEMU commands that drive QEMU's migration behind Ferry's back: Ferry refuses them. */
    private static final Set<String> RESERVED = Set.of(
            "migrate_continue", "migrate_recover", "migrate_pause", "migrate_start_postcopy",
            "migrate_set_cache_size");

    private static final Pattern SECONDS = Pattern.compile("[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+");
    private static final Pattern MILLISECONDS = Pattern.compile("[0-9]{1,10}");
    private static final long MAX_DOWNTIME_MS = 2_000_000;   // QEMU's limit: "0 to (2000 * 1000) ms"
    private static final Pattern WHOLE_MS = Pattern.compile("[0-9]{1,13}");
    private static final long MAX_RETRY_WINDOW_MS = 7L * 24 * 3600 * 1000;        // a week, as MigrationParameters
    private static final long MAX_PARTIAL_TIMEOUT_MS = 30L * 24 * 3600 * 1000;    // 30 days, as MigrationParameters

    private MonitorParser() {}

    /**
     * Parses one line (without its newline).
     *
     * @throws MonitorException {@link MonitorException.Kind#USAGE} with the command's help for a wrong
     *     option or argument, {@link MonitorException.Kind#REFUSED} for a reserved command or an empty line
     */
    public static MonitorCommand parse(String line) throws MonitorException {
        String text = line.strip();
        if (text.isEmpty()) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "empty command line");
        }
        List<String> words = Arrays.asList(text.split("\\s+"));
        String name = words.getFirst();
        List<String> args = words.subList(1, words.size());
        return switch (name) {
            case "help", "?" -> new Help(args.isEmpty() ? Optional.empty() : Optional.of(String.join(" ", args)));
            case "info" -> info(args, text);
            case "stop", "s" -> noArguments("stop", args, new Stop());
            case "cont", "c" -> args.equals(List.of("--force")) ? new Cont(true) : noArguments("cont", args, new Cont(false));
            case "system_reset" -> noArguments(name, args, new SystemReset());
            case "system_powerdown" -> noArguments(name, args, new SystemPowerdown());
            case "quit", "q" -> noArguments("quit", args, new Quit());
            case "migrate" -> migrate(args);
            case "migrate_cancel" -> noArguments(name, args, new MigrateCancel());
            case "migrate_set_speed" -> new MigrateSetSpeed(bandwidth(name, oneArgument(name, args, "value")));
            case "migrate_set_downtime" -> new MigrateSetDowntime(downtimeSeconds(oneArgument(name, args, "value")));
            case "migrate_set_parameter" -> setParameter(args);
            case "migrate_incoming" -> migrateIncoming(args);
            case "migrate_incoming_discard" -> noArguments(name, args, new MonitorCommand.MigrateIncomingDiscard());
            case "migrate_set_capability" -> setCapability(args);
            default -> {
                if (RESERVED.contains(name)) {
                    throw new MonitorException(MonitorException.Kind.REFUSED, name
                            + " is not available: Ferry drives QEMU's migration itself"
                            + " (use migrate, migrate_cancel, migrate_set_parameter)");
                }
                yield new Passthrough(text);
            }
        };
    }

    /** {@code migrate_set_capability NAME on|off} (QEMU's HMP takes on/off only). */
    private static MonitorCommand setCapability(List<String> args) throws MonitorException {
        if (args.size() != 2) {
            throw usage("migrate_set_capability", args.size() < 2 ? "missing argument" : "too many arguments");
        }
        return switch (args.get(1)) {
            case "on" -> new MonitorCommand.MigrateSetCapability(args.get(0), true);
            case "off" -> new MonitorCommand.MigrateSetCapability(args.get(0), false);
            default -> throw usage("migrate_set_capability", "expected 'on' or 'off', got '" + args.get(1) + "'");
        };
    }

    private static MonitorCommand info(List<String> args, String text) throws MonitorException {
        if (args.isEmpty()) {
            return new Help(Optional.of("info"));
        }
        String sub = args.getFirst();
        List<String> rest = args.subList(1, args.size());
        return switch (sub) {
            case "status" -> noArguments("info status", rest, new InfoStatus());
            case "block" -> new InfoBlock(String.join(" ", rest));   // QEMU takes [-n] [-v] [device]: a -drive id
            case "version" -> noArguments("info version", rest, new InfoVersion());
            case "migrate" -> noArguments("info migrate", rest, new InfoMigrate());
            case "migrate_parameters" -> noArguments("info migrate_parameters", rest, new InfoMigrateParameters());
            case "migrate_capabilities" -> noArguments("info migrate_capabilities", rest, new MonitorCommand.InfoMigrateCapabilities());
            default -> new Passthrough(text);
        };
    }

    /**
     * {@code migrate [-d] [-b] [-i] [-r] uri}. QEMU 7.2 takes the flags only as separate words and only in
     * that order ({@code -b -d} and {@code -db} fail there); Ferry also takes them in any order and
     * combined ({@code -db}), which breaks no script written for QEMU. Whether {@code -r} has the {@code -b}
     * it needs is the migration's to say: capability {@code block} may give it.
     */
    private static Migrate migrate(List<String> args) throws MonitorException {
        boolean detach = false;
        boolean blocks = false;
        boolean incremental = false;
        boolean resume = false;
        int next = 0;
        while (next < args.size() && args.get(next).startsWith("-") && args.get(next).length() > 1) {
            String flags = args.get(next);
            for (int i = 1; i < flags.length(); i++) {
                switch (flags.charAt(i)) {
                    case 'd' -> detach = true;
                    case 'b' -> blocks = true;
                    case 'i' -> incremental = true;
                    case 'r' -> resume = true;
                    default -> throw usage("migrate", "unsupported option -" + flags.charAt(i));
                }
            }
            next++;
        }
        if (next == args.size()) {
            throw usage("migrate", "missing uri");
        }
        if (next + 1 < args.size()) {
            throw extraneous("migrate", args.subList(next + 1, args.size()));
        }
        MigrationUri uri;
        try {
            uri = MigrationUri.parse(args.get(next));
        } catch (IllegalArgumentException e) {
            throw usage("migrate", e.getMessage());
        }
        return new Migrate(detach, blocks || incremental, incremental, resume, uri);
    }

    /** {@code migrate_incoming URI}: the URI as {@code -incoming} takes it ({@code tcp:0:4444}: every interface). */
    private static MigrateIncoming migrateIncoming(List<String> args) throws MonitorException {
        String text = oneArgument("migrate_incoming", args, "uri");
        try {
            return new MigrateIncoming(MigrationUri.parse(text));
        } catch (IllegalArgumentException e) {
            throw usage("migrate_incoming", e.getMessage());
        }
    }

    /**
     * {@code migrate_set_parameter NAME VALUE}. A TLS parameter's value is an object id
     * ({@code tls-creds}, {@code tls-authz}) or a host name ({@code tls-hostname}); {@code ""} unsets it
     * (QEMU's HMP reads {@code ""} as the empty string; it is the only quoting Ferry reads).
     */
    private static MonitorCommand setParameter(List<String> args) throws MonitorException {
        String command = "migrate_set_parameter";
        if (args.isEmpty()) {
            throw usage(command, "missing parameter name");
        }
        if (args.size() == 1) {
            throw usage(command, "missing value for " + args.getFirst());
        }
        if (args.size() > 2) {
            throw extraneous(command, args.subList(2, args.size()));
        }
        String value = args.get(1);
        MigrationParameter parameter = Arrays.stream(MigrationParameter.values())
                .filter(p -> p.qemuName().equals(args.getFirst())).findFirst()
                .orElseThrow(() -> usage(command, "unknown parameter '" + args.getFirst()
                        + "': known parameters are " + MigrationParameter.names()));
        if (parameter.text()) {
            return new MigrateSetTextParameter(parameter, textParameter(parameter, value));
        }
        long parsed = switch (parameter) {
            case MAX_BANDWIDTH -> bandwidth(command, value);
            case DOWNTIME_LIMIT -> downtimeMs(value);
            case GRANULE_SIZE -> granuleSize(value);
            case RETRY_WINDOW -> wholeMs(parameter, value, MAX_RETRY_WINDOW_MS);
            case PARTIAL_TIMEOUT -> wholeMs(parameter, value, MAX_PARTIAL_TIMEOUT_MS);
            case TLS_CREDS, TLS_HOSTNAME, TLS_AUTHZ -> throw new IllegalStateException("text parameter " + parameter);
        };
        return new MigrateSetParameter(parameter, parsed);
    }

    private static final Pattern HOST_NAME = Pattern.compile("[A-Za-z0-9.:_*-]+");

    private static String textParameter(MigrationParameter parameter, String value) throws MonitorException {
        String text = value.equals("\"\"") ? "" : value;
        boolean ok = text.isEmpty() || switch (parameter) {
            case TLS_CREDS, TLS_AUTHZ -> MigrationParameters.OBJECT_ID.matcher(text).matches();
            default -> HOST_NAME.matcher(text).matches();
        };
        if (!ok) {
            throw usage("migrate_set_parameter", "invalid " + parameter.qemuName() + " '" + value + "': expected "
                    + (parameter == MigrationParameter.TLS_HOSTNAME ? "a host name" : "the id of an -object") + ", or \"\" to unset it");
        }
        return text;
    }

    /** max-bandwidth and migrate_set_speed: a size, MiB when bare (as QEMU), at least one byte per second. */
    private static long bandwidth(String command, String value) throws MonitorException {
        long bytesPerSec = SizeArgument.parse(value, SizeArgument.Unit.MIB).orElseThrow(() -> usage(command,
                "invalid size '" + value + "': expected a number with an optional suffix B, K, M, G, T"
                        + " (no suffix: MiB)"));
        if (bytesPerSec <= 0) {
            throw usage(command, "bandwidth must be positive: '" + value + "'");
        }
        return bytesPerSec;
    }

    /** downtime-limit: whole milliseconds 0..2000000, as QEMU takes it. */
    private static long downtimeMs(String value) throws MonitorException {
        if (!MILLISECONDS.matcher(value).matches() || Long.parseLong(value) > MAX_DOWNTIME_MS) {
            throw usage("migrate_set_parameter", "invalid downtime-limit '" + value
                    + "': expected whole milliseconds from 0 to " + MAX_DOWNTIME_MS);
        }
        return Long.parseLong(value);
    }

    /** retry-window and partial-timeout: whole milliseconds from 0 to {@code max}, the limits {@link MigrationParameters} sets. */
    private static long wholeMs(MigrationParameter parameter, String value, long max) throws MonitorException {
        if (!WHOLE_MS.matcher(value).matches() || Long.parseLong(value) > max) {
            throw usage("migrate_set_parameter", "invalid " + parameter.qemuName() + " '" + value
                    + "': expected whole milliseconds from 0 to " + max);
        }
        return Long.parseLong(value);
    }

    /** migrate_set_downtime: seconds, with a fraction ({@code 0.5}), up to 2000 s; rounded to the millisecond. */
    private static long downtimeSeconds(String value) throws MonitorException {
        if (SECONDS.matcher(value).matches()) {
            BigDecimal ms = new BigDecimal(value).movePointRight(3).setScale(0, RoundingMode.HALF_UP);
            if (ms.compareTo(BigDecimal.valueOf(MAX_DOWNTIME_MS)) <= 0) {
                return ms.longValueExact();
            }
        }
        throw usage("migrate_set_downtime", "invalid downtime '" + value
                + "': expected seconds from 0 to " + MAX_DOWNTIME_MS / 1000 + ", e.g. 0.3");
    }

    /** granule-size: a size, bytes when bare, a power of two from 4 KiB to 16 MiB. */
    private static long granuleSize(String value) throws MonitorException {
        Optional<Long> bytes = SizeArgument.parse(value, SizeArgument.Unit.BYTES);
        if (bytes.isEmpty() || bytes.get() < 4096 || bytes.get() > (16 << 20) || Long.bitCount(bytes.get()) != 1) {
            throw usage("migrate_set_parameter", "invalid granule-size '" + value
                    + "': expected a power of two from 4K to 16M (default " + MigrationParameters.DEFAULT_GRANULE_SIZE
                    + " bytes)");
        }
        return bytes.get();
    }

    private static String oneArgument(String command, List<String> args, String what) throws MonitorException {
        if (args.isEmpty()) {
            throw usage(command, "missing " + what);
        }
        if (args.size() > 1) {
            throw extraneous(command, args.subList(1, args.size()));
        }
        return args.getFirst();
    }

    private static MonitorCommand noArguments(String command, List<String> args, MonitorCommand parsed)
            throws MonitorException {
        if (!args.isEmpty()) {
            throw extraneous(command, args);
        }
        return parsed;
    }

    private static MonitorException extraneous(String command, List<String> extra) {
        return usage(command, "extraneous characters at the end of line: '" + String.join(" ", extra) + "'");
    }

    private static MonitorException usage(String command, String error) {
        return MonitorException.usage(command + ": " + error, MonitorHelp.of(command));
    }
}
