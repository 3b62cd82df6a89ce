package ferry.testkit;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Runs code with this process's soft RLIMIT_NOFILE lowered to a few descriptors above those open now,
 * so that accept(2) meets EMFILE, then restores it. Through getrlimit(2)/setrlimit(2) (FFM); only the
 * soft limit changes, so the restore never needs privileges. Logs one line first: the JDK loads its time
 * zone data on the first log line, and without descriptors that class fails to initialize for good.
 * The same holds for any class first loaded inside the window (its class file needs a descriptor, and a
 * failed resolution stays failed in this JVM): run the code under test once before, so that only the
 * paths that really meet EMFILE run while descriptors are short.
 */
public final class OpenFileLimit {
    private static final int RLIMIT_NOFILE = 7;
    private static final Linker LINKER = Linker.nativeLinker();
    private static final MethodHandle GET = handle("getrlimit");
    private static final MethodHandle SET = handle("setrlimit");

    private OpenFileLimit() {}

    /** What runs while descriptors are short. */
    @FunctionalInterface
    public interface Body {
        void run() throws Exception;
    }

    /** Runs {@code body} with room for about {@code spare} more descriptors. */
    public static void withSpare(int spare, Body body) throws Exception {
        System.getLogger(OpenFileLimit.class.getName()).log(System.Logger.Level.INFO, "lowering RLIMIT_NOFILE for a test: "
                + java.time.ZonedDateTime.now());
        long open;
        try (var fds = Files.list(Path.of("/proc/self/fd"))) {
            open = fds.count();
        }
        long[] saved = limits();
        set(open + spare, saved[1]);
        try {
            body.run();
        } finally {
            set(saved[0], saved[1]);
        }
    }

    private static MethodHandle handle(String name) {
        return LINKER.downcallHandle(LINKER.defaultLookup().find(name).orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS));
    }

    private static long[] limits() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment limit = arena.allocate(16);
            // NATIVE: struct rlimit { rlim_t cur; rlim_t max; }, two u64 on x86_64 and aarch64 Linux.
            if ((int) GET.invokeExact(RLIMIT_NOFILE, limit) != 0) {
                throw new IllegalStateException("getrlimit(RLIMIT_NOFILE) failed");
            }
            return new long[] {limit.get(ValueLayout.JAVA_LONG, 0), limit.get(ValueLayout.JAVA_LONG, 8)};
        } catch (Throwable t) {
            throw t instanceof RuntimeException r ? r : new IllegalStateException(t);
        }
    }

    private static void set(long soft, long hard) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment limit = arena.allocate(16);
            limit.set(ValueLayout.JAVA_LONG, 0, soft);
            limit.set(ValueLayout.JAVA_LONG, 8, hard);
            if ((int) SET.invokeExact(RLIMIT_NOFILE, limit) != 0) {
                throw new IllegalStateException("setrlimit(RLIMIT_NOFILE, " + soft + ") failed");
            }
        } catch (Throwable t) {
            throw t instanceof RuntimeException r ? r : new IllegalStateException(t);
        }
    }
}
