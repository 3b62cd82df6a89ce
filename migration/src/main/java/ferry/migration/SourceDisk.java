package ferry.migration;

import ferry.migration.wire.Frame;
import java.util.Optional;

/**
 * One disk of the migrating VM, as the source announces it in HELLO: the drive id, the virtual size
 * in bytes, the image format as QEMU names it, and for incremental migration the identity of its base.
 */
public record SourceDisk(String id, long size, String format, Optional<Frame.BaseIdentity> base) {
}
