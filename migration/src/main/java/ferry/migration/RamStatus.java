package ferry.migration;

/**
 * QEMU's own migration status (RAM and device state), as the migration layer sees it on either side.
 * The supervisor maps QAPI's {@code MigrationStatus} onto it; statuses the migration does not act on
 * are {@link #OTHER}.
 */
public enum RamStatus {
    SETUP, ACTIVE, PRE_SWITCHOVER, DEVICE, CANCELLING, CANCELLED, COMPLETED, FAILED, OTHER;

    /** The status named like QAPI's (e.g. {@code pre-switchover}); {@link #OTHER} for any other name. */
    public static RamStatus ofQapi(String name) {
        for (RamStatus status : values()) {
            if (status != OTHER && status.name().replace('_', '-').equalsIgnoreCase(name)) {
                return status;
            }
        }
        return OTHER;
    }
}
