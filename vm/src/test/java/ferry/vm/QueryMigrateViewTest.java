package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ferry.migration.MigrationReport;
import ferry.migration.MigrationStatus;
import ferry.migration.Phase;
import ferry.qmp.Json;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * {@code query-migrate}'s members per state, as QEMU 7.2's {@code fill_source_migration_info} gives them
 * (and its schema's {@code MigrationStats}, every member mandatory), plus Ferry's {@code x-ferry}.
 */
class QueryMigrateViewTest {
    /** QEMU 7.2's {@code MigrationStats} members, in its order (from query-qmp-schema). */
    private static final List<String> MIGRATION_STATS = List.of("transferred", "remaining", "total", "duplicate", "skipped",
            "normal", "normal-bytes", "dirty-pages-rate", "mbps", "dirty-sync-count", "postcopy-requests", "page-size",
            "multifd-bytes", "pages-per-second", "precopy-bytes", "downtime-bytes", "postcopy-bytes", "dirty-sync-missed-zero-copy");

    private static MigrationReport report(MigrationStatus status, long diskTotal, Optional<String> error) {
        return new MigrationReport(status, Phase.ITERATE, 3, 12_345, 280, status == MigrationStatus.COMPLETED
                ? OptionalLong.of(75) : OptionalLong.empty(), new MigrationReport.Ram(341 << 10, 66_056 << 10, 66_056 << 10,
                16_465, 49, 120, 3), 1 << 30, 12 << 20, diskTotal, 1_677_721_600L, 146_479_104, 2 << 20, 1 << 20, error);
    }

    @Test
    void shouldBeEmptyBeforeTheFirstMigration() {
        assertEquals(Json.Obj.of(), QueryMigrateView.render(MigrationReport.idle(), false));
    }

    @Test
    void shouldGiveQemusMembersWhileActiveWithDiskAsMigrationStats() throws Exception {
        Json.Obj info = QueryMigrateView.render(report(MigrationStatus.ACTIVE, 4L << 30, Optional.empty()), false);
        assertEquals(List.of("status", "setup-time", "total-time", "expected-downtime", "ram", "disk", "x-ferry"),
                List.copyOf(info.members().keySet()));
        assertEquals("active", info.string("status"));
        assertEquals(MIGRATION_STATS, List.copyOf(info.object("ram").members().keySet()));
        assertEquals(MIGRATION_STATS, List.copyOf(info.object("disk").members().keySet()));
        assertEquals(1L << 30, info.object("disk").number("transferred"));
        assertEquals(12L << 20, info.object("disk").number("remaining"));
        assertEquals(4L << 30, info.object("disk").number("total"));
        assertEquals(341L << 10, info.object("ram").number("transferred"));
        assertEquals("1171.8328", info.object("ram").require("mbps").toString(), "the stream's megabits per second");
        assertEquals("dirty pass 3", info.object("x-ferry").string("phase"));
        assertEquals(1 << 20, info.object("x-ferry").number("write-throttle"));
    }

    @Test
    void shouldGiveDowntimeOnceCompletedAndKeepTheDiskTotals() throws Exception {
        Json.Obj info = QueryMigrateView.render(report(MigrationStatus.COMPLETED, 4L << 30, Optional.empty()), false);
        assertEquals(List.of("status", "setup-time", "total-time", "downtime", "ram", "disk", "x-ferry"),
                List.copyOf(info.members().keySet()));
        assertEquals(75, info.number("downtime"));
    }

    @Test
    void shouldLeaveDiskOutWithoutBlockMigration() {
        Json.Obj info = QueryMigrateView.render(report(MigrationStatus.ACTIVE, 0, Optional.empty()), false);
        assertEquals(Set.of("status", "setup-time", "total-time", "expected-downtime", "ram", "x-ferry"), info.members().keySet());
    }

    @Test
    void shouldGiveStatusAndErrorDescAloneWhenFailed() throws Exception {
        Json.Obj info = QueryMigrateView.render(report(MigrationStatus.FAILED, 4L << 30, Optional.of("handshake: refused")), false);
        assertEquals(List.of("status", "error-desc", "x-ferry"), List.copyOf(info.members().keySet()));
        assertEquals("handshake: refused", info.string("error-desc"));
        assertEquals(List.of("status", "x-ferry"), List.copyOf(QueryMigrateView.render(
                report(MigrationStatus.CANCELLED, 4L << 30, Optional.empty()), false).members().keySet()));
    }

    @Test
    void shouldGiveStatusAloneOnADestination() {
        assertEquals(List.of("status", "x-ferry"), List.copyOf(QueryMigrateView.render(
                report(MigrationStatus.ACTIVE, 4L << 30, Optional.empty()), true).members().keySet()));
    }
}
