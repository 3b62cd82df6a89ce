package ferry.migration;

import java.time.Instant;
import java.util.UUID;

/**
 * What {@code info migrate} says about resuming (DESIGN.md "Resume"), on either side.
 */
public sealed interface ResumeInfo {

    /** Source: the link dropped; the source reconnects on its own until {@code giveUpAt}. */
    record Retrying(int attempt, Instant since, Instant giveUpAt, String lastError) implements ResumeInfo { }

    /**
     * Source: the migration failed or was cancelled, and {@code migrate -r} can go on from where it stopped:
     * {@code owedBytes} plus whatever the guest writes until then are what it would send.
     */
    record Resumable(UUID migrationId, long owedBytes, Instant since) implements ResumeInfo { }

    /**
     * Destination: it keeps the partial state of migration {@code migrationId} (its images and their journals),
     * holding {@code heldBytes} since {@code since}, until a resume, {@code quit}, {@code migrate_incoming_discard}
     * or {@code removeAt}.
     */
    record PartialHeld(UUID migrationId, long heldBytes, Instant since, Instant removeAt) implements ResumeInfo { }
}
