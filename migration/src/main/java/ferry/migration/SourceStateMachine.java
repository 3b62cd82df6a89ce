package ferry.migration;

/**
 * Where one migration's source is, and the one way to move it on: {@link #moveTo} allows only the
 * transitions {@link SourceState} draws and logs each; {@link #end} puts the final state when a failure or
 * cancel ends the migration. It remembers that the source passed COMMITTED ({@link #handedOver}), which an
 * end in FAILED does not undo.
 *
 * <h2>Design notes</h2>
 * The procedure ({@link MigrationSource}), its event handling ({@link SourceEvents}), its disk passes
 * ({@link DiskPasses}) and its {@link Switchover} all move or read the same state; one small holder lets each
 * of them do so without a reference to the others. It logs under {@link MigrationSource}'s name, as the source's own lines did
 * before they moved here.
 *
 * <p>Threads: moved by {@code migration-send} only; read from any thread ({@link MigrationSource#cancel}).
 */
final class SourceStateMachine {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());

    private volatile SourceState state = SourceState.CONNECTING;
    private volatile boolean handedOver;

    SourceState state() {
        return state;
    }

    /** True once the source is at or past {@code other} on the way to COMPLETED ({@link SourceState#reached}). */
    boolean reached(SourceState other) {
        return state.reached(other);
    }

    /** Moves to {@code next}; a move the state machine does not draw is a bug, and throws. */
    void moveTo(SourceState next) {
        if (!state.mayMoveTo(next)) {
            throw new IllegalStateException("source state machine: " + state + " -> " + next + " is not a transition");
        }
        LOG.log(System.Logger.Level.DEBUG, "source state " + state + " -> " + next);
        state = next;
        if (next == SourceState.COMMITTED) {
            handedOver = true;
        }
    }

    /**
     * True once the source moved to COMMITTED, also after a failure that followed: COMMIT may have reached the
     * destination, so the VM may run there.
     */
    boolean handedOver() {
        return handedOver;
    }

    /** The migration ended in {@code end} (FAILED or CANCELLED), from whatever state it was in. */
    void end(SourceState end) {
        if (end != SourceState.FAILED && end != SourceState.CANCELLED) {
            throw new IllegalArgumentException("source state machine: " + end + " is not an end after a failure or cancel");
        }
        state = end;
    }
}
