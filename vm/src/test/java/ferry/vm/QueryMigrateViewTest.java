package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ferry.migration.MigrationReport;
import ferry.migration.MigrationStatus;
import ferry.migration.Phase;
import ferry.migration.ResumeInfo;
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

    private static final java.util.UUID ID = java.util.UUID.fromString("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    private static final java.time.Instant SINCE = java.time.Instant.parse("2026-11-29T21:14:07.250Z");

    private static MigrationReport withResume(MigrationStatus status, ResumeInfo resume) {
        MigrationReport r = report(status, 4L << 30, Optional.of("bulk: link lost"));
        return new MigrationReport(r.status(), r.phase(), r.dirtyPass(), r.totalTimeMs(), r.expectedDowntimeMs(), r.downtimeMs(),
                r.ram(), r.diskTransferredBytes(), r.diskRemainingBytes(), r.diskTotalBytes(), r.wireBytes(), r.throughputBytesPerSec(),
                r.diskDirtyRateBytesPerSec(), r.writeLimitBytesPerSec(), r.error(), Optional.of(resume));
    }

    @Test
    void shouldGiveWhatThereIsToResumeUnderXFerry() throws Exception {
        Json.Obj retrying = QueryMigrateView.render(withResume(MigrationStatus.ACTIVE,
                new ResumeInfo.Retrying(2, SINCE, SINCE.plusSeconds(60), "Connection refused")), false);
        assertEquals("{\"state\":\"retrying\",\"attempt\":2,\"since\":\"2026-11-29T21:14:07.250Z\","
                + "\"give-up-at\":\"2026-11-29T21:15:07.250Z\",\"last-error\":\"Connection refused\"}",
                retrying.object("x-ferry").object("resume").toString());
        Json.Obj resumable = QueryMigrateView.render(withResume(MigrationStatus.FAILED, new ResumeInfo.Resumable(ID, 4096, SINCE)), false);
        assertEquals(List.of("status", "error-desc", "x-ferry"), List.copyOf(resumable.members().keySet()), "QEMU's members unchanged");
        assertEquals("{\"state\":\"resumable\",\"migration-id\":\"" + ID + "\",\"owed-bytes\":4096,"
                + "\"since\":\"2026-11-29T21:14:07.250Z\"}", resumable.object("x-ferry").object("resume").toString());
    }

    @Test
    void shouldGiveAKeptPartialStateAloneBeforeAnySourceCame() {
        MigrationReport idle = MigrationReport.idle();
        MigrationReport waiting = new MigrationReport(idle.status(), idle.phase(), 0, 0, 0, OptionalLong.empty(), MigrationReport.Ram.NONE,
                0, 0, 0, 0, 0, 0, 0, Optional.empty(), Optional.of(new ResumeInfo.PartialHeld(ID, 8192, SINCE, SINCE.plusSeconds(3600))));
        assertEquals("{\"x-ferry\":{\"resume\":{\"state\":\"partial-held\",\"migration-id\":\"" + ID + "\",\"held-bytes\":8192,"
                + "\"since\":\"2026-11-29T21:14:07.250Z\",\"remove-at\":\"2026-11-29T22:14:07.250Z\"}}}",
                QueryMigrateView.render(waiting, true).toString());
    }
}
