package ferry.migration;

import ferry.dirty.DirtyTrackingImage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Slows guest disk writes down so that a migration whose link cannot keep up still converges.
 * Installed as the disks' {@link DirtyTrackingImage.WriteGate}: the NBD server's connection thread
 * sleeps before the write, which delays the completion QEMU waits for. The vCPUs keep running
 * (QEMU's auto-converge throttled the vCPUs and nearly stalled guests during block migration).
 *
 * <p>Threads: {@link #beforeWrite} from NBD connection threads; {@link #limit} from the copier.
 */
public final class WriteThrottle implements DirtyTrackingImage.WriteGate {
    private final RateLimiter.Clock clock;
    private volatile RateLimiter limiter;          // null: no throttle
    private final AtomicLong delayedNs = new AtomicLong();
    private final AtomicLong writes = new AtomicLong();

    public WriteThrottle() {
        this(RateLimiter.Clock.SYSTEM);
    }

    WriteThrottle(RateLimiter.Clock clock) {
        this.clock = clock;
    }

    /** Limits guest writes to {@code bytesPerSec}; 0 lifts the limit. */
    public void limit(long bytesPerSec) {
        if (bytesPerSec <= 0) {
            limiter = null;
        } else if (limiter == null) {
            limiter = new RateLimiter(bytesPerSec, clock);
        } else {
            limiter.rate(bytesPerSec);
        }
    }

    /** The current limit in bytes per second, 0 when off. */
    public long limitBytesPerSec() {
        RateLimiter current = limiter;
        return current == null ? 0 : current.rate();
    }

    /** Average delay added per write since the throttle was created, in microseconds. */
    public long averageDelayUs() {
        long count = writes.get();
        return count == 0 ? 0 : TimeUnit.NANOSECONDS.toMicros(delayedNs.get() / count);
    }

    @Override
    public void beforeWrite(long length) throws InterruptedException {
        RateLimiter current = limiter;
        if (current == null) {
            return;
        }
        long start = clock.nanoTime();
        current.acquire(length);
        delayedNs.addAndGet(clock.nanoTime() - start);
        writes.incrementAndGet();
    }
}
