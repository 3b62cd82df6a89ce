package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The guest write gate: slows writes while a limit is set, lets them through once it is lifted. On
 * a {@link VirtualClock}: the delays it imposes are exact, whatever the machine's load.
 */
class WriteThrottleTest {
    private static final long MIB = 1 << 20;
    private static final long WRITE = 64 << 10;

    private static void write(WriteThrottle throttle, long bytes) throws InterruptedException {
        for (long done = 0; done < bytes; done += WRITE) {
            throttle.beforeWrite(WRITE);
        }
    }

    @Test
    void shouldBeOpenUntilALimitIsSet() throws Exception {
        VirtualClock clock = new VirtualClock();
        WriteThrottle throttle = new WriteThrottle(clock);
        assertEquals(0, throttle.limitBytesPerSec());
        write(throttle, 64 * MIB);
        assertEquals(0, clock.sleptNs(), "an open gate delayed writes");
        assertEquals(0, throttle.averageDelayUs());
    }

    @Test
    void shouldSlowWritesToTheLimit() throws Exception {
        VirtualClock clock = new VirtualClock();
        WriteThrottle throttle = new WriteThrottle(clock);
        throttle.limit(8 * MIB);
        assertEquals(8 * MIB, throttle.limitBytesPerSec());
        write(throttle, 4 * MIB);
        assertEquals(500, clock.sleptNs() / 1e6, 0.01, "4 MiB at 8 MiB/s from an empty bucket");
        assertEquals(500_000 / 64, throttle.averageDelayUs(), "each of the 64 writes waits its share");
    }

    @Test
    void shouldLiftTheLimitAtZero() throws Exception {
        VirtualClock clock = new VirtualClock();
        WriteThrottle throttle = new WriteThrottle(clock);
        throttle.limit(1 * MIB);
        throttle.limit(4 * MIB);                               // a change keeps the gate, new rate
        assertEquals(4 * MIB, throttle.limitBytesPerSec());
        write(throttle, 1 * MIB);
        assertEquals(250, clock.sleptNs() / 1e6, 0.01, "1 MiB at the new rate of 4 MiB/s");
        throttle.limit(0);
        assertEquals(0, throttle.limitBytesPerSec());
        long before = clock.sleptNs();
        write(throttle, 64 * MIB);                             // 16 s if the limit were still there
        assertEquals(before, clock.sleptNs(), "writes were delayed after the limit was lifted");
    }
}
