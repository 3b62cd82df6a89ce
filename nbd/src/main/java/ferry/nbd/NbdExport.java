package ferry.nbd;

import ferry.image.BlockImage;
import java.util.Objects;

/**
 * One export of an {@link NbdServer}. The image is shared by every connection to the export (hence
 * CAN_MULTI_CONN); the server never closes it, its owner does.
 */
public record NbdExport(String name, BlockImage image, boolean readOnly) {
    public NbdExport {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(image, "image");
        if (name.length() > NbdWire.MAX_STRING_LENGTH || name.indexOf('\0') >= 0) {
            throw new IllegalArgumentException("bad export name: name=" + name);
        }
        readOnly = readOnly || image.readOnly();
    }
}
