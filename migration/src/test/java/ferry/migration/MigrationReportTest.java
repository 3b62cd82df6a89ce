package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Optional;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** The percentage and ETA that info migrate, query-migrate and /metrics show. */
class MigrationReportTest {
    private static final long MIB = 1 << 20;

    private static MigrationReport report(MigrationStatus status, long transferred, long remaining, long total, long throughput) {
        return new MigrationReport(status, Phase.BULK_COPY, 0, 1000, 0, OptionalLong.empty(), MigrationReport.Ram.NONE,
                transferred, remaining, total, 0, throughput, 0, 0, Optional.empty());
    }

    @Test
    void shouldCountSkippedHolesAsDoneSoASparseDiskReachesTheEnd() {
        // 256 MiB disk with 7 MiB of data: the bulk pass sent 7 MiB and nothing remains
        assertEquals(99, report(MigrationStatus.ACTIVE, 7 * MIB, 0, 256 * MIB, MIB).progressPercent(),
                "all copied, but a dirty pass may still follow: 99, not 2 (7/256)");
        assertEquals(100, report(MigrationStatus.COMPLETED, 7 * MIB, 0, 256 * MIB, MIB).progressPercent());
        assertEquals(50, report(MigrationStatus.ACTIVE, 7 * MIB, 128 * MIB, 256 * MIB, MIB).progressPercent());
        assertEquals(0, report(MigrationStatus.SETUP, 0, 256 * MIB, 256 * MIB, 0).progressPercent());
    }

    @Test
    void shouldEstimateTheTimeToGoFromTheRemainderAndTheThroughput() {
        assertEquals(OptionalLong.of(2000), report(MigrationStatus.ACTIVE, 0, 64 * MIB, 256 * MIB, 32 * MIB).etaMs());
        assertEquals(OptionalLong.empty(), report(MigrationStatus.ACTIVE, 0, 64 * MIB, 256 * MIB, 0).etaMs(),
                "nothing moves yet: no guess");
        assertEquals(OptionalLong.empty(), report(MigrationStatus.COMPLETED, 0, 0, 256 * MIB, MIB).etaMs());
    }
}
