package ferry.migration;

/** The migration's state as {@code info migrate} names it (QEMU's MigrationStatus spelling). */
public enum MigrationStatus {
    NONE("none"), SETUP("setup"), ACTIVE("active"), COMPLETED("completed"),
    FAILED("failed"), CANCELLING("cancelling"), CANCELLED("cancelled");

    private final String qemuName;

    MigrationStatus(String qemuName) {
        this.qemuName = qemuName;
    }

    /** The word QEMU prints after {@code Migration status:}. */
    public String qemuName() {
        return qemuName;
    }

    public boolean finished() {
        return this == COMPLETED || this == FAILED || this == CANCELLED;
    }
}
