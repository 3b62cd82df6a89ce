package ferry.qmp;

/**
 * An asynchronous QMP event. Events Ferry acts on are typed; any other becomes {@link Unknown},
 * which {@link QmpClient} logs and still delivers. Names and data follow QEMU 7.2's
 * qapi/run-state.json, qapi/migration.json and qapi/block-export.json (docs/qmp.md).
 */
public sealed interface QmpEvent {

    /** The guest's CPUs stopped (QAPI {@code STOP}). */
    record Stop() implements QmpEvent {}

    /** The guest's CPUs run again (QAPI {@code RESUME}). */
    record Resume() implements QmpEvent {}

    /** The guest shut down; {@code guest} is false when the host asked (quit, signal). QAPI {@code SHUTDOWN}. */
    record Shutdown(boolean guest, String reason) implements QmpEvent {}

    /** The VM was reset (QAPI {@code RESET}). */
    record Reset(boolean guest, String reason) implements QmpEvent {}

    /** The ACPI power button was pressed (QAPI {@code POWERDOWN}). */
    record Powerdown() implements QmpEvent {}

    /** Migration state changed; needs the {@code events} capability (QAPI {@code MIGRATION}). */
    record MigrationEvent(MigrationState status) implements QmpEvent {}

    /** A RAM migration pass started (QAPI {@code MIGRATION_PASS}). */
    record MigrationPass(long pass) implements QmpEvent {}

    /** An NBD (or other) export is gone, after {@code block-export-del} or {@code nbd-server-stop} (QAPI {@code BLOCK_EXPORT_DELETED}). */
    record BlockExportDeleted(String id) implements QmpEvent {}

    /** Any other event, with its whole message. */
    record Unknown(String name, Json.Obj json) implements QmpEvent {}

    /**
     * The event message {@code {"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}}
     * for one of Ferry's own events (Ferry's QMP server emits {@code MIGRATION} and {@code MIGRATION_PASS}
     * for its migrations); {@link Unknown} is sent back as it came.
     */
    static Json.Obj encode(QmpEvent event, java.time.Instant at) {
        if (event instanceof Unknown u) {
            return u.json();
        }
        java.util.Map<String, Json> data = new java.util.LinkedHashMap<>();
        String name = switch (event) {
            case Stop s -> "STOP";
            case Resume r -> "RESUME";
            case Shutdown s -> {
                data.put("guest", Json.of(s.guest()));
                data.put("reason", Json.of(s.reason()));
                yield "SHUTDOWN";
            }
            case Reset r -> {
                data.put("guest", Json.of(r.guest()));
                data.put("reason", Json.of(r.reason()));
                yield "RESET";
            }
            case Powerdown p -> "POWERDOWN";
            case MigrationEvent m -> {
                data.put("status", Json.of(m.status().qapiName()));
                yield "MIGRATION";
            }
            case MigrationPass p -> {
                data.put("pass", Json.of(p.pass()));
                yield "MIGRATION_PASS";
            }
            case BlockExportDeleted b -> {
                data.put("id", Json.of(b.id()));
                yield "BLOCK_EXPORT_DELETED";
            }
            case Unknown u -> throw new AssertionError("handled above");
        };
        java.util.Map<String, Json> timestamp = new java.util.LinkedHashMap<>();
        timestamp.put("seconds", Json.of(at.getEpochSecond()));
        timestamp.put("microseconds", Json.of(at.getNano() / 1000));
        java.util.Map<String, Json> message = new java.util.LinkedHashMap<>();
        message.put("timestamp", new Json.Obj(timestamp));
        message.put("event", Json.of(name));
        if (!data.isEmpty()) {
            message.put("data", new Json.Obj(data));
        }
        return new Json.Obj(message);
    }

    /** Decodes an event message {@code {"event": NAME, "data": {...}, "timestamp": {...}}}. */
    static QmpEvent decode(Json.Obj message) throws JsonException {
        String name = message.string("event");
        Json.Obj data = message.has("data") ? message.object("data") : Json.Obj.of();
        return switch (name) {
            case "STOP" -> new Stop();
            case "RESUME" -> new Resume();
            case "SHUTDOWN" -> new Shutdown(data.bool("guest"), data.string("reason"));
            case "RESET" -> new Reset(data.bool("guest"), data.string("reason"));
            case "POWERDOWN" -> new Powerdown();
            case "MIGRATION" -> new MigrationEvent(MigrationState.ofQapi(data.string("status")));
            case "MIGRATION_PASS" -> new MigrationPass(data.number("pass"));
            case "BLOCK_EXPORT_DELETED" -> new BlockExportDeleted(data.string("id"));
            default -> new Unknown(name, message);
        };
    }
}
