package ferry.migration;

import ferry.migration.wire.Frame;
import java.util.Optional;

/**
 * One disk of the migrating VM, as the source announces it in HELLO: the drive id, the virtual size
 * in bytes, the image format as QEMU names it, and for incremental migration its base.
 */
public record SourceDisk(String id, long size, String format, Optional<Base> base) {

    /**
     * The base image under an incremental disk. Its identity reads the whole base, so it is computed
     * on {@code migration-send} during the handshake (with progress in {@code info migrate}'s phase),
     * never on the monitor's thread.
     */
    @FunctionalInterface
    public interface Base {
        Frame.BaseIdentity identity() throws MigrationException;
    }
}
