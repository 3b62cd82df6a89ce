package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The copy scheduler's arithmetic, with made-up clocks: no sleeping. */
class ConvergenceTest {
    private static final long MIB = 1 << 20;
    private static final long SECOND_NS = 1_000_000_000L;

    @Test
    void shouldMeasureBandwidthFromPassesOfAtLeastOneMebibyte() {
        Convergence c = new Convergence(100 * MIB, 0);
        assertEquals(100 * MIB, c.bandwidthBytesPerSec(), "unmeasured: the cap");
        c.passSent(MIB - 1, SECOND_NS / 1000);                 // small pass: latency, not bandwidth
        assertEquals(100 * MIB, c.bandwidthBytesPerSec());
        c.passSent(2 * MIB, SECOND_NS);
        assertEquals(2 * MIB, c.bandwidthBytesPerSec());
        c.passSent(4 * MIB, SECOND_NS);                        // EWMA, alpha 0.5
        assertEquals(3 * MIB, c.bandwidthBytesPerSec());
        c.passSent(MIB, SECOND_NS / 1000);                     // exactly 1 MiB counts
        assertTrue(c.bandwidthBytesPerSec() > 100 * MIB / 2, "1 MiB in 1 ms should raise B: " + c.bandwidthBytesPerSec());
    }

    @Test
    void shouldApplyTheCapToMeasuredBandwidth() {
        Convergence c = new Convergence(100 * MIB, 0);
        c.passSent(50 * MIB, SECOND_NS);
        assertEquals(50 * MIB, c.bandwidthBytesPerSec());
        c.cap(10 * MIB);
        assertEquals(10 * MIB, c.bandwidthBytesPerSec());
        c.cap(1000 * MIB);
        assertEquals(50 * MIB, c.bandwidthBytesPerSec());
    }

    @Test
    void shouldStartRamWhenTheRemainderFitsHalfTheDowntime() {
        Convergence c = new Convergence(100 * MIB, 0);
        c.passSent(2 * MIB, SECOND_NS);                        // B = 2 MiB/s
        assertEquals(500, c.expectedDowntimeMs(MIB));
        assertTrue(c.readyForRam(MIB, 1000));                 // 500 ms <= 1000 / 2
        assertFalse(c.readyForRam(MIB + 4096, 1000));         // 501 ms
        assertFalse(c.readyForRam(MIB, 999));
        assertTrue(c.readyForRam(0, 0));
    }

    @Test
    void shouldMeasureDirtyRateBetweenSnapshots() {
        Convergence c = new Convergence(100 * MIB, 0);
        c.snapshotTaken(4 * MIB, SECOND_NS);
        assertEquals(4 * MIB, c.dirtyRateBytesPerSec());
        c.snapshotTaken(MIB, 2 * SECOND_NS);
        assertEquals(5 * MIB / 2, c.dirtyRateBytesPerSec());
    }

    /** B = 4 MiB/s measured, D = 4 MiB/s: the guest outruns half the link. */
    private static Convergence outrun() {
        Convergence c = new Convergence(100 * MIB, 0);
        c.passSent(4 * MIB, SECOND_NS);
        c.snapshotTaken(4 * MIB, SECOND_NS);
        return c;
    }

    @Test
    void shouldThrottleOnlyOnceAPassAfterTheFirstStalls() {
        Convergence c = outrun();
        assertEquals(0, c.afterPass(1, 10 * MIB), "first dirty pass: nothing to compare with");
        assertEquals(0, c.afterPass(1, 20 * MIB), "pass 1 is below PASSES_BEFORE_THROTTLE even when it grows");
        Convergence shrinking = outrun();
        assertEquals(0, shrinking.afterPass(1, 10 * MIB));
        assertEquals(0, shrinking.afterPass(2, 9 * MIB), "shrinking: no throttle");
        assertEquals(0, shrinking.afterPass(3, 8 * MIB));
        assertEquals(2 * MIB, shrinking.afterPass(4, 8 * MIB), "stalled: half of B");
    }

    @Test
    void shouldNotThrottleWhenTheGuestWritesLessThanHalfTheBandwidth() {
        Convergence c = new Convergence(100 * MIB, 0);
        c.passSent(4 * MIB, SECOND_NS);
        c.snapshotTaken(2 * MIB - 1, SECOND_NS);               // just under 0.5 * B
        assertEquals(0, c.afterPass(1, 10 * MIB));
        for (int pass = 2; pass < 10; pass++) {
            assertEquals(0, c.afterPass(pass, 10 * MIB), "pass " + pass);
        }
        c.snapshotTaken(2 * MIB + 2, 2 * SECOND_NS);           // EWMA now >= 0.5 * B
        assertEquals(2 * MIB, c.afterPass(10, 10 * MIB));
    }

    @Test
    void shouldHalveOnEachFurtherStallDownToTheFloor() {
        Convergence c = outrun();
        assertEquals(0, c.afterPass(1, 10 * MIB));
        assertEquals(2 * MIB, c.afterPass(2, 10 * MIB));
        assertEquals(MIB, c.afterPass(3, 10 * MIB));
        assertEquals(MIB, c.afterPass(4, 9 * MIB), "shrinking: keep the limit");
        assertEquals(MIB / 2, c.afterPass(5, 9 * MIB));
        assertEquals(Convergence.MIN_GUEST_RATE, c.afterPass(6, 9 * MIB));
        for (int pass = 7; pass < 20; pass++) {
            assertEquals(Convergence.MIN_GUEST_RATE, c.afterPass(pass, 9 * MIB), "pass " + pass);
        }
        assertEquals(Convergence.MIN_GUEST_RATE, c.guestLimit());
    }

    @Test
    void shouldKeepTheGuestBelowTheBandwidthOnASlowLink() {
        Convergence c = new Convergence(100 * MIB, 0);
        c.passSent(MIB, 4 * SECOND_NS);                        // B = 256 KiB/s
        c.snapshotTaken(MIB, SECOND_NS);
        c.afterPass(1, 10 * MIB);
        assertEquals(128 * 1024, c.afterPass(2, 10 * MIB), "half of B, not a fixed floor above B");
        for (int pass = 3; pass < 20; pass++) {
            c.afterPass(pass, 10 * MIB);
        }
        assertEquals(16 * 1024, c.guestLimit(), "the floor is B/16 on a slow link");
    }

    @Test
    void shouldThrottleDuringALongBulkPassWhenTheDirtySetOutgrowsTheLink() {
        Convergence c = new Convergence(64 * 1024, 0);         // a 64 KiB/s link, no samples yet
        assertEquals(0, c.duringBulk(100 * 1024, SECOND_NS / 2), "checks at most once a second");
        assertEquals(0, c.duringBulk(200 * 1024, SECOND_NS), "one second of growth is not yet a trend");
        assertEquals(32 * 1024, c.duringBulk(400 * 1024, 2 * SECOND_NS), "two: half the bandwidth");
        assertEquals(32 * 1024, c.duringBulk(800 * 1024, 3 * SECOND_NS), "the bulk check never halves further");
        Convergence quiet = new Convergence(64 * 1024, 0);
        for (int s = 1; s < 10; s++) {
            assertEquals(0, quiet.duringBulk(s * 1024L, s * SECOND_NS), "1 KiB/s of writes on 64 KiB/s: no throttle");
        }
    }
}
