package ferry.vm;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * The private directory (mode 0700) that holds one {@code ferry run}'s sockets: QEMU's QMP socket,
 * the socket of QEMU's own NBD server while a migration runs, the RAM tunnel sockets, QEMU's log.
 * Removed on exit. Directories left by a Ferry that was killed with {@code -9} are removed at the
 * next start once their QEMU is gone too (while it runs, its QMP socket here is the way back to it).
 */
public final class RuntimeDir implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(RuntimeDir.class.getName());
    private static final String PREFIX = "ferry-";
    /** Marks a directory as a Ferry runtime dir and names its owner's pid; nothing else is ever removed. */
    private static final String OWNER_FILE = "ferry.pid";
    /** The pid of the QEMU this Ferry started: while it lives, the directory (its QMP socket) stays. */
    private static final String QEMU_FILE = "qemu.pid";
    private final Path path;

    private RuntimeDir(Path path) {
        this.path = path;
    }

    public static RuntimeDir create(Path parent, String vmName) throws IOException {
        Files.createDirectories(parent);
        removeStale(parent);
        String safe = vmName.replaceAll("[^A-Za-z0-9._-]", "_");
        if (safe.length() > 24) {
            safe = safe.substring(0, 24);                  // unix socket paths are limited to 108 bytes
        }
        Path dir = parent.resolve(PREFIX + safe + "-" + ProcessHandle.current().pid());
        Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        Files.writeString(dir.resolve(OWNER_FILE), Long.toString(ProcessHandle.current().pid()));
        return new RuntimeDir(dir);
    }

    public static Path defaultParent() {
        String xdg = System.getenv("XDG_RUNTIME_DIR");
        return xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("java.io.tmpdir"));
    }

    public Path path() {
        return path;
    }

    /** Notes the pid of the VM's QEMU, which outlives a crashed Ferry. */
    public void recordQemu(long pid) throws java.io.UncheckedIOException {
        try {
            Files.writeString(path.resolve(QEMU_FILE), Long.toString(pid));
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("writing " + path.resolve(QEMU_FILE) + ": " + e.getMessage(), e);
        }
    }

    public Path resolve(String name) {
        return path.resolve(name);
    }

    private static void removeStale(Path parent) throws IOException {
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(parent, PREFIX + "*-*")) {
            for (Path dir : dirs) {
                Path owner = dir.resolve(OWNER_FILE);
                if (!Files.isDirectory(dir) || !Files.isRegularFile(owner)) {
                    continue;                               // not ours (e.g. a kept ferry-demo work directory)
                }
                String pidText = Files.readString(owner).strip();
                if (!pidText.matches("\\d{1,18}")) {
                    continue;
                }
                long pid = Long.parseLong(pidText);
                java.util.Optional<Long> qemu = livePid(dir.resolve(QEMU_FILE));
                if (ProcessHandle.of(pid).isEmpty() && qemu.isPresent()) {
                    LOG.log(System.Logger.Level.INFO, "ferry pid " + pid + " is gone but its QEMU (pid " + qemu.get()
                            + ") still runs the VM; leaving " + dir + " (its QMP socket) alone");
                    continue;
                }
                if (ProcessHandle.of(pid).isEmpty()) {
                    LOG.log(System.Logger.Level.INFO, "removing stale runtime directory of dead ferry pid " + pid + ": " + dir);
                    delete(dir);
                }
            }
        }
    }

    private static java.util.Optional<Long> livePid(Path file) throws IOException {
        if (!Files.isRegularFile(file, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return java.util.Optional.empty();
        }
        String text = Files.readString(file).strip();
        if (!text.matches("\\d{1,18}")) {
            return java.util.Optional.empty();
        }
        long pid = Long.parseLong(text);
        return ProcessHandle.of(pid).filter(ProcessHandle::isAlive).map(p -> pid);
    }

    private static void delete(Path dir) throws IOException {
        try (Stream<Path> walk = Files.walk(dir)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    @Override
    public void close() throws IOException {
        delete(path);
    }
}
