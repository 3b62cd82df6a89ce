package ferry.migration;

/**
 * Hears a migration's status changes and passes, on either side (Ferry's QMP server turns them into
 * QEMU's {@code MIGRATION} and {@code MIGRATION_PASS} events). Called on the migration's own threads:
 * it must return at once and never throw.
 */
public interface MigrationListener {
    /** The status is now {@code status} (also called once with the current status when the listener is added). */
    void statusChanged(MigrationStatus status);

    /** A copy pass starts: 0 is the bulk pass, 1.. the dirty passes. */
    default void passStarted(int dirtyPass) {}
}
