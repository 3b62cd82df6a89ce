package ferry.image;

import ferry.image.raw.RawImage;
import java.nio.file.Path;

/** Opens an image by its QEMU format name: the one switch that knows every format Ferry supports. */
public final class Images {
    private Images() {}

    public static BlockImage open(Path path, String format, boolean readOnly) throws ImageException {
        return switch (format) {
            case "raw" -> RawImage.open(path, readOnly);
            case null -> throw new ImageException(ImageException.Kind.UNSUPPORTED,
                    "unsupported image format: (none) path=" + path);
            default -> throw new ImageException(ImageException.Kind.UNSUPPORTED,
                    "unsupported image format: " + format + " path=" + path);
        };
    }
}
