package ferry.image.qcow2;

import java.util.Objects;

/**
 * The backing file of a new qcow2 image, as written into its header: {@code path} exactly as stored
 * (relative paths are resolved against the overlay's directory when the image is opened) and
 * {@code format} as QEMU spells it ({@code raw} or {@code qcow2}), stored in the backing format
 * header extension.
 */
public record Backing(String path, String format) {
    public static final String RAW = "raw", QCOW2 = "qcow2";

    public Backing {
        Objects.requireNonNull(path, "path");
        Objects.requireNonNull(format, "format");
        if (path.isEmpty()) {
            throw new IllegalArgumentException("bad backing: empty path");
        }
        if (!format.equals(RAW) && !format.equals(QCOW2)) {
            throw new IllegalArgumentException("bad backing: format=" + format + " (raw or qcow2)");
        }
    }
}
