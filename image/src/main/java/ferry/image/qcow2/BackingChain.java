package ferry.image.qcow2;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import ferry.image.raw.RawImage;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Opens the backing image named in a qcow2 header, read-only: a relative name is resolved against
 * the overlay's directory (as QEMU does), the format comes from the backing format extension or, when
 * the image has none, from probing for the qcow2 magic. Chains recurse through {@link Qcow2Image#open}.
 */
final class BackingChain {
    /** Deeper chains are refused: a loop of images naming each other would otherwise never end. */
    static final int MAX_DEPTH = 64;

    private BackingChain() {}

    static Path resolve(Path overlay, String name) {
        Path named = Path.of(name);
        if (named.isAbsolute()) {
            return named;
        }
        Path dir = overlay.toAbsolutePath().getParent();
        return dir == null ? named : dir.resolve(named);
    }

    static BlockImage open(Path overlay, String name, Optional<String> format, int depth) throws ImageException {
        if (name.startsWith("json:") || name.contains("://")) {
            throw new ImageException(Kind.UNSUPPORTED, "open backing failed: overlay=" + overlay + " backing=" + name
                    + ": protocol and json: backing names are not supported, only files");
        }
        if (depth > MAX_DEPTH) {
            throw new ImageException(Kind.INVALID_FORMAT, "open backing failed: overlay=" + overlay + " backing="
                    + name + ": chain deeper than " + MAX_DEPTH + " images (do the images name each other?)");
        }
        Path path = resolve(overlay, name);
        if (!Files.exists(path)) {
            throw new ImageException(Kind.IO, "open backing failed: overlay=" + overlay + " backing=" + name
                    + " path=" + path + ": no such file");
        }
        String fmt = format.isPresent() ? format.get() : probe(path);
        return switch (fmt) {
            case Backing.QCOW2 -> Qcow2Image.open(path, true, depth);
            case Backing.RAW -> RawImage.open(path, true);
            default -> throw new ImageException(Kind.UNSUPPORTED, "open backing failed: overlay=" + overlay
                    + " backing=" + name + " format=" + fmt + ": only raw and qcow2 backing files are supported");
        };
    }

    /** qcow2 when the file starts with the qcow2 magic, else raw. */
    private static String probe(Path path) throws ImageException {
        try (HostFile file = HostFile.open(path, true)) {
            ByteBuffer magic = ByteBuffer.allocate(4);
            file.read(0, magic);
            return magic.getInt(0) == Qcow2Header.MAGIC && file.length() >= 4 ? Backing.QCOW2 : Backing.RAW;
        }
    }
}
