package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import org.junit.jupiter.api.Test;

class RetryWindowTest {
    private static final long MS = 1_000_000L;
    private static final long WINDOW_MS = 60_000;
    private static final Instant T0 = Instant.parse("2026-11-29T20:00:00Z");

    private static RetryWindow.Next.Retry retry(RetryWindow.Next next) {
        return assertInstanceOf(RetryWindow.Next.Retry.class, next);
    }

    @Test
    void shouldNeverRetryWhenTheWindowIsZero() {
        assertFalse(new RetryWindow(0).enabled());
        assertTrue(new RetryWindow(WINDOW_MS).enabled());
    }

    @Test
    void shouldDoubleTheWaitFromHalfASecondUpToEightSeconds() {
        RetryWindow window = new RetryWindow(WINDOW_MS);
        long[] expected = {500, 1_000, 2_000, 4_000, 8_000, 8_000};
        long nowNs = 1_000 * MS;
        for (int i = 0; i < expected.length; i++) {
            RetryWindow.Next.Retry retry = retry(window.lost(nowNs, T0, false));
            assertEquals(expected[i], retry.waitMs(), "wait after loss " + (i + 1));
            assertEquals(i + 1, retry.failedAttempt(), "the attempts of one window are counted from 1");
            assertEquals(T0, retry.since(), "the window is the one the first loss opened");
            nowNs += retry.waitMs() * MS;
        }
    }

    @Test
    void shouldCutTheLastWaitToWhatIsLeftOfTheWindowAndThenGiveUp() {
        RetryWindow window = new RetryWindow(WINDOW_MS);
        long openedNs = 5_000 * MS;
        retry(window.lost(openedNs, T0, false));
        RetryWindow.Next.Retry last = retry(window.lost(openedNs + (WINDOW_MS - 300) * MS, T0, false));
        assertEquals(300, last.waitMs(), "the last attempt comes before the window closes");
        assertEquals(300, last.leftMs());
        assertInstanceOf(RetryWindow.Next.GiveUp.class, window.lost(openedNs + WINDOW_MS * MS, T0, false),
                "a loss at the window's end gives up");
    }

    @Test
    void shouldOpenAFreshWindowWhenAReconnectGotWelcome() {
        RetryWindow window = new RetryWindow(WINDOW_MS);
        retry(window.lost(0, T0, false));
        retry(window.lost(500 * MS, T0, false));
        Instant later = T0.plusSeconds(50);
        long lateNs = (WINDOW_MS - 1_000) * MS;
        RetryWindow.Next.Retry fresh = retry(window.lost(lateNs, later, true));
        assertEquals(1, fresh.failedAttempt());
        assertEquals(RetryWindow.FIRST_BACKOFF_MS, fresh.waitMs(), "the backoff starts over");
        assertEquals(later, fresh.since());
        assertEquals(WINDOW_MS, fresh.leftMs(), "the fresh window lasts the whole retry-window from this loss");
        retry(window.lost(lateNs + 2_000 * MS, later, false));   // past the first window's end, inside the fresh one
    }
}
