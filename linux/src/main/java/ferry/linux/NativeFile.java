package ferry.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * One Linux file descriptor, used through the Foreign Function &amp; Memory API (no JNI):
 * positional {@code pread}/{@code pwrite}, {@code lseek} with {@code SEEK_DATA}/{@code SEEK_HOLE},
 * {@code fallocate} (punch hole, zero range), {@code fdatasync}, {@code ftruncate}, open file
 * description locks ({@code fcntl} {@code F_OFD_SETLK}/{@code F_OFD_GETLK}, the ones QEMU takes),
 * the file type ({@code statx}), opening without following a symbolic link ({@code O_NOFOLLOW}), and
 * {@code fsync} of a directory, which makes a file's creation or removal durable.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Every I/O call is positional, so one descriptor serves any number of threads at once.
 *       {@code lseek} moves the descriptor's shared offset, which no other method here relies on.</li>
 *   <li>errno is captured by the linker ({@code Linker.Option.captureCallState("errno")}) into a
 *       per-call segment, so a JVM call between the syscall and the read of errno cannot clobber it.</li>
 *   <li>Reads and writes loop over short transfers and retry {@code EINTR} (bounded).</li>
 *   <li>Heap segments and heap buffers cannot be handed to a syscall that may block, so they are copied
 *       through a native bounce segment of {@value #BOUNCE_LENGTH} bytes; direct buffers go straight through.</li>
 *   <li>{@link #close()} takes a write lock that every call holds for reading, so a descriptor
 *       number is never closed (and possibly reused by the kernel) under a running call.</li>
 * </ul>
 *
 * <p>Threads: any thread; all methods may be called concurrently.
 */
public final class NativeFile implements AutoCloseable {
    static final int O_RDONLY = 0;
    static final int O_RDWR = 2;
    static final int O_CREAT = 0x40;       // 0100
    static final int O_EXCL = 0x80;        // 0200
    static final int O_CLOEXEC = 0x80000;  // 02000000
    /** The two flags whose values differ between x86_64 and aarch64 (asm-generic/fcntl.h against arm64's). */
    private static final boolean AARCH64 = "aarch64".equals(System.getProperty("os.arch"));
    static final int O_DIRECTORY = AARCH64 ? 0x4000 : 0x10000;   // 040000 : 0200000
    static final int O_NOFOLLOW = AARCH64 ? 0x8000 : 0x20000;    // 0100000 : 0400000

    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;

    static final int SEEK_END = 2;
    static final int SEEK_DATA = 3;
    static final int SEEK_HOLE = 4;

    /** What {@link #seekData} and {@link #seekHole} return when no data follows the offset (ENXIO). */
    public static final long NO_MORE = -1;

    static final int BOUNCE_LENGTH = 256 * 1024;
    private static final int EINTR_RETRIES = 1000;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CALL_STATE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CALL_STATE.varHandle(PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");

    // int open(const char *path, int flags, ...): the mode is the first variadic argument.
    private static final MethodHandle OPEN = downcall("open",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), Linker.Option.firstVariadicArg(2));
    private static final MethodHandle CLOSE = downcall("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle PREAD = downcall("pread",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle PWRITE = downcall("pwrite",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle LSEEK = downcall("lseek",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    private static final MethodHandle FALLOCATE = downcall("fallocate",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle FDATASYNC = downcall("fdatasync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle FSYNC = downcall("fsync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    // int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf): glibc 2.28+.
    private static final MethodHandle STATX = downcall("statx",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS));
    static final int AT_EMPTY_PATH = 0x1000;
    static final int STATX_TYPE = 0x1;
    /** {@code struct statx} is 256 bytes on every architecture; {@code stx_mode} (u16) is at offset 28. */
    static final int STATX_LENGTH = 256, STX_MODE_OFFSET = 28;
    static final int S_IFMT = 0xF000, S_IFREG = 0x8000;   // 0170000, 0100000
    private static final MethodHandle SYNC_FILE_RANGE = downcall("sync_file_range",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    /** {@code SYNC_FILE_RANGE_WRITE}: start writeback of dirty pages, do not wait. */
    public static final int SYNC_FILE_RANGE_WRITE = 2;
    private static final MethodHandle FTRUNCATE = downcall("ftruncate",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));

    // int fcntl(int fd, int cmd, ...): the struct flock pointer is the first variadic argument.
    private static final MethodHandle FCNTL = downcall("fcntl",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS), Linker.Option.firstVariadicArg(2));
    static final int F_OFD_GETLK = 36;
    static final int F_OFD_SETLK = 37;
    static final short F_RDLCK = 0;
    static final short F_WRLCK = 1;
    static final short F_UNLCK = 2;
    static final short SEEK_SET = 0;
    /**
     * {@code struct flock} on x86_64 and aarch64, 32 bytes:
     * <pre>
     *  | l_type s16 | l_whence s16 | pad | l_start s64 | l_len s64 | l_pid s32 | pad |
     *  0            2              4     8             16          24          28    32
     * </pre>
     */
    private static final StructLayout FLOCK = MemoryLayout.structLayout(
            JAVA_SHORT.withName("l_type"), JAVA_SHORT.withName("l_whence"), MemoryLayout.paddingLayout(4),
            JAVA_LONG.withName("l_start"), JAVA_LONG.withName("l_len"),
            JAVA_INT.withName("l_pid"), MemoryLayout.paddingLayout(4));
    private static final VarHandle L_TYPE = FLOCK.varHandle(PathElement.groupElement("l_type"));
    private static final VarHandle L_WHENCE = FLOCK.varHandle(PathElement.groupElement("l_whence"));
    private static final VarHandle L_START = FLOCK.varHandle(PathElement.groupElement("l_start"));
    private static final VarHandle L_LEN = FLOCK.varHandle(PathElement.groupElement("l_len"));

    private static MethodHandle downcall(String name, FunctionDescriptor descriptor, Linker.Option... extra) {
        MemorySegment symbol = LINKER.defaultLookup().find(name)
                .orElseThrow(() -> new IllegalStateException("libc symbol not found: " + name));
        Linker.Option[] options = new Linker.Option[extra.length + 1];
        options[0] = CAPTURE_ERRNO;
        System.arraycopy(extra, 0, options, 1, extra.length);
        return LINKER.downcallHandle(symbol, descriptor, options);
    }

    private final Path path;
    private final boolean readOnly;
    private final ReentrantReadWriteLock closeLock = new ReentrantReadWriteLock();
    private int fd;

    private NativeFile(Path path, int fd, boolean readOnly) {
        this.path = path;
        this.fd = fd;
        this.readOnly = readOnly;
    }

    /** Opens an existing file, read-only or read-write, close-on-exec. */
    public static NativeFile open(Path path, boolean readOnly) throws NativeIoException {
        return new NativeFile(path, openFd(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0), readOnly);
    }

    /** Creates a new file read-write with the given permission bits; fails with EEXIST if it exists. */
    public static NativeFile createNew(Path path, int mode) throws NativeIoException {
        return new NativeFile(path, openFd(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode), false);
    }

    /**
     * Opens an existing file like {@link #open}, but fails with ELOOP when {@code path} itself is a
     * symbolic link ({@code O_NOFOLLOW}; links in the directories above it are still followed).
     */
    public static NativeFile openNoFollow(Path path, boolean readOnly) throws NativeIoException {
        int flags = (readOnly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC;
        return new NativeFile(path, openFd(path, flags, 0), readOnly);
    }

    /**
     * Makes durable the creation, removal or renaming of entries in {@code directory}: opens it
     * ({@code O_RDONLY | O_DIRECTORY}), {@code fsync}s it and closes it. {@link #dataSync()} on a new
     * file covers its data, not the directory entry that names it.
     */
    public static void syncDirectory(Path directory) throws NativeIoException {
        try (NativeFile dir = new NativeFile(directory, openFd(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0), true)) {
            dir.intCall("fsync", 0);
        }
    }

    private static int openFd(Path path, int flags, int mode) throws NativeIoException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            MemorySegment cPath = arena.allocateFrom(path.toString());
            for (int attempt = 0; ; attempt++) {
                // NATIVE: cPath is a NUL-terminated copy owned by this confined arena and outlives the call;
                // errno captured via Linker.Option.captureCallState into this call's own state segment.
                int fd = (int) OPEN.invokeExact(state, cPath, flags, mode);
                if (fd >= 0) {
                    return fd;
                }
                Errno errno = errno(state);
                if (!errno.equals(Errno.EINTR) || attempt == EINTR_RETRIES) {
                    throw new NativeIoException("open", "path=" + path, errno);
                }
            }
        } catch (NativeIoException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("open downcall: " + t, t);
        }
    }

    private static Errno errno(MemorySegment state) {
        return new Errno((int) ERRNO.get(state, 0L));
    }

    public Path path() {
        return path;
    }

    public boolean readOnly() {
        return readOnly;
    }

    /** Reads into {@code dst} from {@code offset} until it is full or the file ends; returns the bytes read. */
    public long read(long offset, MemorySegment dst) throws NativeIoException {
        lockOpen("pread");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            if (dst.isNative()) {
                return preadFully(state, offset, dst);
            }
            MemorySegment bounce = arena.allocate(Math.min(dst.byteSize(), BOUNCE_LENGTH));
            long done = 0;
            while (done < dst.byteSize()) {
                long chunk = Math.min(bounce.byteSize(), dst.byteSize() - done);
                long got = preadFully(state, offset + done, bounce.asSlice(0, chunk));
                MemorySegment.copy(bounce, 0, dst, done, got);
                done += got;
                if (got < chunk) {
                    break;   // end of file
                }
            }
            return done;
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /** Reads {@code dst}'s remaining bytes (see {@link #read(long, MemorySegment)}); advances its position by the bytes read. */
    public long read(long offset, ByteBuffer dst) throws NativeIoException {
        long got = read(offset, MemorySegment.ofBuffer(dst));
        dst.position(dst.position() + (int) got);
        return got;
    }

    private long preadFully(MemorySegment state, long offset, MemorySegment dst) throws NativeIoException {
        long done = 0;
        int interrupted = 0;
        while (done < dst.byteSize()) {
            long n;
            try {
                // NATIVE: fd is held open by closeLock's read lock; dst is a native segment of at least
                // byteSize() - done bytes past done, kept alive by the caller for the whole call.
                n = (long) PREAD.invokeExact(state, fd, dst.asSlice(done), dst.byteSize() - done, offset + done);
            } catch (Throwable t) {
                throw rethrow("pread", t);
            }
            if (n > 0) {
                done += n;
            } else if (n == 0) {
                return done;   // end of file
            } else {
                interrupted = checkInterrupted(state, "pread", offset + done, dst.byteSize() - done, interrupted);
            }
        }
        return done;
    }

    /** Writes all of {@code src} at {@code offset}. */
    public void write(long offset, MemorySegment src) throws NativeIoException {
        lockOpen("pwrite");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            if (src.isNative()) {
                pwriteFully(state, offset, src);
                return;
            }
            MemorySegment bounce = arena.allocate(Math.min(src.byteSize(), BOUNCE_LENGTH));
            for (long done = 0; done < src.byteSize(); ) {
                long chunk = Math.min(bounce.byteSize(), src.byteSize() - done);
                MemorySegment.copy(src, done, bounce, 0, chunk);
                pwriteFully(state, offset + done, bounce.asSlice(0, chunk));
                done += chunk;
            }
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /** Writes {@code src}'s remaining bytes at {@code offset}; on return its position is at its limit. */
    public void write(long offset, ByteBuffer src) throws NativeIoException {
        write(offset, MemorySegment.ofBuffer(src));
        src.position(src.limit());
    }

    private void pwriteFully(MemorySegment state, long offset, MemorySegment src) throws NativeIoException {
        long done = 0;
        int interrupted = 0;
        while (done < src.byteSize()) {
            long n;
            try {
                // NATIVE: fd is held open by closeLock's read lock; src is a native segment of at least
                // byteSize() - done bytes past done, kept alive by the caller for the whole call.
                n = (long) PWRITE.invokeExact(state, fd, src.asSlice(done), src.byteSize() - done, offset + done);
            } catch (Throwable t) {
                throw rethrow("pwrite", t);
            }
            if (n > 0) {
                done += n;
            } else if (n == 0) {
                // pwrite returns 0 for a non-empty request only when nothing can be written at all
                throw new NativeIoException("pwrite", detail(offset + done, src.byteSize() - done), Errno.ENOSPC);
            } else {
                interrupted = checkInterrupted(state, "pwrite", offset + done, src.byteSize() - done, interrupted);
            }
        }
    }

    private int checkInterrupted(MemorySegment state, String call, long offset, long length, int interrupted)
            throws NativeIoException {
        Errno errno = errno(state);
        if (!errno.equals(Errno.EINTR) || interrupted == EINTR_RETRIES) {
            throw new NativeIoException(call, detail(offset, length), errno);
        }
        return interrupted + 1;
    }

    /** The first offset at or after {@code offset} that holds data, or {@link #NO_MORE} (ENXIO). */
    public long seekData(long offset) throws NativeIoException {
        return seek(offset, SEEK_DATA, "lseek(SEEK_DATA)");
    }

    /** The first offset at or after {@code offset} in a hole (the end of file counts as one), or {@link #NO_MORE}. */
    public long seekHole(long offset) throws NativeIoException {
        return seek(offset, SEEK_HOLE, "lseek(SEEK_HOLE)");
    }

    /** The file's size in bytes ({@code lseek(fd, 0, SEEK_END)}). */
    public long size() throws NativeIoException {
        return seek(0, SEEK_END, "lseek(SEEK_END)");
    }

    private long seek(long offset, int whence, String call) throws NativeIoException {
        lockOpen(call);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            long result;
            try {
                // NATIVE: fd is held open by closeLock's read lock; errno captured via captureCallState.
                // lseek moves the fd's shared offset, so every other call in this class is positional.
                result = (long) LSEEK.invokeExact(state, fd, offset, whence);
            } catch (Throwable t) {
                throw rethrow(call, t);
            }
            if (result >= 0) {
                return result;
            }
            Errno errno = errno(state);
            if (errno.equals(Errno.ENXIO) && whence != SEEK_END) {
                return NO_MORE;   // offset lies in the final hole, or at/after the end of file
            }
            throw new NativeIoException(call, "path=" + path + " offset=0x" + Long.toHexString(offset), errno);
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /** {@code fallocate(fd, mode, offset, length)}, retrying EINTR. EOPNOTSUPP tells the caller to fall back. */
    public void fallocate(int mode, long offset, long length) throws NativeIoException {
        lockOpen("fallocate");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            for (int interrupted = 0; ; ) {
                int result;
                try {
                    // NATIVE: fd is held open by closeLock's read lock; no memory is passed.
                    result = (int) FALLOCATE.invokeExact(state, fd, mode, offset, length);
                } catch (Throwable t) {
                    throw rethrow("fallocate", t);
                }
                if (result == 0) {
                    return;
                }
                interrupted = checkInterrupted(state, "fallocate", offset, length, interrupted);
            }
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /** Deallocates the range, keeping the file size; the range reads as zeroes afterwards. */
    public void punchHole(long offset, long length) throws NativeIoException {
        fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
    }

    /** Makes the range read as zeroes and keeps it allocated (ext4, xfs; EOPNOTSUPP elsewhere). */
    public void zeroRange(long offset, long length) throws NativeIoException {
        fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
    }

    /** Makes every completed write durable ({@code fdatasync}). */
    public void dataSync() throws NativeIoException {
        intCall("fdatasync", 0);
    }

    /**
     * Starts writeback of the whole file's dirty pages without waiting for it ({@code sync_file_range}
     * with {@code SYNC_FILE_RANGE_WRITE}); a later {@link #dataSync()} then has less to wait for.
     * Not a durability guarantee.
     */
    public void startWriteback() throws NativeIoException {
        intCall("sync_file_range", 0);
    }

    /** Whether the open descriptor is a regular file (not a directory, device, FIFO or socket): {@code statx}. */
    public boolean isRegularFile() throws NativeIoException {
        lockOpen("statx");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            MemorySegment empty = arena.allocateFrom("");
            MemorySegment statx = arena.allocate(STATX_LENGTH, 8);
            for (int interrupted = 0; ; ) {
                int result;
                try {
                    // NATIVE: fd is held open by closeLock's read lock; with AT_EMPTY_PATH and "" statx describes
                    // fd itself; empty and statx (256 bytes, the kernel writes at most that) live in this arena.
                    result = (int) STATX.invokeExact(state, fd, empty, AT_EMPTY_PATH, STATX_TYPE, statx);
                } catch (Throwable t) {
                    throw rethrow("statx", t);
                }
                if (result == 0) {
                    int mode = Short.toUnsignedInt(statx.get(JAVA_SHORT, STX_MODE_OFFSET));
                    return (mode & S_IFMT) == S_IFREG;
                }
                Errno errno = errno(state);
                if (!errno.equals(Errno.EINTR) || interrupted++ == EINTR_RETRIES) {
                    throw new NativeIoException("statx", "path=" + path, errno);
                }
            }
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /** Sets the file size; growing leaves a hole. */
    public void truncate(long size) throws NativeIoException {
        intCall("ftruncate", size);
    }

    private void intCall(String call, long argument) throws NativeIoException {
        lockOpen(call);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            for (int interrupted = 0; ; ) {
                int result;
                try {
                    // NATIVE: fd is held open by closeLock's read lock; no memory is passed.
                    result = switch (call) {
                        case "fdatasync" -> (int) FDATASYNC.invokeExact(state, fd);
                        case "fsync" -> (int) FSYNC.invokeExact(state, fd);
                        case "sync_file_range" -> (int) SYNC_FILE_RANGE.invokeExact(state, fd, 0L, 0L, SYNC_FILE_RANGE_WRITE);
                        default -> (int) FTRUNCATE.invokeExact(state, fd, argument);
                    };
                } catch (Throwable t) {
                    throw rethrow(call, t);
                }
                if (result == 0) {
                    return;
                }
                Errno errno = errno(state);
                if (!errno.equals(Errno.EINTR) || interrupted++ == EINTR_RETRIES) {
                    throw new NativeIoException(call, "path=" + path, errno);
                }
            }
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /**
     * Takes a shared (read) open file description lock on {@code [offset, offset + length)} without
     * waiting ({@code F_OFD_SETLK}, {@code F_RDLCK}); false when another open file description holds a
     * conflicting (write) lock there. The lock belongs to this descriptor, not to the process: it
     * lasts until {@link #unlock} or {@link #close()}, and closing another descriptor of the same file
     * does not drop it (unlike a POSIX record lock).
     */
    public boolean tryReadLock(long offset, long length) throws NativeIoException {
        return ofdLock(F_OFD_SETLK, F_RDLCK, offset, length, "fcntl(F_OFD_SETLK)") != -1;
    }

    /** Drops this descriptor's locks on {@code [offset, offset + length)} ({@code F_OFD_SETLK}, {@code F_UNLCK}). */
    public void unlock(long offset, long length) throws NativeIoException {
        ofdLock(F_OFD_SETLK, F_UNLCK, offset, length, "fcntl(F_OFD_SETLK)");
    }

    /**
     * Whether another open file description holds any lock on {@code [offset, offset + length)}: asks
     * {@code F_OFD_GETLK} whether a write lock could be placed there. This descriptor's own locks never count.
     */
    public boolean lockedByOthers(long offset, long length) throws NativeIoException {
        return ofdLock(F_OFD_GETLK, F_WRLCK, offset, length, "fcntl(F_OFD_GETLK)") != F_UNLCK;
    }

    /** One fcntl lock call; returns the l_type the kernel left (F_OFD_GETLK), or -1 when SETLK met a conflict. */
    private int ofdLock(int command, short type, long offset, long length, String call) throws NativeIoException {
        lockOpen(call);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CALL_STATE);
            MemorySegment lock = arena.allocate(FLOCK);   // zeroed: l_pid must be 0 for OFD locks
            L_TYPE.set(lock, 0L, type);
            L_WHENCE.set(lock, 0L, SEEK_SET);
            L_START.set(lock, 0L, offset);
            L_LEN.set(lock, 0L, length);
            for (int interrupted = 0; ; ) {
                int result;
                try {
                    // NATIVE: fd is held open by closeLock's read lock; lock is a struct flock in this
                    // confined arena, alive for the call, which the kernel reads (and, for GETLK, rewrites).
                    result = (int) FCNTL.invokeExact(state, fd, command, lock);
                } catch (Throwable t) {
                    throw rethrow(call, t);
                }
                if (result != -1) {
                    return (short) L_TYPE.get(lock, 0L);
                }
                Errno errno = errno(state);
                if (command == F_OFD_SETLK && (errno.equals(Errno.EAGAIN) || errno.equals(Errno.EACCES))) {
                    return -1;   // a conflicting lock is held by another open file description
                }
                if (!errno.equals(Errno.EINTR) || interrupted++ == EINTR_RETRIES) {
                    throw new NativeIoException(call, "path=" + path + " offset=" + offset + " length=" + length, errno);
                }
            }
        } finally {
            closeLock.readLock().unlock();
        }
    }

    /** Closes the descriptor once running calls have returned; later calls fail with EBADF. Idempotent. */
    @Override
    public void close() throws NativeIoException {
        closeLock.writeLock().lock();
        try {
            if (fd < 0) {
                return;
            }
            int closing = fd;
            fd = -1;   // never retry close: on Linux the descriptor is released even when close fails
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment state = arena.allocate(CALL_STATE);
                int result;
                try {
                    // NATIVE: no other call runs (write lock held) and fd is marked closed first.
                    result = (int) CLOSE.invokeExact(state, closing);
                } catch (Throwable t) {
                    throw rethrow("close", t);
                }
                if (result != 0 && !errno(state).equals(Errno.EINTR)) {
                    throw new NativeIoException("close", "path=" + path, errno(state));
                }
            }
        } finally {
            closeLock.writeLock().unlock();
        }
    }

    private void lockOpen(String call) throws NativeIoException {
        closeLock.readLock().lock();
        if (fd < 0) {
            closeLock.readLock().unlock();
            throw new NativeIoException(call, "path=" + path + " (closed)", Errno.EBADF);
        }
    }

    private String detail(long offset, long length) {
        return "path=" + path + " offset=0x" + Long.toHexString(offset) + " length=" + length;
    }

    private static RuntimeException rethrow(String call, Throwable t) {
        if (t instanceof RuntimeException r) {
            throw r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        throw new AssertionError(call + " downcall threw a checked exception: " + t, t);
    }

    @Override
    public String toString() {
        return "NativeFile[" + path + (readOnly ? ", read-only" : "") + "]";
    }
}
