package ferry.migration;

import java.util.Optional;

/**
 * The migration layer's checked exception: names the {@link Phase} it failed in, and whether the
 * peer said so ("destination refused: ...") or we found it.
 *
 * <p>The message is what the peer may read (a destination sends it in its ERROR frame); a
 * {@link #localDetail()} holds what only this host's log and {@code info migrate} show: paths, sizes
 * and messages of this host's files and tools. A destination never tells a source anything of its
 * files but the disk ids and sizes the source itself offered (docs/migration-protocol.md "Limits").
 */
public final class MigrationException extends Exception {
    private final Phase phase;
    private final String localDetail;

    public MigrationException(Phase phase, String message) {
        this(phase, message, null, null);
    }

    public MigrationException(Phase phase, String message, Throwable cause) {
        this(phase, message, null, cause);
    }

    /** {@code message} for the peer, {@code localDetail} (may be null) for this host only. */
    public MigrationException(Phase phase, String message, String localDetail, Throwable cause) {
        super(message, cause);
        this.phase = phase;
        this.localDetail = localDetail;
    }

    public Phase phase() {
        return phase;
    }

    /** What only this host may see: the file, its size, the tool's message. */
    public Optional<String> localDetail() {
        return Optional.ofNullable(localDetail);
    }

    /** One line for {@code info migrate} and the user: "phase: message". */
    public String oneLine() {
        return phase.label() + ": " + getMessage();
    }

    /** {@link #oneLine()} with the local detail, for this host's log and {@code info migrate}. */
    public String localLine() {
        return oneLine() + (localDetail == null ? "" : " (here: " + localDetail + ")");
    }
}
