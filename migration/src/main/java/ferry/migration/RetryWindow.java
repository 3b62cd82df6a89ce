package ferry.migration;

import java.time.Instant;
import java.util.concurrent.TimeUnit;

/**
 * When a source that lost its link tries again, and when it gives up: the {@code retry-window} and the
 * backoff between attempts. Pure arithmetic on the times it is given, so that a test can walk it
 * without waiting.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>The window opens at the first loss and lasts {@code retry-window} from there; an attempt after a
 *       loss that got as far as WELCOME opens a fresh window (and a fresh backoff) for a later loss, so
 *       that a link that drops now and then is never given up on while each reconnect works.</li>
 *   <li>The wait before the next attempt starts at {@link #FIRST_BACKOFF_MS} and doubles up to
 *       {@link #MAX_BACKOFF_MS}; it is cut to what is left of the window, so the last attempt comes
 *       before the window closes.</li>
 *   <li>A loss at or after the window's end gives up. The time of the loss is the one that counts, not the
 *       time the old attempt has finished ending (cancelling QEMU's RAM migration may take seconds).</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} only.
 */
final class RetryWindow {
    /** The first wait before reconnecting; it doubles up to {@link #MAX_BACKOFF_MS}. */
    static final long FIRST_BACKOFF_MS = 500;
    static final long MAX_BACKOFF_MS = 8_000;

    private final long windowMs;
    private boolean open;
    private long giveUpAtNs;
    private Instant since;
    private int attempt;
    private long backoffMs = FIRST_BACKOFF_MS;

    /** {@code windowMs} 0: a lost link is never retried. */
    RetryWindow(long windowMs) {
        this.windowMs = windowMs;
    }

    /** False when the retry window is 0 (no attempt follows a loss). */
    boolean enabled() {
        return windowMs != 0;
    }

    long windowMs() {
        return windowMs;
    }

    /** What follows a lost link: another attempt after a wait, or none. */
    sealed interface Next {
        /** The window is over. */
        record GiveUp() implements Next { }

        /**
         * Attempt {@code failedAttempt} of the window that opened at {@code since} failed; the next one follows
         * in {@code waitMs}, and the window ends {@code leftNs} after the loss.
         */
        record Retry(int failedAttempt, Instant since, long waitMs, long leftNs) implements Next {
            long leftMs() {
                return TimeUnit.NANOSECONDS.toMillis(leftNs);
            }

            long leftSeconds() {
                return TimeUnit.NANOSECONDS.toSeconds(leftNs);
            }
        }
    }

    /**
     * The link was lost at {@code nowNs} ({@link System#nanoTime}; {@code now} on the wall clock, for
     * {@code info migrate}). {@code welcomedSinceLoss}: the attempt that lost it got WELCOME after an earlier
     * loss, so this loss opens a fresh window.
     */
    Next lost(long nowNs, Instant now, boolean welcomedSinceLoss) {
        if (!open || welcomedSinceLoss) {
            open = true;
            giveUpAtNs = nowNs + TimeUnit.MILLISECONDS.toNanos(windowMs);
            since = now;
            backoffMs = FIRST_BACKOFF_MS;
            attempt = 1;
        } else {
            attempt++;
        }
        if (nowNs - giveUpAtNs >= 0) {
            return new Next.GiveUp();
        }
        long leftNs = giveUpAtNs - nowNs;
        long waitMs = Math.min(backoffMs, TimeUnit.NANOSECONDS.toMillis(leftNs));
        backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 2);
        return new Next.Retry(attempt, since, waitMs, leftNs);
    }
}
