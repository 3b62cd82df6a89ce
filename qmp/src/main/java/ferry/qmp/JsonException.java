package ferry.qmp;

import java.io.IOException;

/** Malformed JSON, or JSON of the wrong shape for the QMP message being decoded. */
public final class JsonException extends IOException {
    public JsonException(String message) {
        super(message);
    }
}
