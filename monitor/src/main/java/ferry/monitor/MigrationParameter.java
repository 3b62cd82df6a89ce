package ferry.monitor;

import ferry.migration.MigrationParameters;

/**
 * The parameters {@code migrate_set_parameter} accepts, by their QEMU names. A numeric value is held in
 * the parameter's unit (bytes per second, milliseconds or bytes) once {@link MonitorParser} has read it;
 * the TLS parameters are text (an object id or a host name, empty to unset). {@code granule-size},
 * {@code retry-window} and {@code partial-timeout} are Ferry's own.
 */
public enum MigrationParameter {
    MAX_BANDWIDTH("max-bandwidth", false),
    DOWNTIME_LIMIT("downtime-limit", false),
    GRANULE_SIZE("granule-size", false),
    RETRY_WINDOW("retry-window", false),
    PARTIAL_TIMEOUT("partial-timeout", false),
    TLS_CREDS("tls-creds", true),
    TLS_HOSTNAME("tls-hostname", true),
    TLS_AUTHZ("tls-authz", true);

    private final String qemuName;
    private final boolean text;

    MigrationParameter(String qemuName, boolean text) {
        this.qemuName = qemuName;
        this.text = text;
    }

    /** The name typed after {@code migrate_set_parameter} and printed by {@code info migrate_parameters}. */
    public String qemuName() {
        return qemuName;
    }

    /** A text parameter ({@link MonitorCommand.MigrateSetTextParameter}), not a number. */
    public boolean text() {
        return text;
    }

    /** Returns {@code parameters} with this numeric parameter set to {@code value} (in this parameter's unit). */
    public MigrationParameters applyTo(MigrationParameters parameters, long value) {
        return switch (this) {
            case MAX_BANDWIDTH -> parameters.withMaxBandwidth(value);
            case DOWNTIME_LIMIT -> parameters.withDowntimeLimitMs(value);
            case GRANULE_SIZE -> parameters.withGranuleSize(Math.toIntExact(value));
            case RETRY_WINDOW -> parameters.withRetryWindowMs(value);
            case PARTIAL_TIMEOUT -> parameters.withPartialTimeoutMs(value);
            case TLS_CREDS, TLS_HOSTNAME, TLS_AUTHZ -> throw new IllegalArgumentException(qemuName + " takes text, not a number");
        };
    }

    /** Returns {@code parameters} with this text parameter set to {@code value} ("" unsets it). */
    public MigrationParameters applyTo(MigrationParameters parameters, String value) {
        return switch (this) {
            case TLS_CREDS -> parameters.withTlsCreds(value);
            case TLS_HOSTNAME -> parameters.withTlsHostname(value);
            case TLS_AUTHZ -> parameters.withTlsAuthz(value);
            case MAX_BANDWIDTH, DOWNTIME_LIMIT, GRANULE_SIZE, RETRY_WINDOW, PARTIAL_TIMEOUT ->
                    throw new IllegalArgumentException(qemuName + " takes a number");
        };
    }

    /** The names, comma-separated, for error messages. */
    public static String names() {
        StringBuilder names = new StringBuilder();
        for (MigrationParameter parameter : values()) {
            names.append(names.isEmpty() ? "" : ", ").append(parameter.qemuName);
        }
        return names.toString();
    }
}
