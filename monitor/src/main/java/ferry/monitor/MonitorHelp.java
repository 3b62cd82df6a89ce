package ferry.monitor;

import java.util.List;
import java.util.Optional;

/**
 * The monitor's help text, in the shape of QEMU's {@code help}: {@code name args -- description},
 * one command a line, with QEMU's wording where QEMU has the command. {@link MonitorParser} puts a
 * command's entry under every usage error; handlers answer {@link MonitorCommand.Help} with it.
 */
public final class MonitorHelp {
    /** Printed after the command list: everything Ferry does not know goes to QEMU. */
    public static final String PASSTHROUGH_NOTE =
            "Any other command is passed to QEMU's monitor (for example 'info registers', 'info cpus').";

    private record Entry(String names, String params, String description) {
        String line() {
            return names + " " + params + " -- " + description;
        }

        boolean answers(String topic) {
            for (String name : names.split("\\|")) {
                if (name.equals(topic)) {
                    return true;
                }
            }
            return false;
        }
    }

    private static final String MIGRATE_DETAIL = "\n\t\t\t -b for migration without shared storage with full copy of disk"
            + "\n\t\t\t -i for migration without shared storage with incremental copy of disk"
            + " (base image shared between src and destination)"
            + "\n\t\t\t -r to resume an interrupted migration where it stopped (with -b)";

    private static final List<Entry> COMMANDS = List.of(
            new Entry("help|?", "[cmd]", "show the help"),
            new Entry("info", "[subcommand]", "show various information about the system state"),
            new Entry("stop|s", "", "stop emulation"),
            new Entry("cont|c", "", "resume emulation"),
            new Entry("system_reset", "", "reset the system"),
            new Entry("system_powerdown", "", "send system power down event"),
            new Entry("quit|q", "", "quit the emulator"),
            new Entry("migrate", "[-d] [-b] [-i] [-r] uri",
                    "migrate to URI (using -d to not wait for completion)" + MIGRATE_DETAIL),
            new Entry("migrate_cancel", "", "cancel the current VM migration"),
            new Entry("migrate_incoming", "uri", "Continue an incoming migration from an -incoming defer"),
            new Entry("migrate_incoming_discard", "", "remove the partial state kept of an interrupted incoming migration"
                    + " (Ferry's own)"),
            new Entry("migrate_set_speed", "value", "set maximum speed (in bytes) for migrations. "
                    + "Defaults to MB if no size suffix is specified, ie. B/K/M/G/T"),
            new Entry("migrate_set_downtime", "value",
                    "set maximum tolerated downtime (in seconds) for migrations"),
            new Entry("migrate_set_parameter", "parameter value",
                    "Set the parameter for migration (" + MigrationParameter.names() + ")"),
            new Entry("migrate_set_capability", "capability state",
                    "Enable/Disable the usage of a capability for migration (Ferry's: events, block)"));

    private static final List<Entry> INFO = List.of(
            new Entry("info block", "[-n] [-v] [device]", "show the VM's disks as Ferry serves them (device: a -drive id)"),
            new Entry("info migrate", "", "show migration status"),
            new Entry("info migrate_parameters", "", "show current migration parameters"),
            new Entry("info migrate_capabilities", "", "show current migration capabilities"),
            new Entry("info status", "", "show the current VM status (running|paused)"),
            new Entry("info version", "", "show the version of Ferry and QEMU"));

    private MonitorHelp() {}

    /** {@code help} with no topic: every command, then the passthrough note. */
    public static String all() {
        StringBuilder text = new StringBuilder();
        for (Entry entry : COMMANDS) {
            text.append(entry.line()).append('\n');
        }
        return text.append(PASSTHROUGH_NOTE).toString();
    }

    /**
     * Help on one command ({@code migrate}, {@code c}, {@code info}, {@code info migrate}), or empty
     * when Ferry does not know the topic (the handler may then ask QEMU: {@code help TOPIC}).
     */
    public static Optional<String> topic(String topic) {
        if (topic.equals("info")) {
            StringBuilder text = new StringBuilder();
            for (Entry entry : INFO) {
                text.append(entry.line()).append('\n');
            }
            return Optional.of(text.append("Other info subcommands are passed to QEMU's monitor.").toString());
        }
        for (Entry entry : topic.startsWith("info ") ? INFO : COMMANDS) {
            if (entry.answers(topic)) {
                return Optional.of(entry.line());
            }
        }
        return Optional.empty();
    }

    /** The entry of a command Ferry parses; {@code name} must be one (a bug otherwise). */
    static String of(String name) {
        return topic(name).orElseThrow(() -> new IllegalArgumentException("no help entry: " + name));
    }
}
