package ferry.migration;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A token bucket for the one migration stream: {@code max-bandwidth} caps disks and RAM together.
 * The rate may change while a migration runs ({@code migrate_set_speed}).
 * The bucket holds at most 50 ms of tokens, so a burst after an idle moment stays short.
 */
public final class RateLimiter {
    private static final long BURST_NS = TimeUnit.MILLISECONDS.toNanos(50);

    /** Where the limiter reads the time and waits: the system's, or a virtual one in the unit tests. */
    interface Clock {
        Clock SYSTEM = new Clock() {
            @Override public long nanoTime() {
                return System.nanoTime();
            }

            @Override public void sleepNs(long ns) throws InterruptedException {
                TimeUnit.NANOSECONDS.sleep(ns);
            }
        };

        long nanoTime();

        void sleepNs(long ns) throws InterruptedException;
    }

    private final ReentrantLock lock = new ReentrantLock(true);   // fair: senders take turns
    private final Clock clock;
    private volatile long bytesPerSec;
    private double tokens;
    private long lastNs;

    public RateLimiter(long bytesPerSec) {
        this(bytesPerSec, Clock.SYSTEM);
    }

    RateLimiter(long bytesPerSec, Clock clock) {
        this.clock = clock;
        this.lastNs = clock.nanoTime();
        rate(bytesPerSec);
    }

    public void rate(long bytesPerSec) {
        if (bytesPerSec <= 0) {
            throw new IllegalArgumentException("rate must be positive: " + bytesPerSec);
        }
        this.bytesPerSec = bytesPerSec;
    }

    public long rate() {
        return bytesPerSec;
    }

    /** Blocks until {@code bytes} may be sent. */
    public void acquire(long bytes) throws InterruptedException {
        lock.lockInterruptibly();
        try {
            refill();
            tokens -= bytes;
            if (tokens < 0) {
                long waitNs = (long) (-tokens * 1e9 / bytesPerSec);
                clock.sleepNs(waitNs);
                refill();
            }
        } finally {
            lock.unlock();
        }
    }

    private void refill() {
        long now = clock.nanoTime();
        long rate = bytesPerSec;
        tokens = Math.min(tokens + (now - lastNs) * rate / 1e9, rate * (BURST_NS / 1e9));
        lastNs = now;
    }
}
