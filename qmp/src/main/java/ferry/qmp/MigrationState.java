package ferry.qmp;

import java.util.Arrays;

/** QAPI {@code MigrationStatus} (qapi/migration.json, QEMU 7.2). */
public enum MigrationState {
    NONE("none"), SETUP("setup"), CANCELLING("cancelling"), CANCELLED("cancelled"), ACTIVE("active"),
    POSTCOPY_ACTIVE("postcopy-active"), POSTCOPY_PAUSED("postcopy-paused"), POSTCOPY_RECOVER("postcopy-recover"),
    COMPLETED("completed"), FAILED("failed"), COLO("colo"), PRE_SWITCHOVER("pre-switchover"), DEVICE("device"),
    WAIT_UNPLUG("wait-unplug");

    private final String qapiName;

    MigrationState(String qapiName) {
        this.qapiName = qapiName;
    }

    public String qapiName() {
        return qapiName;
    }

    /** True for the states a migration does not leave: completed, failed, cancelled. */
    public boolean finished() {
        return this == COMPLETED || this == FAILED || this == CANCELLED;
    }

    public static MigrationState ofQapi(String name) throws JsonException {
        return Arrays.stream(values()).filter(s -> s.qapiName.equals(name)).findFirst()
                .orElseThrow(() -> new JsonException("unknown MigrationStatus: status=" + name));
    }
}
