package ferry.migration;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@link RateLimiter.Clock} whose time moves only when someone sleeps or {@link #advanceNs}: pacing
 * tests then measure the waits the limiter asked for, exactly, however busy the machine is.
 *
 * <p>Threads: any; time is one atomic counter.
 */
final class VirtualClock implements RateLimiter.Clock {
    private final AtomicLong nowNs = new AtomicLong(1_000_000_000L);
    private final AtomicLong sleptNs = new AtomicLong();

    @Override
    public long nanoTime() {
        return nowNs.get();
    }

    @Override
    public void sleepNs(long ns) {
        sleptNs.addAndGet(ns);
        nowNs.addAndGet(ns);
    }

    /** Time passes without anyone waiting (an idle sender). */
    void advanceNs(long ns) {
        nowNs.addAndGet(ns);
    }

    /** All waits asked for so far, in nanoseconds. */
    long sleptNs() {
        return sleptNs.get();
    }
}
