package ferry.monitor;

import ferry.migration.MigrationReport;
import ferry.migration.MigrationStatus;
import ferry.migration.Phase;
import ferry.migration.ResumeInfo;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Locale;

/**
 * Renders {@code info migrate}: first the lines of QEMU 7.2's {@code hmp_info_migrate}, in its order
 * and spelling, so scripts that read QEMU's output read Ferry's; then Ferry's own lines, each starting
 * with {@code ferry }. The format is a stable interface, specified in {@code docs/monitor.md}.
 *
 * <p>Where Ferry differs from QEMU 7.2, on purpose:
 * <ul>
 * <li>no {@code globals:} block (QEMU's internal settings, not a migration's state) and no lines
 *     without a typed source in {@link MigrationReport} ({@code setup}, {@code normal bytes},
 *     {@code page size}, {@code multifd bytes}, {@code pages-per-second}, {@code downtime ram});</li>
 * <li>the disk lines are also printed once completed (QEMU drops them), and {@code total time} is the
 *     real one after a failure (QEMU prints 0);</li>
 * <li>{@code throughput} is the one TCP stream's, disks and RAM together.</li>
 * </ul>
 *
 * <p>Stateless; any thread may call it.
 */
public final class InfoMigrateView {
    private InfoMigrateView() {}

    /**
     * The text, one line per {@code \n}-terminated line. For {@link MigrationStatus#NONE} QEMU prints no status, and
     * neither does Ferry: the text is empty, or, on a destination that keeps a partial state from before a restart,
     * its one {@code ferry resume} line.
     */
    public static String render(MigrationReport report) {
        MigrationStatus status = report.status();
        if (status == MigrationStatus.NONE) {
            StringBuilder out = new StringBuilder();
            report.resume().ifPresent(resume -> resume(out, resume));
            return out.toString();
        }
        StringBuilder out = new StringBuilder();
        out.append("Migration status: ").append(status.qemuName());
        if (status == MigrationStatus.FAILED && report.error().isPresent()) {
            out.append(" (").append(report.error().get()).append(')');
        }
        out.append('\n');
        line(out, "total time: %d ms", report.totalTimeMs());
        boolean running = status == MigrationStatus.ACTIVE || status == MigrationStatus.CANCELLING;
        if (running) {
            line(out, "expected downtime: %d ms", report.expectedDowntimeMs());
        }
        if (status == MigrationStatus.COMPLETED && report.downtimeMs().isPresent()) {
            line(out, "downtime: %d ms", report.downtimeMs().getAsLong());
        }
        if (running || status == MigrationStatus.COMPLETED) {
            ram(out, report);
            line(out, "transferred disk: %d kbytes", report.diskTransferredBytes() >> 10);
            line(out, "remaining disk: %d kbytes", report.diskRemainingBytes() >> 10);
            line(out, "total disk: %d kbytes", report.diskTotalBytes() >> 10);
        }
        ferry(out, report);
        return out.toString();
    }

    private static void ram(StringBuilder out, MigrationReport report) {
        MigrationReport.Ram ram = report.ram();
        line(out, "transferred ram: %d kbytes", ram.transferredBytes() >> 10);
        line(out, "throughput: %.2f mbps", report.throughputBytesPerSec() * 8 / 1e6);   // QEMU: megabits, 10^6
        line(out, "remaining ram: %d kbytes", ram.remainingBytes() >> 10);
        line(out, "total ram: %d kbytes", ram.totalBytes() >> 10);
        line(out, "duplicate: %d pages", ram.duplicatePages());
        line(out, "skipped: %d pages", 0L);   // QEMU has reported 0 here since 2.x; kept so line counts match
        line(out, "normal: %d pages", ram.normalPages());
        line(out, "dirty sync count: %d", ram.dirtySyncCount());
        if (ram.dirtyPagesRate() != 0) {   // QEMU prints it only when non-zero
            line(out, "dirty pages rate: %d pages", ram.dirtyPagesRate());
        }
    }

    private static void ferry(StringBuilder out, MigrationReport report) {
        String phase = report.phase() == Phase.ITERATE
                ? report.phase().label() + " " + report.dirtyPass()
                : report.phase().label();
        line(out, "ferry phase: %s", phase);
        line(out, "ferry dirty passes: %d", report.dirtyPass());
        line(out, "ferry progress: %d %%", report.progressPercent());
        report.etaMs().ifPresent(eta -> line(out, "ferry eta: %d ms", eta));
        line(out, "ferry disk dirty rate: %d kbytes/s", report.diskDirtyRateBytesPerSec() >> 10);
        line(out, "ferry stream throughput: %d kbytes/s", report.throughputBytesPerSec() >> 10);
        if (report.writeLimitBytesPerSec() > 0) {
            line(out, "ferry write throttle: %d kbytes/s", report.writeLimitBytesPerSec() >> 10);
        } else {
            out.append("ferry write throttle: off\n");
        }
        line(out, "ferry wire bytes: %d bytes", report.wireBytes());
        report.error().ifPresent(error -> line(out, "ferry error: %s", error));
        report.resume().ifPresent(resume -> resume(out, resume));
    }

    /**
     * The one {@code ferry resume} line: the source reconnecting, a failed migration that {@code migrate -r} goes on
     * from, or the partial state a destination keeps for one. Times are UTC, to the second.
     */
    private static void resume(StringBuilder out, ResumeInfo resume) {
        out.append("ferry resume: ").append(switch (resume) {
            case ResumeInfo.Retrying r -> "Retrying: attempt " + r.attempt() + " since " + time(r.since()) + ", giving up at "
                    + time(r.giveUpAt()) + ": " + r.lastError();
            case ResumeInfo.Resumable r -> "Resumable: migration " + r.migrationId() + ", " + r.owedBytes() + " bytes owed since "
                    + time(r.since()) + "; `migrate -r URI` goes on from here";
            case ResumeInfo.PartialHeld p -> "Partial state kept: migration " + p.migrationId() + ", " + p.heldBytes()
                    + " bytes held since " + time(p.since()) + ", removed at " + time(p.removeAt())
                    + " (migrate_incoming_discard removes it now)";
        }).append('\n');
    }

    private static String time(Instant instant) {
        return instant.truncatedTo(ChronoUnit.SECONDS).toString();
    }

    private static void line(StringBuilder out, String format, Object value) {
        out.append(String.format(Locale.ROOT, format, value)).append('\n');
    }
}
