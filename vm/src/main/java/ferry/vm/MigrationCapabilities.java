package ferry.vm;

import ferry.qmp.QmpRequest;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The migration capabilities Ferry offers, {@code events} and {@code block}, with their state: one set per
 * VM, shared by the monitor ({@code info migrate_capabilities}, {@code migrate_set_capability}) and QMP
 * ({@code query-migrate-capabilities}, {@code migrate-set-capabilities}), so both show the same. QEMU's other
 * capabilities are listed, always off: Ferry sets QEMU's own capabilities itself for its RAM migration.
 *
 * <p>Threads: any; each flag is volatile.
 */
final class MigrationCapabilities {
    private volatile boolean events;
    private volatile boolean block;

    boolean events() {
        return events;
    }

    boolean block() {
        return block;
    }

    /**
     * Applies {@code changes} (names from {@link QmpRequest#MIGRATION_CAPABILITIES}) all or nothing; the
     * message of the exception is the one line to show.
     */
    void set(Map<String, Boolean> changes) {
        for (Map.Entry<String, Boolean> capability : changes.entrySet()) {
            if (!QmpRequest.MIGRATION_CAPABILITIES.contains(capability.getKey())) {
                throw new IllegalArgumentException("Parameter 'capability' does not accept value '" + capability.getKey() + "'");
            }
            if (capability.getValue() && !capability.getKey().equals("events") && !capability.getKey().equals("block")) {
                throw new IllegalArgumentException("Ferry does not offer the migration capability '" + capability.getKey()
                        + "' (it offers events and block)");
            }
        }
        changes.forEach((name, state) -> {
            switch (name) {
                case "events" -> events = state;
                case "block" -> block = state;
                default -> { }              // only false reaches here: off, as it already is
            }
        });
    }

    /** Every capability QEMU 7.2 names, in its order, with Ferry's state. */
    Map<String, Boolean> states() {
        Map<String, Boolean> states = new LinkedHashMap<>();
        for (String name : QmpRequest.MIGRATION_CAPABILITIES) {
            states.put(name, name.equals("events") ? events : name.equals("block") && block);
        }
        return states;
    }

    /** HMP's {@code info migrate_capabilities}, as QEMU 7.2 prints it: {@code name: on|off}, one a line. */
    String hmpText() {
        StringBuilder out = new StringBuilder();
        states().forEach((name, on) -> out.append(out.isEmpty() ? "" : "\n").append(name).append(": ").append(on ? "on" : "off"));
        return out.toString();
    }
}
