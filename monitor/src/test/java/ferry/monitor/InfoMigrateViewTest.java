package ferry.monitor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.migration.MigrationParameters;
import ferry.migration.MigrationReport;
import ferry.migration.MigrationStatus;
import ferry.migration.Phase;
import ferry.migration.ResumeInfo;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/** Golden texts: a change here is a change of a documented interface (docs/monitor.md). */
class InfoMigrateViewTest {
    private static final long MIB = 1 << 20;

    @Test
    void shouldPrintNothingWithoutMigrationAsQemuPrintsNoStatus() {
        assertEquals("", InfoMigrateView.render(MigrationReport.idle()));
    }

    @Test
    void shouldRenderActiveDirtyPassWithQemuLinesThenFerryLines() {
        var ram = new MigrationReport.Ram(341 * 1024 + 1000, 66_056 * 1024, 66_056 * 1024, 16_465, 49, 120, 3);
        var report = new MigrationReport(MigrationStatus.ACTIVE, Phase.ITERATE, 3, 12_345, 280, OptionalLong.empty(), ram,
                1536 * MIB + 4095, 12 * MIB, 4096 * MIB, 1600 * MIB, 146_480_000, 2 * MIB, 1024 * 1024, Optional.empty());
        assertEquals("""
                Migration status: active
                total time: 12345 ms
                expected downtime: 280 ms
                transferred ram: 341 kbytes
                throughput: 1171.84 mbps
                remaining ram: 66056 kbytes
                total ram: 66056 kbytes
                duplicate: 16465 pages
                skipped: 0 pages
                normal: 49 pages
                dirty sync count: 3
                dirty pages rate: 120 pages
                transferred disk: 1572867 kbytes
                remaining disk: 12288 kbytes
                total disk: 4194304 kbytes
                ferry phase: dirty pass 3
                ferry dirty passes: 3
                ferry progress: 99 %
                ferry eta: 547 ms
                ferry disk dirty rate: 2048 kbytes/s
                ferry stream throughput: 143046 kbytes/s
                ferry write throttle: 1024 kbytes/s
                ferry wire bytes: 1677721600 bytes
                """, InfoMigrateView.render(report));
    }

    @Test
    void shouldRenderBulkPassBeforeRamStartsWithZeroRamAndThrottleOff() {
        var report = new MigrationReport(MigrationStatus.ACTIVE, Phase.BULK_COPY, 0, 800, 0, OptionalLong.empty(),
                MigrationReport.Ram.NONE, 100 * MIB, 3996 * MIB, 4096 * MIB, 101 * MIB, 125_000_000, 0, 0, Optional.empty());
        assertEquals("""
                Migration status: active
                total time: 800 ms
                expected downtime: 0 ms
                transferred ram: 0 kbytes
                throughput: 1000.00 mbps
                remaining ram: 0 kbytes
                total ram: 0 kbytes
                duplicate: 0 pages
                skipped: 0 pages
                normal: 0 pages
                dirty sync count: 0
                transferred disk: 102400 kbytes
                remaining disk: 4091904 kbytes
                total disk: 4194304 kbytes
                ferry phase: bulk
                ferry dirty passes: 0
                ferry progress: 2 %
                ferry eta: 33520 ms
                ferry disk dirty rate: 0 kbytes/s
                ferry stream throughput: 122070 kbytes/s
                ferry write throttle: off
                ferry wire bytes: 105906176 bytes
                """, InfoMigrateView.render(report));
    }

    @Test
    void shouldRenderCompletedWithDowntimeInsteadOfExpectedDowntime() {
        var ram = new MigrationReport.Ram(349_184, 0, 67_641_344, 16_465, 49, 0, 3);
        var report = new MigrationReport(MigrationStatus.COMPLETED, Phase.COMPLETE, 7, 60_000, 0, OptionalLong.of(71), ram,
                5000 * MIB, 0, 4096 * MIB, 5010 * MIB, 90_000_000, 0, 0, Optional.empty());
        assertEquals("""
                Migration status: completed
                total time: 60000 ms
                downtime: 71 ms
                transferred ram: 341 kbytes
                throughput: 720.00 mbps
                remaining ram: 0 kbytes
                total ram: 66056 kbytes
                duplicate: 16465 pages
                skipped: 0 pages
                normal: 49 pages
                dirty sync count: 3
                transferred disk: 5120000 kbytes
                remaining disk: 0 kbytes
                total disk: 4194304 kbytes
                ferry phase: complete
                ferry dirty passes: 7
                ferry progress: 100 %
                ferry disk dirty rate: 0 kbytes/s
                ferry stream throughput: 87890 kbytes/s
                ferry write throttle: off
                ferry wire bytes: 5253365760 bytes
                """, InfoMigrateView.render(report));
    }

    @Test
    void shouldRenderFailureWithCauseOnStatusLineAsQemuAndFerryErrorLine() {
        String cause = "migration send failed: peer=10.0.0.2:4444: Connection reset by peer";
        var report = new MigrationReport(MigrationStatus.FAILED, Phase.BULK_COPY, 0, 4321, 0, OptionalLong.empty(),
                MigrationReport.Ram.NONE, 10 * MIB, 20 * MIB, 30 * MIB, 10 * MIB + 512, 0, 0, 0, Optional.of(cause));
        assertEquals("Migration status: failed (" + cause + ")\n"
                + "total time: 4321 ms\n"
                + "ferry phase: bulk\n"
                + "ferry dirty passes: 0\n"
                + "ferry progress: 33 %\n"
                + "ferry disk dirty rate: 0 kbytes/s\n"
                + "ferry stream throughput: 0 kbytes/s\n"
                + "ferry write throttle: off\n"
                + "ferry wire bytes: 10486272 bytes\n"
                + "ferry error: " + cause + "\n", InfoMigrateView.render(report));
    }

    @Test
    void shouldRenderSetupAndCancelledWithStatusAndTimeOnly() {
        var setup = new MigrationReport(MigrationStatus.SETUP, Phase.HANDSHAKE, 0, 5, 0, OptionalLong.empty(),
                MigrationReport.Ram.NONE, 0, 0, 0, 64, 0, 0, 0, Optional.empty());
        assertEquals("""
                Migration status: setup
                total time: 5 ms
                ferry phase: handshake
                ferry dirty passes: 0
                ferry progress: 0 %
                ferry disk dirty rate: 0 kbytes/s
                ferry stream throughput: 0 kbytes/s
                ferry write throttle: off
                ferry wire bytes: 64 bytes
                """, InfoMigrateView.render(setup));
        var cancelled = new MigrationReport(MigrationStatus.CANCELLED, Phase.ITERATE, 2, 900, 0, OptionalLong.empty(),
                MigrationReport.Ram.NONE, 0, 0, 0, 0, 0, 0, 0, Optional.empty());
        assertEquals("Migration status: cancelled\ntotal time: 900 ms\nferry phase: dirty pass 2\n",
                InfoMigrateView.render(cancelled).lines().limit(3).map(l -> l + "\n").reduce("", String::concat));
    }

    @Test
    void shouldRenderParametersInQemuShape() {
        // QEMU 7.2's shapes and order: tls-creds, tls-hostname ... tls-authz, string values in single quotes
        assertEquals("""
                tls-creds: ''
                tls-hostname: ''
                max-bandwidth: 134217728 bytes/second
                downtime-limit: 300 ms
                granule-size: 4096 bytes
                retry-window: 60000 ms
                partial-timeout: 86400000 ms
                tls-authz: ''
                """, InfoMigrateParametersView.render(MigrationParameters.defaults()));
        assertEquals("""
                tls-creds: 'tls0'
                tls-hostname: 'dst.example'
                max-bandwidth: 104857600 bytes/second
                downtime-limit: 500 ms
                granule-size: 65536 bytes
                retry-window: 0 ms
                partial-timeout: 3600000 ms
                tls-authz: 'auth0'
                """, InfoMigrateParametersView.render(new MigrationParameters(100 * MIB, 500, 65536, "tls0", "dst.example", "auth0",
                0, 3_600_000)));
    }

    private static final UUID ID = UUID.fromString("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    private static final Instant SINCE = Instant.parse("2026-11-29T21:14:07.250Z");

    private static MigrationReport failedWith(Optional<ResumeInfo> resume) {
        return new MigrationReport(MigrationStatus.FAILED, Phase.BULK_COPY, 0, 4321, 0, OptionalLong.empty(), MigrationReport.Ram.NONE,
                10 * MIB, 20 * MIB, 30 * MIB, 10 * MIB + 512, 0, 0, 0, Optional.of("bulk: link lost"), resume);
    }

    @Test
    void shouldEndWithTheRetryingLineWhileTheSourceReconnects() {
        var report = new MigrationReport(MigrationStatus.ACTIVE, Phase.RETRY, 0, 9000, 0, OptionalLong.empty(), MigrationReport.Ram.NONE,
                10 * MIB, 20 * MIB, 30 * MIB, 10 * MIB, 0, 0, 0, Optional.empty(),
                Optional.of(new ResumeInfo.Retrying(3, SINCE, SINCE.plusSeconds(60), "Connection refused")));
        String text = InfoMigrateView.render(report);
        assertTrue(text.contains("ferry phase: retrying\n"), text);
        assertEquals("ferry resume: Retrying: attempt 3 since 2026-11-29T21:14:07Z, giving up at 2026-11-29T21:15:07Z:"
                + " Connection refused", text.lines().toList().getLast());
    }

    @Test
    void shouldEndAFailureThatCanBeResumedWithTheResumableLine() {
        String text = InfoMigrateView.render(failedWith(Optional.of(new ResumeInfo.Resumable(ID, 12_582_912, SINCE))));
        assertEquals("ferry error: bulk: link lost\n"
                + "ferry resume: Resumable: migration 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0, 12582912 bytes owed since"
                + " 2026-11-29T21:14:07Z; `migrate -r URI` goes on from here\n",
                text.substring(text.indexOf("ferry error:")));
    }

    @Test
    void shouldShowTheKeptPartialStateAloneBeforeAnySourceCame() {
        var waiting = new MigrationReport(MigrationStatus.NONE, Phase.HANDSHAKE, 0, 0, 0, OptionalLong.empty(), MigrationReport.Ram.NONE,
                0, 0, 0, 0, 0, 0, 0, Optional.empty(),
                Optional.of(new ResumeInfo.PartialHeld(ID, 268_435_456, SINCE, SINCE.plus(Duration.ofDays(1)))));
        assertEquals("ferry resume: Partial state kept: migration 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0, 268435456 bytes held"
                + " since 2026-11-29T21:14:07Z, removed at 2026-11-30T21:14:07Z (migrate_incoming_discard removes it now)\n",
                InfoMigrateView.render(waiting));
    }

    @Test
    void shouldPrintNoResumeLineWhenThereIsNothingToResume() {
        assertFalse(InfoMigrateView.render(failedWith(Optional.empty())).contains("ferry resume"));
    }
}
