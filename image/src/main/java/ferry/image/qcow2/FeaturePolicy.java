package ferry.image.qcow2;

import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.file.Path;

/**
 * What Ferry refuses to open, or to open for writing, and why: everything it does not implement is
 * refused with a message naming the feature, never read or written half-understood. The table is in
 * docs/qcow2.md.
 */
final class FeaturePolicy {
    private FeaturePolicy() {}

    static void check(Qcow2Header h, Path path, boolean readOnly) throws ImageException {
        String where = "open qcow2 failed: path=" + path + ": ";
        long unknown = h.incompatibleFeatures() & ~Qcow2Header.INCOMPAT_KNOWN;
        if (unknown != 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "unknown incompatible features "
                    + h.featureNames().describe(Qcow2Header.FeatureNames.TYPE_INCOMPATIBLE, unknown));
        }
        if (h.cryptMethod() != 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "encrypted image (crypt_method=" + h.cryptMethod()
                    + ") is not supported");
        }
        if ((h.incompatibleFeatures() & Qcow2Header.INCOMPAT_DATA_FILE) != 0 || h.hasExternalDataFileExtension()) {
            throw new ImageException(Kind.UNSUPPORTED, where + "external data files are not supported");
        }
        if ((h.incompatibleFeatures() & Qcow2Header.INCOMPAT_EXTL2) != 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "extended L2 entries (subclusters) are not supported");
        }
        if ((h.incompatibleFeatures() & Qcow2Header.INCOMPAT_COMPRESSION) != 0 || h.compressionType() != 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "compression_type=" + h.compressionType()
                    + " is not supported, only zlib (0)");
        }
        if (readOnly) {
            return; // L1/L2 tables are authoritative for reads even when refcounts are stale or shared
        }
        if ((h.incompatibleFeatures() & Qcow2Header.INCOMPAT_CORRUPT) != 0) {
            throw new ImageException(Kind.CORRUPT, where + "image is marked corrupt and must not be written;"
                    + " open it read-only, or repair it with `qemu-img check -r all " + path + "`");
        }
        if ((h.incompatibleFeatures() & Qcow2Header.INCOMPAT_DIRTY) != 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "image is marked dirty (lazy refcounts were in use"
                    + " and its refcounts may be stale); repair it with `qemu-img check -r all " + path
                    + "`, or open it read-only");
        }
        if (h.nbSnapshots() > 0) {
            throw new ImageException(Kind.UNSUPPORTED, where + "image has " + h.nbSnapshots()
                    + " internal snapshots; Ferry opens such images read-only only");
        }
        if (h.refcountOrder() != 4) {
            throw new ImageException(Kind.UNSUPPORTED, where + "refcount_bits=" + h.refcountBits()
                    + " cannot be written, only 16 (the default); open it read-only or convert it with"
                    + " `qemu-img amend -o refcount_bits=16 " + path + "`");
        }
    }
}
