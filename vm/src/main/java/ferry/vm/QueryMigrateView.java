package ferry.vm;

import ferry.migration.MigrationReport;
import ferry.migration.ResumeInfo;
import ferry.qmp.Json;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Ferry's migration as QMP {@code query-migrate} returns it: QEMU 7.2's {@code MigrationInfo}, with the
 * members QEMU 7.2 gives in each state ({@code fill_source_migration_info}: nothing before the first
 * migration; {@code status} alone in setup, failed (plus {@code error-desc}) and cancelled; times, {@code ram}
 * and, with disks, {@code disk} while active and once completed), then Ferry's own figures under
 * {@code x-ferry} (QAPI's prefix for members outside the schema). {@code ram} and {@code disk} are QAPI
 * {@code MigrationStats}: every member is present; Ferry fills those it measures and sends 0 for the rest,
 * as QEMU's block migration did for {@code disk}. On a destination QEMU reports only {@code status}.
 * What there is to say about resuming (a source reconnecting, a failed migration {@code migrate -r} goes on from,
 * a destination's kept partial state) is the object {@code resume} under {@code x-ferry}, also before any migration
 * (then {@code x-ferry} holds it alone). docs/qmp.md lists every member.
 */
final class QueryMigrateView {
    private static final long PAGE_SIZE = 4096;

    private QueryMigrateView() {}

    static Json.Obj render(MigrationReport report, boolean incoming) {
        Map<String, Json> info = new LinkedHashMap<>();
        switch (report.status()) {
            case NONE -> {
                return report.resume().map(resume -> new Json.Obj(Map.of("x-ferry", new Json.Obj(Map.of("resume", resume(resume))))))
                        .orElse(Json.Obj.of());
            }
            case SETUP, CANCELLED -> info.put("status", Json.of(report.status().qemuName()));
            case FAILED -> {
                info.put("status", Json.of(report.status().qemuName()));
                report.error().ifPresent(e -> info.put("error-desc", Json.of(e)));
            }
            case ACTIVE, CANCELLING, COMPLETED -> {
                info.put("status", Json.of(report.status().qemuName()));
                if (!incoming) {
                    times(report, info);
                    info.put("ram", ram(report));
                    if (report.diskTotalBytes() > 0) {
                        info.put("disk", disk(report));
                    }
                }
            }
        }
        info.put("x-ferry", ferry(report));
        return new Json.Obj(info);
    }

    private static void times(MigrationReport report, Map<String, Json> info) {
        info.put("setup-time", Json.of(0));
        info.put("total-time", Json.of(report.totalTimeMs()));
        if (report.status() == ferry.migration.MigrationStatus.COMPLETED) {
            info.put("downtime", Json.of(report.downtimeMs().orElse(0)));
        } else {
            info.put("expected-downtime", Json.of(report.expectedDowntimeMs()));
        }
    }

    private static Json.Obj ram(MigrationReport report) {
        MigrationReport.Ram ram = report.ram();
        return stats(ram.transferredBytes(), ram.remainingBytes(), ram.totalBytes(), ram.duplicatePages(), ram.normalPages(),
                ram.dirtyPagesRate(), ram.dirtySyncCount(), report.throughputBytesPerSec());
    }

    private static Json.Obj disk(MigrationReport report) {
        return stats(report.diskTransferredBytes(), report.diskRemainingBytes(), report.diskTotalBytes(), 0, 0, 0, 0, 0);
    }

    /** QAPI {@code MigrationStats}, every member in QEMU 7.2's order. */
    private static Json.Obj stats(long transferred, long remaining, long total, long duplicate, long normal, long dirtyPagesRate,
                                  long dirtySyncCount, long throughputBytesPerSec) {
        Map<String, Json> stats = new LinkedHashMap<>();
        stats.put("transferred", Json.of(transferred));
        stats.put("remaining", Json.of(remaining));
        stats.put("total", Json.of(total));
        stats.put("duplicate", Json.of(duplicate));
        stats.put("skipped", Json.of(0));
        stats.put("normal", Json.of(normal));
        stats.put("normal-bytes", Json.of(normal * PAGE_SIZE));
        stats.put("dirty-pages-rate", Json.of(dirtyPagesRate));
        stats.put("mbps", new Json.Num(BigDecimal.valueOf(throughputBytesPerSec * 8).divide(BigDecimal.valueOf(1_000_000), 4,
                RoundingMode.HALF_UP).stripTrailingZeros()));
        stats.put("dirty-sync-count", Json.of(dirtySyncCount));
        stats.put("postcopy-requests", Json.of(0));
        stats.put("page-size", Json.of(PAGE_SIZE));
        stats.put("multifd-bytes", Json.of(0));
        stats.put("pages-per-second", Json.of(0));
        stats.put("precopy-bytes", Json.of(0));
        stats.put("downtime-bytes", Json.of(0));
        stats.put("postcopy-bytes", Json.of(0));
        stats.put("dirty-sync-missed-zero-copy", Json.of(0));
        return new Json.Obj(stats);
    }

    /** Ferry's own figures, the same as {@code info migrate}'s {@code ferry ...} lines (docs/qmp.md). */
    private static Json.Obj ferry(MigrationReport report) {
        Map<String, Json> figures = new LinkedHashMap<>();
        figures.put("phase", Json.of(report.phase() == ferry.migration.Phase.ITERATE
                ? report.phase().label() + " " + report.dirtyPass() : report.phase().label()));
        figures.put("dirty-passes", Json.of(report.dirtyPass()));
        figures.put("progress-percent", Json.of(report.progressPercent()));
        report.etaMs().ifPresent(eta -> figures.put("eta-ms", Json.of(eta)));
        figures.put("disk-transferred", Json.of(report.diskTransferredBytes()));
        figures.put("disk-remaining", Json.of(report.diskRemainingBytes()));
        figures.put("disk-total", Json.of(report.diskTotalBytes()));
        figures.put("disk-dirty-rate", Json.of(report.diskDirtyRateBytesPerSec()));
        figures.put("stream-throughput", Json.of(report.throughputBytesPerSec()));
        figures.put("write-throttle", Json.of(report.writeLimitBytesPerSec()));
        figures.put("wire-bytes", Json.of(report.wireBytes()));
        report.error().ifPresent(e -> figures.put("error", Json.of(e)));
        report.resume().ifPresent(resume -> figures.put("resume", resume(resume)));
        return new Json.Obj(figures);
    }

    /**
     * The {@code ferry resume} line of {@code info migrate} as an object: {@code state} ({@code retrying},
     * {@code resumable}, {@code partial-held}), then its figures; times are ISO-8601 UTC strings, bytes are bytes.
     */
    private static Json.Obj resume(ResumeInfo resume) {
        Map<String, Json> members = new LinkedHashMap<>();
        switch (resume) {
            case ResumeInfo.Retrying r -> {
                members.put("state", Json.of("retrying"));
                members.put("attempt", Json.of(r.attempt()));
                members.put("since", Json.of(r.since().toString()));
                members.put("give-up-at", Json.of(r.giveUpAt().toString()));
                members.put("last-error", Json.of(r.lastError()));
            }
            case ResumeInfo.Resumable r -> {
                members.put("state", Json.of("resumable"));
                members.put("migration-id", Json.of(r.migrationId().toString()));
                members.put("owed-bytes", Json.of(r.owedBytes()));
                members.put("since", Json.of(r.since().toString()));
            }
            case ResumeInfo.PartialHeld p -> {
                members.put("state", Json.of("partial-held"));
                members.put("migration-id", Json.of(p.migrationId().toString()));
                members.put("held-bytes", Json.of(p.heldBytes()));
                members.put("since", Json.of(p.since().toString()));
                members.put("remove-at", Json.of(p.removeAt().toString()));
            }
        }
        return new Json.Obj(members);
    }
}
