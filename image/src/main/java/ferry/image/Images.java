package ferry.image;

import ferry.image.qcow2.Qcow2Image;
import ferry.image.raw.RawImage;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/** Opens and creates images by their QEMU format name: the one switch that knows every format Ferry supports. */
public final class Images {
    private static final byte[] QCOW2_MAGIC = {'Q', 'F', 'I', (byte) 0xfb};
    /** Cluster size of the qcow2 images Ferry creates: QEMU's default. */
    public static final int QCOW2_CLUSTER_SIZE = 64 << 10;

    private Images() {}

    public static BlockImage open(Path path, String format, boolean readOnly) throws ImageException {
        return switch (format) {
            case "raw" -> RawImage.open(path, readOnly);
            case "qcow2" -> Qcow2Image.open(path, readOnly);
            case null -> throw new ImageException(ImageException.Kind.UNSUPPORTED,
                    "unsupported image format: (none) path=" + path);
            default -> throw new ImageException(ImageException.Kind.UNSUPPORTED,
                    "unsupported image format: " + format + " path=" + path);
        };
    }

    /** Creates a new, empty image (raw: sparse; qcow2: no backing file). Refuses to overwrite. */
    public static BlockImage create(Path path, String format, long size) throws ImageException {
        return switch (format) {
            case "raw" -> RawImage.create(path, size);
            case "qcow2" -> Qcow2Image.create(path, size, QCOW2_CLUSTER_SIZE, Optional.empty());
            default -> throw new ImageException(ImageException.Kind.UNSUPPORTED,
                    "cannot create images of format " + format + ": path=" + path);
        };
    }

    /** {@code qcow2} when the file starts with qcow2's magic, else {@code raw} (for backing files named without a format). */
    public static String probeFormat(Path path) throws ImageException {
        try (InputStream in = Files.newInputStream(path)) {
            byte[] head = in.readNBytes(4);
            return java.util.Arrays.equals(head, QCOW2_MAGIC) ? "qcow2" : "raw";
        } catch (IOException e) {
            throw new ImageException(ImageException.Kind.IO, "probing the format failed: path=" + path + ": " + e.getMessage(), e);
        }
    }
}
