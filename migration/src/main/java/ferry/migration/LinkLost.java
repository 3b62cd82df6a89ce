package ferry.migration;

/**
 * The stream to the destination broke (a reset, an end of stream, a failed connect after the first
 * attempt): unlike a refusal or a failed check, another attempt may go on from the last checkpoint.
 */
final class LinkLost extends Exception {
    private final Phase phase;

    LinkLost(Phase phase, String message, Throwable cause) {
        super(message, cause);
        this.phase = phase;
    }

    Phase phase() {
        return phase;
    }

    /** The failure this is when no further attempt is made. */
    MigrationException asFailure() {
        return new MigrationException(phase, getMessage(), this);
    }
}
