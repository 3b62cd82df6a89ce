package ferry.linux;

import java.util.Map;

/**
 * A Linux errno value with its symbolic name and a strerror-like description, so that messages
 * read {@code No space left on device (ENOSPC)}. Values are the Linux generic ones (x86_64 and
 * aarch64 agree on every code listed here). Unknown codes keep their number: {@code errno 200}.
 */
public record Errno(int code) {
    public static final Errno EPERM = new Errno(1);
    public static final Errno ENOENT = new Errno(2);
    public static final Errno EINTR = new Errno(4);
    public static final Errno EIO = new Errno(5);
    public static final Errno ENXIO = new Errno(6);
    public static final Errno EBADF = new Errno(9);
    public static final Errno EAGAIN = new Errno(11);
    public static final Errno ENOMEM = new Errno(12);
    public static final Errno EACCES = new Errno(13);
    public static final Errno EFAULT = new Errno(14);
    public static final Errno EBUSY = new Errno(16);
    public static final Errno EEXIST = new Errno(17);
    public static final Errno ENODEV = new Errno(19);
    public static final Errno ENOTDIR = new Errno(20);
    public static final Errno EISDIR = new Errno(21);
    public static final Errno EINVAL = new Errno(22);
    public static final Errno EMFILE = new Errno(24);
    public static final Errno EFBIG = new Errno(27);
    public static final Errno ENOSPC = new Errno(28);
    public static final Errno ESPIPE = new Errno(29);
    public static final Errno EROFS = new Errno(30);
    public static final Errno ENAMETOOLONG = new Errno(36);
    public static final Errno ENOSYS = new Errno(38);
    public static final Errno ELOOP = new Errno(40);
    public static final Errno EOPNOTSUPP = new Errno(95);
    public static final Errno EDQUOT = new Errno(122);

    private record Text(String name, String description) {}

    private static final Map<Integer, Text> TEXTS = Map.ofEntries(
            Map.entry(1, new Text("EPERM", "Operation not permitted")),
            Map.entry(2, new Text("ENOENT", "No such file or directory")),
            Map.entry(4, new Text("EINTR", "Interrupted system call")),
            Map.entry(5, new Text("EIO", "Input/output error")),
            Map.entry(6, new Text("ENXIO", "No such device or address")),
            Map.entry(9, new Text("EBADF", "Bad file descriptor")),
            Map.entry(11, new Text("EAGAIN", "Resource temporarily unavailable")),
            Map.entry(12, new Text("ENOMEM", "Cannot allocate memory")),
            Map.entry(13, new Text("EACCES", "Permission denied")),
            Map.entry(14, new Text("EFAULT", "Bad address")),
            Map.entry(16, new Text("EBUSY", "Device or resource busy")),
            Map.entry(17, new Text("EEXIST", "File exists")),
            Map.entry(19, new Text("ENODEV", "No such device")),
            Map.entry(20, new Text("ENOTDIR", "Not a directory")),
            Map.entry(21, new Text("EISDIR", "Is a directory")),
            Map.entry(22, new Text("EINVAL", "Invalid argument")),
            Map.entry(24, new Text("EMFILE", "Too many open files")),
            Map.entry(27, new Text("EFBIG", "File too large")),
            Map.entry(28, new Text("ENOSPC", "No space left on device")),
            Map.entry(29, new Text("ESPIPE", "Illegal seek")),
            Map.entry(30, new Text("EROFS", "Read-only file system")),
            Map.entry(36, new Text("ENAMETOOLONG", "File name too long")),
            Map.entry(38, new Text("ENOSYS", "Function not implemented")),
            Map.entry(40, new Text("ELOOP", "Too many levels of symbolic links")),
            Map.entry(95, new Text("EOPNOTSUPP", "Operation not supported")),
            Map.entry(122, new Text("EDQUOT", "Disk quota exceeded")));

    /** The symbolic name, e.g. {@code ENOSPC}; {@code errno 200} for a code not listed here. */
    public String name() {
        Text text = TEXTS.get(code);
        return text == null ? "errno " + code : text.name();
    }

    /** strerror-like text, e.g. {@code No space left on device}. */
    public String description() {
        Text text = TEXTS.get(code);
        return text == null ? "Unknown error " + code : text.description();
    }

    /** {@code No space left on device (ENOSPC)}: the form Ferry's error messages end with. */
    @Override
    public String toString() {
        return description() + " (" + name() + ")";
    }
}
