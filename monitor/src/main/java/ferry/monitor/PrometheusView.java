package ferry.monitor;

import ferry.migration.MigrationReport;
import ferry.migration.MigrationStatus;
import java.util.Locale;

/**
 * The figures of {@code info migrate} in Prometheus' text exposition format (version 0.0.4), for
 * {@code --metrics HOST:PORT}: one gauge or counter per figure, base units (bytes, seconds) as Prometheus
 * names them, the status as a one-hot {@code ferry_migration_status{status="..."}}. Same typed source as
 * {@link InfoMigrateView}, so the two never disagree.
 */
public final class PrometheusView {
    private PrometheusView() {}

    public static String render(String vm, MigrationReport report) {
        StringBuilder out = new StringBuilder();
        String label = "vm=\"" + vm.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
        out.append("# HELP ferry_migration_status The migration's status (1 for the current one).\n");
        out.append("# TYPE ferry_migration_status gauge\n");
        for (MigrationStatus status : MigrationStatus.values()) {
            out.append("ferry_migration_status{").append(label).append(",status=\"").append(status.qemuName()).append("\"} ")
                    .append(status == report.status() ? 1 : 0).append('\n');
        }
        gauge(out, label, "ferry_migration_total_time_seconds", "Time since migrate was given.", report.totalTimeMs() / 1000.0);
        gauge(out, label, "ferry_migration_progress_ratio", "Share of the copy done, 0..1 (holes count as done).",
                report.progressPercent() / 100.0);
        report.etaMs().ifPresent(eta -> gauge(out, label, "ferry_migration_eta_seconds", "Estimated time to go.", eta / 1000.0));
        gauge(out, label, "ferry_migration_expected_downtime_seconds", "Expected downtime at switchover.",
                report.expectedDowntimeMs() / 1000.0);
        report.downtimeMs().ifPresent(ms -> gauge(out, label, "ferry_migration_downtime_seconds",
                "Measured downtime, source STOP to destination RUNNING.", ms / 1000.0));
        gauge(out, label, "ferry_migration_dirty_passes", "Dirty passes so far.", report.dirtyPass());
        counter(out, label, "ferry_migration_disk_transferred_bytes", "Disk payload sent (received), all passes.",
                report.diskTransferredBytes());
        gauge(out, label, "ferry_migration_disk_remaining_bytes", "Disk bytes still to copy.", report.diskRemainingBytes());
        gauge(out, label, "ferry_migration_disk_total_bytes", "Size of the migrated disks.", report.diskTotalBytes());
        counter(out, label, "ferry_migration_ram_transferred_bytes", "RAM sent by QEMU.", report.ram().transferredBytes());
        gauge(out, label, "ferry_migration_ram_remaining_bytes", "RAM still to send.", report.ram().remainingBytes());
        gauge(out, label, "ferry_migration_ram_total_bytes", "Guest RAM.", report.ram().totalBytes());
        counter(out, label, "ferry_migration_wire_bytes", "Every byte on the migration stream.", report.wireBytes());
        gauge(out, label, "ferry_migration_stream_throughput_bytes_per_second", "Stream throughput, last interval.",
                report.throughputBytesPerSec());
        gauge(out, label, "ferry_migration_disk_dirty_rate_bytes_per_second", "Guest disk writes seen by the bitmaps.",
                report.diskDirtyRateBytesPerSec());
        gauge(out, label, "ferry_migration_write_throttle_bytes_per_second", "Limit on guest writes; 0 = off.",
                report.writeLimitBytesPerSec());
        return out.toString();
    }

    private static void gauge(StringBuilder out, String label, String name, String help, double value) {
        metric(out, label, name, help, "gauge", value);
    }

    private static void counter(StringBuilder out, String label, String name, String help, double value) {
        metric(out, label, name, help, "counter", value);
    }

    private static void metric(StringBuilder out, String label, String name, String help, String type, double value) {
        out.append("# HELP ").append(name).append(' ').append(help).append('\n');
        out.append("# TYPE ").append(name).append(' ').append(type).append('\n');
        String number = value == Math.rint(value) && Math.abs(value) < 1e15
                ? Long.toString((long) value) : String.format(Locale.ROOT, "%.3f", value);
        out.append(name).append('{').append(label).append("} ").append(number).append('\n');
    }
}
