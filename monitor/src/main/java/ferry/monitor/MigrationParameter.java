package ferry.monitor;

import ferry.migration.MigrationParameters;

/**
 * The parameters {@code migrate_set_parameter} accepts, by their QEMU names. Each value is held in
 * the parameter's unit (bytes per second, milliseconds or bytes) once {@link MonitorParser} has read it.
 */
public enum MigrationParameter {
    MAX_BANDWIDTH("max-bandwidth"),
    DOWNTIME_LIMIT("downtime-limit"),
    GRANULE_SIZE("granule-size");

    private final String qemuName;

    MigrationParameter(String qemuName) {
        this.qemuName = qemuName;
    }

    /** The name typed after {@code migrate_set_parameter} and printed by {@code info migrate_parameters}. */
    public String qemuName() {
        return qemuName;
    }

    /** Returns {@code parameters} with this parameter set to {@code value} (in this parameter's unit). */
    public MigrationParameters applyTo(MigrationParameters parameters, long value) {
        return switch (this) {
            case MAX_BANDWIDTH -> parameters.withMaxBandwidth(value);
            case DOWNTIME_LIMIT -> parameters.withDowntimeLimitMs(value);
            case GRANULE_SIZE -> parameters.withGranuleSize(Math.toIntExact(value));
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
