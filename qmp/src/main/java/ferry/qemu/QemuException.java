package ferry.qemu;

import java.io.IOException;

/**
 * The QEMU-process layer's one checked exception. Messages read
 * {@code qemu start failed: name=vm1 log=/run/ferry/vm1/qemu.log: qemu-system-x86_64: -blockdev ...: ...}.
 */
public final class QemuException extends IOException {
    public enum Kind {
        /** QEMU could not be started (missing binary, bad command line). */
        START,
        /** QEMU exited when it should not have. */
        EXITED,
        /** QEMU did not get somewhere in time (QMP socket, exit). */
        TIMEOUT,
        /** The QMP connection failed; the cause is a {@code QmpException}. */
        QMP
    }

    private final Kind kind;

    public QemuException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
