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
