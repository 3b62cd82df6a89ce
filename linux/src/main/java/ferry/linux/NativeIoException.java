package ferry.linux;

import java.io.IOException;

/**
 * A failed system call: which call, on which file, and the {@link Errno} it returned. Callers in
 * higher layers inspect {@link #errno()} to pick their own error kind (ENOSPC is "no space").
 */
public final class NativeIoException extends IOException {
    private final String call;
    private final Errno errno;

    public NativeIoException(String call, String detail, Errno errno) {
        super(call + " failed: " + detail + ": " + errno);
        this.call = call;
        this.errno = errno;
    }

    /** The system call's name: {@code pwrite}, {@code fallocate}, ... */
    public String call() {
        return call;
    }

    public Errno errno() {
        return errno;
    }
}
