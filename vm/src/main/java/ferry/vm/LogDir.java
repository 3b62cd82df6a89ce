package ferry.vm;

import java.nio.file.Path;
import java.util.Optional;

/**
 * Where Ferry keeps logs that must outlive it: QEMU's own log ({@code NAME.qemu.log}: QEMU's stdout and
 * stderr, appended run after run, like QEMU's {@code -D}), the configuration probe's
 * ({@code NAME.qemu-probe.log}) and a daemon's ({@code NAME.ferry.log}). The runtime directory is deleted
 * when Ferry exits, so a log there would be gone by the time a message names it.
 *
 * <p>{@code --log-dir DIR}; otherwise {@code $FERRY_LOG_DIR}; otherwise {@code /var/log/ferry} for root and
 * {@code $XDG_STATE_HOME/ferry} (default {@code ~/.local/state/ferry}) for other users.
 */
public final class LogDir {
    private LogDir() {}

    public static Path of(Optional<Path> given) {
        if (given.isPresent()) {
            return given.get().toAbsolutePath();
        }
        String env = System.getenv("FERRY_LOG_DIR");
        if (env != null && !env.isEmpty()) {
            return Path.of(env).toAbsolutePath();
        }
        if ("root".equals(System.getProperty("user.name"))) {
            return Path.of("/var/log/ferry");
        }
        String state = System.getenv("XDG_STATE_HOME");
        return (state != null && !state.isEmpty() ? Path.of(state) : Path.of(System.getProperty("user.home"), ".local", "state"))
                .resolve("ferry");
    }

    /** QEMU's log of the VM {@code name}. */
    public static Path qemuLog(Optional<Path> given, String name) {
        return of(given).resolve(name + ".qemu.log");
    }
}
