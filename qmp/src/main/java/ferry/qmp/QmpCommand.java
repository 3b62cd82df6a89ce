package ferry.qmp;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalLong;

/**
 * A QMP command: its QAPI name, its arguments, and how its {@code return} value decodes. One record
 * per command Ferry uses; the QAPI schema they follow (QEMU 7.2 {@code qapi/run-state.json},
 * {@code qapi/migration.json}, {@code qapi/misc.json}, {@code qapi/control.json}) is summarized in docs/qmp.md.
 *
 * @param <R> the decoded reply
 */
public sealed interface QmpCommand<R> {
    /** The QAPI command name, e.g. {@code query-status}. */
    String name();

    /** The {@code arguments} object; empty for commands without arguments. */
    default Json.Obj arguments() {
        return Json.Obj.of();
    }

    /** Decodes the {@code return} member of a successful reply. */
    R decode(Json ret) throws JsonException;

    /** For commands whose reply is {@code {}}. */
    sealed interface NoResult extends QmpCommand<Done> {
        @Override default Done decode(Json ret) throws JsonException {
            ret.asObject();
            return Done.DONE;
        }
    }

    /** Leaves capabilities negotiation mode; sent by {@link QmpClient#start} itself. */
    record QmpCapabilities() implements NoResult {
        @Override public String name() { return "qmp_capabilities"; }
    }

    record QueryStatus() implements QmpCommand<StatusInfo> {
        @Override public String name() { return "query-status"; }
        @Override public StatusInfo decode(Json ret) throws JsonException { return StatusInfo.decode(ret.asObject()); }
    }

    record QueryVersion() implements QmpCommand<VersionInfo> {
        @Override public String name() { return "query-version"; }
        @Override public VersionInfo decode(Json ret) throws JsonException { return VersionInfo.decode(ret.asObject()); }
    }

    /** Pauses the guest's CPUs (event STOP). */
    record Stop() implements NoResult {
        @Override public String name() { return "stop"; }
    }

    /** Resumes the guest's CPUs (event RESUME). */
    record Cont() implements NoResult {
        @Override public String name() { return "cont"; }
    }

    record SystemReset() implements NoResult {
        @Override public String name() { return "system_reset"; }
    }

    /** Presses the ACPI power button (event POWERDOWN); the guest decides what to do. */
    record SystemPowerdown() implements NoResult {
        @Override public String name() { return "system_powerdown"; }
    }

    /** QEMU exits: the reply may race with the socket closing. */
    record Quit() implements NoResult {
        @Override public String name() { return "quit"; }
    }

    /** An HMP line run by QEMU's human monitor; returns its output text. */
    record HumanMonitorCommand(String line) implements QmpCommand<String> {
        public HumanMonitorCommand {
            Objects.requireNonNull(line, "line");
        }
        @Override public String name() { return "human-monitor-command"; }
        @Override public Json.Obj arguments() { return args("command-line", Json.of(line)); }
        @Override public String decode(Json ret) throws JsonException { return ret.asString(); }
    }

    record QueryMigrate() implements QmpCommand<MigrationInfo> {
        @Override public String name() { return "query-migrate"; }
        @Override public MigrationInfo decode(Json ret) throws JsonException { return MigrationInfo.decode(ret.asObject()); }
    }

    /** Starts an outgoing migration, e.g. {@code uri=unix:/run/ferry/ram.sock}. */
    record Migrate(String uri) implements NoResult {
        public Migrate {
            Objects.requireNonNull(uri, "uri");
        }
        @Override public String name() { return "migrate"; }
        @Override public Json.Obj arguments() { return args("uri", Json.of(uri)); }
    }

    /** Starts listening for an incoming migration on a QEMU started with {@code -incoming defer}. */
    record MigrateIncoming(String uri) implements NoResult {
        public MigrateIncoming {
            Objects.requireNonNull(uri, "uri");
        }
        @Override public String name() { return "migrate-incoming"; }
        @Override public Json.Obj arguments() { return args("uri", Json.of(uri)); }
    }

    /** Sets migration capabilities by QAPI name, e.g. {@code events}, {@code pause-before-switchover}. */
    record MigrateSetCapabilities(Map<String, Boolean> capabilities) implements NoResult {
        public MigrateSetCapabilities {
            capabilities = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(capabilities));
        }
        @Override public String name() { return "migrate-set-capabilities"; }
        @Override public Json.Obj arguments() {
            List<Json> list = capabilities.entrySet().stream()
                    .map(e -> (Json) args2("capability", Json.of(e.getKey()), "state", Json.of(e.getValue())))
                    .toList();
            return args("capabilities", new Json.Arr(list));
        }
    }

    /**
     * Sets migration parameters; empty ones are left as they are.
     *
     * @param maxBandwidthBytesPerSecond QAPI {@code max-bandwidth}, bytes per second
     * @param downtimeLimitMs QAPI {@code downtime-limit}, milliseconds
     */
    record MigrateSetParameters(OptionalLong maxBandwidthBytesPerSecond, OptionalLong downtimeLimitMs) implements NoResult {
        public MigrateSetParameters {
            Objects.requireNonNull(maxBandwidthBytesPerSecond, "maxBandwidthBytesPerSecond");
            Objects.requireNonNull(downtimeLimitMs, "downtimeLimitMs");
        }
        @Override public String name() { return "migrate-set-parameters"; }
        @Override public Json.Obj arguments() {
            Map<String, Json> members = new LinkedHashMap<>();
            maxBandwidthBytesPerSecond.ifPresent(v -> members.put("max-bandwidth", Json.of(v)));
            downtimeLimitMs.ifPresent(v -> members.put("downtime-limit", Json.of(v)));
            return new Json.Obj(members);
        }
    }

    /** Lets a migration paused in {@code state} (normally {@code pre-switchover}) go on. */
    record MigrateContinue(MigrationState state) implements NoResult {
        public MigrateContinue {
            Objects.requireNonNull(state, "state");
        }
        @Override public String name() { return "migrate-continue"; }
        @Override public Json.Obj arguments() { return args("state", Json.of(state.qapiName())); }
    }

    record MigrateCancel() implements NoResult {
        @Override public String name() { return "migrate_cancel"; }
    }

    private static Json.Obj args(String name, Json value) {
        return new Json.Obj(Map.of(name, value));
    }

    private static Json.Obj args2(String name1, Json value1, String name2, Json value2) {
        Map<String, Json> members = new LinkedHashMap<>();
        members.put(name1, value1);
        members.put(name2, value2);
        return new Json.Obj(members);
    }
}
