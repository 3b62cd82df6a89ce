package ferry.migration;

/**
 * The migration layer's checked exception: names the {@link Phase} it failed in, and whether the
 * peer said so ("destination refused: ...") or we found it.
 */
public final class MigrationException extends Exception {
    private final Phase phase;

    public MigrationException(Phase phase, String message) {
        super(message);
        this.phase = phase;
    }

    public MigrationException(Phase phase, String message, Throwable cause) {
        super(message, cause);
        this.phase = phase;
    }

    public Phase phase() {
        return phase;
    }

    /** One line for {@code info migrate} and the user: "phase: message". */
    public String oneLine() {
        return phase.label() + ": " + getMessage();
    }
}
