package ferry.linux;

import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The one place Ferry's threads come from, so every thread carries the name of its role
 * ({@code nbd-conn-3}, {@code migration-send}, {@code qmp-reader}).
 *
 * <p>Threads are created here but started by their owner's {@code start()} and joined in its
 * {@code close()}; nothing in Ferry starts a thread in a constructor or uses the common pool.
 */
public final class Threads {
    private Threads() {}

    /** Virtual threads named {@code role-1}, {@code role-2}, ...: for blocking per-connection work. */
    public static ThreadFactory virtual(String role) {
        return Thread.ofVirtual().name(role + "-", 1).factory();
    }

    /** Platform threads named {@code role-1}, ...: for the few loops that must not share carriers. */
    public static ThreadFactory platform(String role) {
        AtomicInteger next = new AtomicInteger(1);
        return runnable -> Thread.ofPlatform().name(role + "-" + next.getAndIncrement()).daemon(true).unstarted(runnable);
    }

    /** One named virtual thread, not yet started. */
    public static Thread unstartedVirtual(String name, Runnable body) {
        return Thread.ofVirtual().name(name).unstarted(body);
    }
}
