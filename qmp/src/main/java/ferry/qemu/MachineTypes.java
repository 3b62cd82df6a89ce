package ferry.qemu;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Pins a machine type to its versioned name, as the installed QEMU resolves it: {@code pc} is an alias
 * ({@code pc-i440fx-7.2} on QEMU 7.2) and {@code q35} another ({@code pc-q35-7.2}). A migration needs the
 * same versioned type on both hosts; an alias on two QEMUs of different versions names two machines, and
 * QEMU refuses the device state late. So Ferry gives QEMU the versioned name, asked once per binary of
 * {@code QEMU -machine help}, whose lines read (7.2):
 * <pre>
 * pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
 * pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
 * </pre>
 *
 * <p>Thread-safe: the answers are cached per binary.
 */
public final class MachineTypes {
    private static final System.Logger LOG = System.getLogger(MachineTypes.class.getName());
    /** QEMU's default machine type on x86 when {@code -machine} is absent. */
    public static final String DEFAULT = "pc";
    private static final Pattern ALIAS = Pattern.compile("^(\\S+)\\s+.*\\(alias of (\\S+)\\)\\s*$");
    private static final long HELP_TIMEOUT_MS = 10_000;
    private static final Map<String, Map<String, String>> ALIASES_BY_BINARY = new ConcurrentHashMap<>();

    private MachineTypes() {}

    /** Alias to versioned name, from {@code -machine help}'s text. */
    public static Map<String, String> aliases(String machineHelp) {
        Map<String, String> aliases = new LinkedHashMap<>();
        for (String line : machineHelp.split("\n")) {
            Matcher m = ALIAS.matcher(line);
            if (m.matches()) {
                aliases.put(m.group(1), m.group(2));
            }
        }
        return aliases;
    }

    /**
     * The {@code -machine} value with its type pinned: {@code spec} as written (commas escaped as QEMU reads
     * them) with an alias type replaced by its versioned name; properties are kept.
     */
    public static String pin(String spec, Map<String, String> aliases) {
        int comma = firstSeparator(spec);
        String head = spec.substring(0, comma);
        String rest = spec.substring(comma);
        boolean keyed = head.startsWith("type=");
        String type = keyed ? head.substring(5) : head;
        String versioned = aliases.getOrDefault(type, type);
        return (keyed ? "type=" : "") + versioned + rest;
    }

    /** {@link #pin} with the aliases of {@code binary}; the spec unchanged (and a WARNING) if QEMU cannot say. */
    public static String pin(String binary, String spec) {
        Map<String, String> aliases = ALIASES_BY_BINARY.computeIfAbsent(binary, MachineTypes::ask);
        String pinned = pin(spec, aliases);
        if (!pinned.equals(spec)) {
            LOG.log(System.Logger.Level.DEBUG, "machine type " + spec + " pinned to " + pinned);
        }
        return pinned;
    }

    private static Map<String, String> ask(String binary) {
        try {
            Process help = new ProcessBuilder(List.of(binary, "-machine", "help")).redirectErrorStream(true)
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
            String text = new String(help.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!help.waitFor(HELP_TIMEOUT_MS, TimeUnit.MILLISECONDS) || help.exitValue() != 0) {
                help.destroyForcibly();
                throw new IOException("exit status " + (help.isAlive() ? "none (timed out)" : help.exitValue()));
            }
            return aliases(text);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot ask " + binary + " -machine help for versioned machine types ("
                    + e.getMessage() + "): the machine type stays as given");
            return Map.of();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return Map.of();
        }
    }

    /** The end of the first part of a QEMU option value: its first single comma (",," is an escaped comma). */
    private static int firstSeparator(String spec) {
        int at = 0;
        while (at < spec.length()) {
            if (spec.charAt(at) == ',') {
                if (at + 1 < spec.length() && spec.charAt(at + 1) == ',') {
                    at += 2;
                    continue;
                }
                return at;
            }
            at++;
        }
        return at;
    }
}
