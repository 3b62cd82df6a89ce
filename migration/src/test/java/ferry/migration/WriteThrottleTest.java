package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The guest write gate: slows writes while a limit is set, lets them through once it is lifted. */
class WriteThrottleTest {
    private static final long MIB = 1 << 20;

    private static long writeMs(WriteThrottle throttle, long bytes) throws InterruptedException {
        long start = System.nanoTime();
        for (long done = 0; done < bytes; done += 64 << 10) {
            throttle.beforeWrite(64 << 10);
        }
        return (System.nanoTime() - start) / 1_000_000;
    }

    @Test
    void shouldBeOpenUntilALimitIsSet() throws Exception {
        WriteThrottle throttle = new WriteThrottle();
        assertEquals(0, throttle.limitBytesPerSec());
        long ms = writeMs(throttle, 64 * MIB);
        assertTrue(ms < 300, "64 MiB through an open gate took " + ms + " ms");
        assertEquals(0, throttle.averageDelayUs());
    }

    @Test
    void shouldSlowWritesToTheLimit() throws Exception {
        WriteThrottle throttle = new WriteThrottle();
        throttle.limit(8 * MIB);
        assertEquals(8 * MIB, throttle.limitBytesPerSec());
        long ms = writeMs(throttle, 4 * MIB);
        assertTrue(ms >= 400 && ms < 5000, "4 MiB at 8 MiB/s took " + ms + " ms, expected about 500");
        assertTrue(throttle.averageDelayUs() > 1000, "average delay " + throttle.averageDelayUs() + " us");
    }

    @Test
    void shouldLiftTheLimitAtZero() throws Exception {
        WriteThrottle throttle = new WriteThrottle();
        throttle.limit(1 * MIB);
        throttle.limit(4 * MIB);                               // a change keeps the gate, new rate
        assertEquals(4 * MIB, throttle.limitBytesPerSec());
        throttle.limit(0);
        assertEquals(0, throttle.limitBytesPerSec());
        long ms = writeMs(throttle, 64 * MIB);                 // 16 s if the limit were still there
        assertTrue(ms < 300, "64 MiB after lifting the limit took " + ms + " ms");
    }
}
