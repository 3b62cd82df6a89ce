package ferry.qmp;

import java.util.Optional;
import java.util.OptionalLong;

/**
 * The reply of {@code query-migrate} (QAPI {@code MigrationInfo}). Members QEMU leaves out in the
 * current state are empty: {@code ram} appears once a migration has started, {@code downtimeMs}
 * once it completed, {@code errorDesc} when it failed.
 */
public record MigrationInfo(Optional<MigrationState> status, Optional<RamStats> ram, OptionalLong totalTimeMs,
                            OptionalLong downtimeMs, OptionalLong expectedDowntimeMs, OptionalLong setupTimeMs,
                            Optional<String> errorDesc) {

    /** QAPI {@code MigrationStats}: bytes and pages of guest RAM. */
    public record RamStats(long transferredBytes, long remainingBytes, long totalBytes, long duplicatePages,
                           long normalPages, long dirtyPagesRate, long dirtySyncCount) {
        static RamStats decode(Json.Obj ram) throws JsonException {
            return new RamStats(ram.number("transferred"), ram.number("remaining"), ram.number("total"),
                    ram.number("duplicate"), ram.number("normal"), ram.number("dirty-pages-rate"),
                    ram.number("dirty-sync-count"));
        }
    }

    static MigrationInfo decode(Json.Obj ret) throws JsonException {
        Optional<MigrationState> status = ret.has("status")
                ? Optional.of(MigrationState.ofQapi(ret.string("status"))) : Optional.empty();
        Optional<RamStats> ram = ret.has("ram") ? Optional.of(RamStats.decode(ret.object("ram"))) : Optional.empty();
        Optional<String> error = ret.has("error-desc") ? Optional.of(ret.string("error-desc")) : Optional.empty();
        return new MigrationInfo(status, ram, optionalLong(ret, "total-time"), optionalLong(ret, "downtime"),
                optionalLong(ret, "expected-downtime"), optionalLong(ret, "setup-time"), error);
    }

    private static OptionalLong optionalLong(Json.Obj obj, String name) throws JsonException {
        return obj.has(name) ? OptionalLong.of(obj.number(name)) : OptionalLong.empty();
    }
}
