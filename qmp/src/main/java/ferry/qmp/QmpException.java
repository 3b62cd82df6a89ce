package ferry.qmp;

import java.io.IOException;
import java.util.Optional;

/**
 * The QMP layer's one checked exception. {@link Kind#ERROR_REPLY} carries QEMU's error class and
 * description; every kind names the command when there was one. Messages read
 * {@code qmp command failed: command=migrate class=GenericError: desc}.
 */
public final class QmpException extends IOException {
    public enum Kind {
        /** QEMU answered the command with an {@code error} reply. */
        ERROR_REPLY,
        /** No reply within the timeout. */
        TIMEOUT,
        /** The connection is closed or QEMU is gone: pending and later calls fail with this. */
        CLOSED,
        /** QEMU sent something that is not QMP as we know it (bad JSON, unexpected shape). */
        PROTOCOL,
        /** A socket error while connecting, reading or writing. */
        IO,
        /** The reply was larger than the decoder keeps; it was dropped, and the connection stays up. */
        REPLY_TOO_LARGE
    }

    private final Kind kind;
    private final String command;
    private final String errorClass;
    private final String desc;

    public QmpException(Kind kind, String command, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
        this.command = command;
        this.errorClass = null;
        this.desc = null;
    }

    private QmpException(String command, String errorClass, String desc) {
        super("qmp command failed: command=" + command + " class=" + errorClass + ": " + desc);
        this.kind = Kind.ERROR_REPLY;
        this.command = command;
        this.errorClass = errorClass;
        this.desc = desc;
    }

    public static QmpException errorReply(String command, String errorClass, String desc) {
        return new QmpException(command, errorClass, desc);
    }

    /** The same failure, seen by a call of {@code command} (a connection failure reaches every pending call). */
    QmpException forCommand(String otherCommand) {
        if (kind == Kind.ERROR_REPLY) {
            return this;
        }
        return new QmpException(kind, otherCommand, "qmp command failed: command=" + otherCommand + ": " + getMessage(), this);
    }

    public Kind kind() {
        return kind;
    }

    /** The QMP command name, when the failure belongs to one. */
    public Optional<String> command() {
        return Optional.ofNullable(command);
    }

    /** QEMU's error class ({@code GenericError}, {@code CommandNotFound}, ...) for {@link Kind#ERROR_REPLY}. */
    public Optional<String> errorClass() {
        return Optional.ofNullable(errorClass);
    }

    /** QEMU's human-readable error description for {@link Kind#ERROR_REPLY}. */
    public Optional<String> desc() {
        return Optional.ofNullable(desc);
    }
}
