package ferry.image;

import java.io.IOException;

/**
 * The image layer's one checked exception: a stable {@link Kind}, the context (path, offset, length)
 * in the message, and the cause. Messages read "what failed: key=value ...: reason", e.g.
 * {@code write failed: path=/srv/a.raw offset=0x7ff000 length=65536: No space left on device (ENOSPC)}.
 * The NBD layer maps {@link Kind} to an NBD error in one switch.
 */
public final class ImageException extends IOException {
    public enum Kind { IO, NO_SPACE, READ_ONLY, OUT_OF_BOUNDS, INVALID_FORMAT, UNSUPPORTED, CORRUPT, IN_USE }

    private final Kind kind;

    public ImageException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public ImageException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
