package ferry.vm;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * The private directory (mode 0700, made exclusively, owner checked) that holds one {@code ferry run}'s sockets: QEMU's QMP socket,
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

    /**
     * Makes this Ferry's directory under {@code parent}: exclusively (an existing name, a symlink
     * included, is an error, never reused), mode 0700, and checked to be a directory this user owns
     * before anything is written into it. When {@code parent} is Ferry's default shared location
     * ({@link #defaultParent()} without XDG_RUNTIME_DIR) it is made and checked the same way.
     */
    public static RuntimeDir create(Path parent, String vmName) throws IOException {
        if (parent.equals(sharedDefault())) {
            privateDirectory(parent);                      // /run/ferry or /tmp/ferry-UID: another user may have made it first
        } else {
            Files.createDirectories(parent);
        }
        removeStale(parent);
        Path dir = parent.resolve(PREFIX + safeName(vmName) + "-" + ProcessHandle.current().pid());
        checkSocketRoom(dir);
        try {
            Files.createDirectory(dir, PRIVATE);           // exclusive: fails on anything already there, a symlink too
        } catch (java.nio.file.FileAlreadyExistsException e) {
            throw new IOException("runtime directory " + dir + " already exists (another user's, or a symlink): refusing to use it", e);
        }
        checkPrivate(dir);
        Files.writeString(dir.resolve(OWNER_FILE), Long.toString(ProcessHandle.current().pid()),
                java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS);
        return new RuntimeDir(dir);
    }

    /** The longest socket name Ferry makes in a runtime directory ({@code QemuLauncher}'s probe). */
    static final String LONGEST_SOCKET = "probe-qmp.sock";
    /** A unix socket's path: 108 bytes of {@code sun_path}, the last one its NUL. */
    static final int MAX_SOCKET_PATH = 107;

    /**
     * Refuses, before anything is made, a runtime directory whose sockets would not fit a unix socket's path:
     * QEMU then failed only after its 30 s start timeout ("did not open its QMP socket").
     */
    static void checkSocketRoom(Path dir) throws IOException {
        int bytes = dir.toAbsolutePath().resolve(LONGEST_SOCKET).toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
        if (bytes > MAX_SOCKET_PATH) {
            throw new IOException("runtime directory " + dir.toAbsolutePath() + " is too long for its unix sockets (" + bytes
                    + " bytes with " + LONGEST_SOCKET + ", at most " + MAX_SOCKET_PATH + "): give --runtime-dir (or XDG_RUNTIME_DIR) a"
                    + " shorter path");
        }
    }

    /** The VM's name as it goes into a directory name: safe characters, at most 24 (unix socket paths are limited to 108 bytes). */
    private static String safeName(String vmName) {
        String safe = vmName.replaceAll("[^A-Za-z0-9._-]", "_");
        return safe.length() > 24 ? safe.substring(0, 24) : safe;
    }

    /** The runtime directory of a dead Ferry whose QEMU still runs: {@code qmp.sock} in it is the way to that QEMU. */
    record Orphan(Path dir, long ferryPid, long qemuPid) {
        Path qmpSocket() {
            return dir.resolve("qmp.sock");
        }
    }

    /**
     * The directories under {@code parent} of dead Ferrys of the VM {@code vmName} whose QEMU still runs, with the same
     * checks as the removal of stale directories (real directories this user owns, a regular owner file, no symlink
     * followed). Empty when {@code parent} does not exist.
     */
    static java.util.List<Orphan> orphans(Path parent, String vmName) throws IOException {
        java.util.List<Orphan> found = new java.util.ArrayList<>();
        if (!Files.isDirectory(parent, LinkOption.NOFOLLOW_LINKS)) {
            return found;
        }
        java.util.regex.Pattern name = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(PREFIX + safeName(vmName) + "-")
                + "\\d{1,18}");
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(parent, PREFIX + "*-*")) {
            for (Path dir : dirs) {
                if (!name.matcher(dir.getFileName().toString()).matches() || !ours(dir)) {
                    continue;
                }
                java.util.Optional<Long> ferryPid = pidIn(dir.resolve(OWNER_FILE));
                java.util.Optional<Long> qemu = livePid(dir.resolve(QEMU_FILE));
                if (ferryPid.isPresent() && qemu.isPresent() && ProcessHandle.of(ferryPid.get()).isEmpty()) {
                    found.add(new Orphan(dir, ferryPid.get(), qemu.get()));
                }
            }
        }
        return found;
    }

    /** A real directory this user owns, holding a regular owner file: one that a Ferry made. */
    private static boolean ours(Path dir) throws IOException {
        return Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS) && Files.isRegularFile(dir.resolve(OWNER_FILE), LinkOption.NOFOLLOW_LINKS)
                && ((Number) Files.getAttribute(dir, "unix:uid", LinkOption.NOFOLLOW_LINKS)).longValue() == ownUid();
    }

    private static final java.nio.file.attribute.FileAttribute<?> PRIVATE =
            PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------"));

    /**
     * Where runtime directories go: {@code $XDG_RUNTIME_DIR} (per user, made by the login manager); else
     * {@code /run/ferry} for root and {@code TMPDIR/ferry-UID} for others, both made 0700 by Ferry and
     * refused when someone else made them first ({@link #create}).
     */
    public static Path defaultParent() {
        String xdg = System.getenv("XDG_RUNTIME_DIR");
        return xdg != null && !xdg.isBlank() ? Path.of(xdg) : sharedDefault();
    }

    static Path sharedDefault() {
        long uid = ownUid();
        return uid == 0 ? Path.of("/run/ferry") : Path.of(System.getProperty("java.io.tmpdir")).resolve("ferry-" + uid);
    }

    private static long ownUid() {
        try {
            return ((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).longValue();
        } catch (IOException | UnsupportedOperationException e) {
            throw new IllegalStateException("cannot tell this process's uid from /proc/self: " + e.getMessage(), e);
        }
    }

    /** Makes {@code dir} (0700) if it is missing, then checks it as {@link #checkPrivate}. */
    static void privateDirectory(Path dir) throws IOException {
        try {
            Files.createDirectory(dir, PRIVATE);
        } catch (java.nio.file.FileAlreadyExistsException e) {
            // made earlier, by us or by someone else: the check below decides
        }
        checkPrivate(dir);
    }

    /** A directory itself (not a symlink to one), owned by this user, with no permission for group or others. */
    static void checkPrivate(Path dir) throws IOException {
        java.nio.file.attribute.PosixFileAttributes attributes =
                Files.readAttributes(dir, java.nio.file.attribute.PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        if (!attributes.isDirectory()) {
            throw new IOException("runtime directory " + dir + " is " + (attributes.isSymbolicLink() ? "a symlink" : "not a directory")
                    + ": refusing to use it");
        }
        long owner = ((Number) Files.getAttribute(dir, "unix:uid", LinkOption.NOFOLLOW_LINKS)).longValue();
        if (owner != ownUid()) {
            throw new IOException("runtime directory " + dir + " belongs to uid " + owner + ", not to this user (uid " + ownUid()
                    + "): refusing to use it");
        }
        java.util.Set<java.nio.file.attribute.PosixFilePermission> others = java.util.EnumSet.copyOf(attributes.permissions());
        others.removeAll(java.util.EnumSet.of(java.nio.file.attribute.PosixFilePermission.OWNER_READ,
                java.nio.file.attribute.PosixFilePermission.OWNER_WRITE, java.nio.file.attribute.PosixFilePermission.OWNER_EXECUTE));
        if (!others.isEmpty()) {
            throw new IOException("runtime directory " + dir + " has mode " + PosixFilePermissions.toString(attributes.permissions())
                    + ": others may use it; refusing (it must be rwx------)");
        }
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

    /** Removes the directories of dead Ferrys: only real directories this user owns, holding a regular owner file; no symlink is followed. */
    private static void removeStale(Path parent) throws IOException {
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(parent, PREFIX + "*-*")) {
            for (Path dir : dirs) {
                Path owner = dir.resolve(OWNER_FILE);
                if (!ours(dir)) {
                    continue;                               // not ours (a kept ferry-demo work directory, another user's, a symlink)
                }
                java.util.Optional<Long> ferryPid = pidIn(owner);
                if (ferryPid.isEmpty()) {
                    continue;
                }
                long pid = ferryPid.get();
                java.util.Optional<Long> qemu = livePid(dir.resolve(QEMU_FILE));
                boolean dead = ProcessHandle.of(pid).isEmpty() || pid == ProcessHandle.current().pid();
                if (dead && qemu.isPresent()) {
                    LOG.log(System.Logger.Level.INFO, "ferry pid " + pid + " is gone but its QEMU (pid " + qemu.get()
                            + ") still runs the VM; leaving " + dir + " (its QMP socket) alone");
                    continue;
                }
                if (dead) {                                 // our own pid there: a dead Ferry's, reused
                    LOG.log(System.Logger.Level.INFO, "removing stale runtime directory of dead ferry pid " + pid + ": " + dir);
                    delete(dir);
                }
            }
        }
    }

    /** The pid in a small regular file, read without following a symlink. */
    private static java.util.Optional<Long> pidIn(Path file) throws IOException {
        if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) {
            return java.util.Optional.empty();
        }
        java.nio.ByteBuffer buffer = java.nio.ByteBuffer.allocate(32);
        try (var in = Files.newByteChannel(file, java.nio.file.StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS)) {
            while (buffer.hasRemaining() && in.read(buffer) > 0) {
                // a pid file is a few bytes; more is not ours
            }
        }
        String text = new String(buffer.array(), 0, buffer.position(), java.nio.charset.StandardCharsets.US_ASCII).strip();
        return text.matches("\\d{1,18}") ? java.util.Optional.of(Long.parseLong(text)) : java.util.Optional.empty();
    }

    private static java.util.Optional<Long> livePid(Path file) throws IOException {
        return pidIn(file).filter(pid -> ProcessHandle.of(pid).filter(ProcessHandle::isAlive).isPresent());
    }

    /** Deletes {@code dir} and what is in it; Files.walk follows no symlink (a link is removed, never what it names). */
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
