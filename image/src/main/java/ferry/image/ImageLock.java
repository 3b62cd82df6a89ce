package ferry.image;

import ferry.linux.NativeFile;
import ferry.linux.NativeIoException;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.Set;

/**
 * The image locks QEMU takes, so that QEMU, qemu-img, qemu-io, qemu-nbd and Ferry keep off each other's
 * images. QEMU's file-posix driver turns its block-layer permissions into open file description locks
 * (Linux {@code F_OFD_SETLK}, shared {@code F_RDLCK}) on single bytes of the image file, whatever its format:
 * <pre>
 *  byte 100 + bit   held while this user HAS the permission      ("perm" bytes)
 *  byte 200 + bit   held while this user DOES NOT SHARE it       ("shared" bytes)
 *
 *  bit  0 consistent read   1 write   2 write unchanged   3 resize      (QEMU 7.2's BLK_PERM_*)
 * </pre>
 * A user who wants a permission checks that nobody holds its 200 byte; one who unshares a permission
 * checks that nobody holds its 100 byte. Each side takes its own bytes first and checks second, so of two
 * users starting at once at least one sees the other. The messages are QEMU's: {@code Failed to get "write"
 * lock} (someone unshares what we want) and {@code Failed to get shared "write" lock} (someone has what we
 * unshare).
 *
 * <p>The locks live on a descriptor of their own, opened read-only, and end when {@link #close()} closes it
 * (or the process ends). Locks are advisory: they stop cooperating programs, not writes.
 *
 * <p>Threads: any; not for concurrent use.
 */
public final class ImageLock implements AutoCloseable {
    /** QEMU's {@code RAW_LOCK_PERM_BASE}: byte 100 + bit is held by users that have the permission. */
    public static final int LOCK_PERM_BASE = 100;
    /** QEMU's {@code RAW_LOCK_SHARED_BASE}: byte 200 + bit is held by users that do not share it. */
    public static final int LOCK_SHARED_BASE = 200;

    /** QEMU's block permissions, in bit order ({@code BLK_PERM_*}), with the names its messages use. */
    public enum Permission {
        CONSISTENT_READ("consistent read"), WRITE("write"), WRITE_UNCHANGED("write unchanged"), RESIZE("resize");

        private final String qemuName;

        Permission(String qemuName) {
            this.qemuName = qemuName;
        }

        /** The name in QEMU's messages: {@code "write"}. */
        public String qemuName() {
            return qemuName;
        }

        int bit() {
            return ordinal();
        }
    }

    private final NativeFile file;

    private ImageLock(NativeFile file) {
        this.file = file;
    }

    /**
     * What an NBD server of the image takes, as a QEMU block device or qemu-img would: consistent read, and
     * write unless read-only; others may not write or resize it (they would change bytes under our clients),
     * but may read it and hold "write unchanged".
     */
    public static ImageLock forServing(Path path, boolean readOnly) throws ImageException {
        Set<Permission> perm = readOnly ? EnumSet.of(Permission.CONSISTENT_READ)
                : EnumSet.of(Permission.CONSISTENT_READ, Permission.WRITE);
        return acquire(path, perm, EnumSet.of(Permission.CONSISTENT_READ, Permission.WRITE_UNCHANGED));
    }

    /**
     * Takes {@code perm} and unshares everything not in {@code shared}; fails with {@link ImageException.Kind#IN_USE}
     * when another user of the image conflicts, and then holds nothing.
     */
    public static ImageLock acquire(Path path, Set<Permission> perm, Set<Permission> shared) throws ImageException {
        NativeFile file;
        try {
            file = NativeFile.open(path, true);
        } catch (NativeIoException e) {
            throw new ImageException(ImageException.Kind.IO, "cannot open image to lock it: " + e.getMessage(), e);
        }
        try {
            Set<Permission> unshared = EnumSet.allOf(Permission.class);
            unshared.removeAll(shared);
            for (Permission p : perm) {
                take(file, path, LOCK_PERM_BASE + p.bit());
            }
            for (Permission p : unshared) {
                take(file, path, LOCK_SHARED_BASE + p.bit());
            }
            for (Permission p : perm) {   // does anybody refuse to share what we want?
                if (file.lockedByOthers(LOCK_SHARED_BASE + p.bit(), 1)) {
                    throw inUse(path, "Failed to get \"" + p.qemuName() + "\" lock");
                }
            }
            for (Permission p : unshared) {   // does anybody have what we refuse to share?
                if (file.lockedByOthers(LOCK_PERM_BASE + p.bit(), 1)) {
                    throw inUse(path, "Failed to get shared \"" + p.qemuName() + "\" lock");
                }
            }
            return new ImageLock(file);
        } catch (NativeIoException e) {
            closeAfterFailure(file, e);
            throw new ImageException(ImageException.Kind.IO, "cannot lock image: " + e.getMessage(), e);
        } catch (ImageException e) {
            closeAfterFailure(file, e);
            throw e;
        }
    }

    private static void take(NativeFile file, Path path, int offset) throws NativeIoException, ImageException {
        if (!file.tryReadLock(offset, 1)) {   // QEMU never write-locks these bytes: someone else's convention
            throw inUse(path, "Failed to lock byte " + offset);
        }
    }

    private static ImageException inUse(Path path, String qemuMessage) {
        return new ImageException(ImageException.Kind.IN_USE, "image is in use: path=" + path + ": " + qemuMessage
                + " (is another process, such as QEMU, qemu-nbd or another ferry serve, using the image?)");
    }

    private static void closeAfterFailure(NativeFile file, Exception failure) {
        try {
            file.close();
        } catch (NativeIoException e) {
            failure.addSuppressed(e);
        }
    }

    /** Releases every lock (closes the lock descriptor). Idempotent. */
    @Override
    public void close() throws ImageException {
        try {
            file.close();
        } catch (NativeIoException e) {
            throw new ImageException(ImageException.Kind.IO, "cannot release image lock: " + e.getMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "ImageLock[" + file.path() + "]";
    }
}
