package ferry.qmp;

import java.util.Objects;

/**
 * A command refused by Ferry's {@link QmpServer}: the client gets
 * {@code {"error": {"class": errorClass, "desc": desc}}}, with QEMU's classes ({@code GenericError},
 * {@code CommandNotFound}, {@code DeviceNotActive}, {@code DeviceNotFound}, {@code KVMMissingCap}).
 */
public final class QmpError extends Exception {
    public static final String GENERIC_ERROR = "GenericError";
    public static final String COMMAND_NOT_FOUND = "CommandNotFound";

    private final String errorClass;
    private final String desc;

    public QmpError(String errorClass, String desc) {
        super(errorClass + ": " + desc);
        this.errorClass = Objects.requireNonNull(errorClass, "errorClass");
        this.desc = Objects.requireNonNull(desc, "desc");
    }

    /** QEMU's most common error: {@code GenericError} with a sentence for the user. */
    public static QmpError generic(String desc) {
        return new QmpError(GENERIC_ERROR, desc);
    }

    /** QEMU's error reply, passed on unchanged to Ferry's own client. */
    public static QmpError of(QmpException e) {
        if (e.kind() == QmpException.Kind.ERROR_REPLY) {
            return new QmpError(e.errorClass().orElse(GENERIC_ERROR), e.desc().orElse(e.getMessage()));
        }
        return generic(e.getMessage());
    }

    public String errorClass() {
        return errorClass;
    }

    public String desc() {
        return desc;
    }

    /** {@code {"class": ..., "desc": ...}}. */
    public Json.Obj encode() {
        java.util.Map<String, Json> error = new java.util.LinkedHashMap<>();
        error.put("class", Json.of(errorClass));
        error.put("desc", Json.of(desc));
        return new Json.Obj(error);
    }
}
