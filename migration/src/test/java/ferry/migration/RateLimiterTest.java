package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * The stream's token bucket. Pacing runs on a {@link VirtualClock}, so the waits it asks for are
 * exact however busy the machine is; one test on the system clock checks that it really waits, with
 * a lower bound only (a busy machine can only make a wait longer).
 */
class RateLimiterTest {
    private static final long MIB = 1 << 20;
    private static final long CHUNK = 64 << 10;
    private static final double NS_PER_MS = 1e6;
    /** Rounding: each wait is truncated to whole nanoseconds. */
    private static final double TOLERANCE_MS = 0.01;

    /** Virtual milliseconds it takes to send {@code bytes} in {@link #CHUNK}s. */
    private static double sendMs(VirtualClock clock, RateLimiter limiter, long bytes) throws InterruptedException {
        long start = clock.nanoTime();
        for (long done = 0; done < bytes; done += CHUNK) {
            limiter.acquire(CHUNK);
        }
        return (clock.nanoTime() - start) / NS_PER_MS;
    }

    @Test
    void shouldPaceTheSenderToTheRate() throws Exception {
        VirtualClock clock = new VirtualClock();
        // The bucket starts empty: 4 MiB at 8 MiB/s take half a second.
        assertEquals(500, sendMs(clock, new RateLimiter(8 * MIB, clock), 4 * MIB), TOLERANCE_MS);
    }

    @Test
    void shouldAllowOnlyAShortBurstAfterIdling() throws Exception {
        VirtualClock clock = new VirtualClock();
        RateLimiter limiter = new RateLimiter(8 * MIB, clock);
        clock.advanceNs(300_000_000L);                         // idle 300 ms: only 50 ms of tokens are kept
        assertEquals(250 - 50, sendMs(clock, limiter, 2 * MIB), TOLERANCE_MS);
    }

    @Test
    void shouldFollowARateChange() throws Exception {
        VirtualClock clock = new VirtualClock();
        RateLimiter limiter = new RateLimiter(4 * MIB, clock);
        limiter.rate(64 * MIB);
        assertEquals(64 * MIB, limiter.rate());
        assertEquals(62.5, sendMs(clock, limiter, 4 * MIB), TOLERANCE_MS);
    }

    @Test
    void shouldWaitForRealOnTheSystemClock() throws Exception {
        RateLimiter limiter = new RateLimiter(8 * MIB);
        long start = System.nanoTime();
        for (long done = 0; done < MIB; done += CHUNK) {
            limiter.acquire(CHUNK);
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        assertTrue(ms >= 120, "1 MiB at 8 MiB/s from an empty bucket must take 125 ms at least, took " + ms + " ms");
    }

    @Test
    void shouldRefuseANonPositiveRate() {
        assertThrows(IllegalArgumentException.class, () -> new RateLimiter(0));
        assertThrows(IllegalArgumentException.class, () -> new RateLimiter(8 * MIB).rate(-1));
    }
}
