package ferry.migration;

import ferry.dirty.DirtyTrackingImage;
import ferry.migration.wire.Frame;
import java.util.Optional;

/**
 * One disk of the migrating VM, as the source sees it: the image QEMU writes through (so that
 * Ferry sees every write), and for incremental migration the identity of its base image.
 */
public record SourceDisk(String id, DirtyTrackingImage image, Optional<Frame.BaseIdentity> base) {
}
