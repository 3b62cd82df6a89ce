package ferry.migration;

import java.util.EnumSet;
import java.util.Set;

/**
 * Where the source side of one migration is. One state replaces the flags the source once kept;
 * the transitions below are the only ones {@link MigrationSource} makes (docs/migration-protocol.md
 * draws the same table).
 *
 * <pre>
 *  CONNECTING -> HANDSHAKE -> COPYING -> RAM -> PRE_SWITCHOVER -> DISKS_SENT -> VERIFIED -> DEST_READY -> COMMITTED -> COMPLETED
 *                  (without -b: HANDSHAKE -> RAM)
 *  HANDSHAKE .. DEST_READY -> INTERRUPTED -> HANDSHAKE     (the link dropped; another attempt resumes)
 *  any state before COMMITTED -> FAILED | CANCELLED      (the source VM runs again, its disks untouched)
 *  COMMITTED -> FAILED                                    (the source stays paused: the VM may run on the destination)
 * </pre>
 */
enum SourceState {
    CONNECTING,
    /** Between two attempts: the link dropped, the VM runs on, QEMU records its writes (before HANDSHAKE: it has reached nothing). */
    INTERRUPTED,
    HANDSHAKE, COPYING, RAM, PRE_SWITCHOVER, DISKS_SENT, VERIFIED, DEST_READY, COMMITTED, COMPLETED,
    FAILED, CANCELLED;

    private static final Set<SourceState> ENDS = EnumSet.of(FAILED, CANCELLED);

    /** True when {@code next} may follow this state. */
    boolean mayMoveTo(SourceState next) {
        if (this == COMPLETED || this == FAILED || this == CANCELLED) {
            return false;
        }
        if (ENDS.contains(next)) {
            return this != COMMITTED || next == FAILED;
        }
        if (next == INTERRUPTED) {
            return reached(HANDSHAKE) && !reached(COMMITTED);
        }
        return switch (this) {
            case CONNECTING, INTERRUPTED -> next == HANDSHAKE;
            case HANDSHAKE -> next == COPYING || next == RAM;
            case COPYING -> next == RAM;
            case RAM -> next == PRE_SWITCHOVER;
            case PRE_SWITCHOVER -> next == DISKS_SENT || next == VERIFIED;   // without -b nothing to verify
            case DISKS_SENT -> next == VERIFIED;
            case VERIFIED -> next == DEST_READY;
            case DEST_READY -> next == COMMITTED;
            case COMMITTED -> next == COMPLETED;
            case COMPLETED, FAILED, CANCELLED -> false;
        };
    }

    /** True once this state is at or past {@code other} on the way to COMPLETED. */
    boolean reached(SourceState other) {
        return !ENDS.contains(this) && ordinal() >= other.ordinal();
    }
}
