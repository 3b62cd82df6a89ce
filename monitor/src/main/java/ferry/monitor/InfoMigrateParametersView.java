package ferry.monitor;

import ferry.migration.MigrationParameters;

/**
 * Renders {@code info migrate_parameters} in QEMU 7.2's line shapes ({@code name: value unit}) for the
 * parameters Ferry owns; {@code granule-size}, {@code retry-window} and {@code partial-timeout} are Ferry's own. Stable interface: {@code docs/monitor.md}.
 *
 * <p>Stateless; any thread may call it.
 */
public final class InfoMigrateParametersView {
    private InfoMigrateParametersView() {}

    /** In QEMU 7.2's order (tls-creds and tls-hostname first, tls-authz last), quotes and all. */
    public static String render(MigrationParameters parameters) {
        return MigrationParameter.TLS_CREDS.qemuName() + ": '" + parameters.tlsCreds() + "'\n"
                + MigrationParameter.TLS_HOSTNAME.qemuName() + ": '" + parameters.tlsHostname() + "'\n"
                + MigrationParameter.MAX_BANDWIDTH.qemuName() + ": " + parameters.maxBandwidthBytesPerSec() + " bytes/second\n"
                + MigrationParameter.DOWNTIME_LIMIT.qemuName() + ": " + parameters.downtimeLimitMs() + " ms\n"
                + MigrationParameter.GRANULE_SIZE.qemuName() + ": " + parameters.granuleSize() + " bytes\n"
                + MigrationParameter.RETRY_WINDOW.qemuName() + ": " + parameters.retryWindowMs() + " ms\n"
                + MigrationParameter.PARTIAL_TIMEOUT.qemuName() + ": " + parameters.partialTimeoutMs() + " ms\n"
                + MigrationParameter.TLS_AUTHZ.qemuName() + ": '" + parameters.tlsAuthz() + "'\n";
    }
}
