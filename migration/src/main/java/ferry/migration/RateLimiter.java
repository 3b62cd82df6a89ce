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
    private final ReentrantLock lock = new ReentrantLock(true);   // fair: senders take turns
    private volatile long bytesPerSec;
    private double tokens;
    private long lastNs = System.nanoTime();

    public RateLimiter(long bytesPerSec) {
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
                TimeUnit.NANOSECONDS.sleep(waitNs);
                refill();
            }
        } finally {
            lock.unlock();
        }
    }

    private void refill() {
        long now = System.nanoTime();
        long rate = bytesPerSec;
        tokens = Math.min(tokens + (now - lastNs) * rate / 1e9, rate * (BURST_NS / 1e9));
        lastNs = now;
    }
}
