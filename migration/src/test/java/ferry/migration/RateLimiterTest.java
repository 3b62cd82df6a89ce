package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The stream's token bucket, timed with generous bounds: 2 busy cores must not make it flaky. */
class RateLimiterTest {
    private static final long MIB = 1 << 20;

    private static long elapsedMs(RateLimiter limiter, long bytes, long chunk) throws InterruptedException {
        long start = System.nanoTime();
        for (long done = 0; done < bytes; done += chunk) {
            limiter.acquire(chunk);
        }
        return (System.nanoTime() - start) / 1_000_000;
    }

    @Test
    void shouldSlowTheSenderToTheRate() throws Exception {
        long ms = elapsedMs(new RateLimiter(8 * MIB), 4 * MIB, 64 << 10);
        assertTrue(ms >= 400 && ms < 5000, "4 MiB at 8 MiB/s took " + ms + " ms, expected about 500");
    }

    @Test
    void shouldAllowOnlyAShortBurstAfterIdling() throws Exception {
        RateLimiter limiter = new RateLimiter(8 * MIB);
        Thread.sleep(300);                                     // idle: at most 50 ms of tokens pile up
        long ms = elapsedMs(limiter, 2 * MIB, 64 << 10);
        assertTrue(ms >= 150, "2 MiB at 8 MiB/s after idling took " + ms + " ms, expected about 200");
    }

    @Test
    void shouldFollowARateChange() throws Exception {
        RateLimiter limiter = new RateLimiter(4 * MIB);
        limiter.rate(64 * MIB);
        assertEquals(64 * MIB, limiter.rate());
        long ms = elapsedMs(limiter, 4 * MIB, 64 << 10);
        assertTrue(ms < 500, "4 MiB at 64 MiB/s took " + ms + " ms, expected about 60");
    }

    @Test
    void shouldRefuseANonPositiveRate() {
        assertThrows(IllegalArgumentException.class, () -> new RateLimiter(0));
        assertThrows(IllegalArgumentException.class, () -> new RateLimiter(8 * MIB).rate(-1));
    }
}
