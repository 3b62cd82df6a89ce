package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import ferry.migration.MigrationException;
import ferry.qmp.BlockInfo;
import ferry.qmp.IoThrottle;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** How {@code ferry attach} names the drives it finds in {@code query-block}, and which it refuses (no QEMU needed). */
class QemuSourceBlocksTest {
    private static BlockInfo.Inserted inserted(String file, String drv) {
        return new BlockInfo.Inserted(Optional.of("n0"), file, drv, false, Optional.empty(), 0, 1 << 20, IoThrottle.NONE, List.of());
    }

    @Test
    void shouldNameADriveByItsIdElseByItsDevicesId() {
        assertEquals("disk0", QemuSourceBlocks.driveName(new BlockInfo("disk0",
                Optional.of("/machine/peripheral-anon/device[0]/virtio-backend"), false, false, Optional.empty())));
        assertEquals("virtio-disk0", QemuSourceBlocks.driveName(new BlockInfo("",
                Optional.of("/machine/peripheral/virtio-disk0/virtio-backend"), false, false, Optional.empty())),
                "libvirt's -blockdev + -device drive goes by its device's id");
        assertEquals("/machine/peripheral-anon/device[1]/virtio-backend", QemuSourceBlocks.driveName(new BlockInfo("",
                Optional.of("/machine/peripheral-anon/device[1]/virtio-backend"), false, false, Optional.empty())));
    }

    @Test
    void shouldRefuseWhatFerryCannotMigrateByName() throws Exception {
        QemuSourceBlocks.checkMigratable("disk0", inserted("/srv/vm1.qcow2", "qcow2"));
        QemuSourceBlocks.checkMigratable("disk0", inserted("vm1.raw", "raw"));
        assertEquals("drive cd0 cannot be migrated: its format is vmdk (Ferry copies raw and qcow2 images)",
                assertThrows(MigrationException.class, () -> QemuSourceBlocks.checkMigratable("cd0",
                        inserted("/srv/a.vmdk", "vmdk"))).getMessage());
        assertEquals("drive disk1 cannot be migrated: its image nbd://10.0.0.2/x is not a local file",
                assertThrows(MigrationException.class, () -> QemuSourceBlocks.checkMigratable("disk1",
                        inserted("nbd://10.0.0.2/x", "raw"))).getMessage());
        assertEquals("drive disk2 cannot be migrated: its image json:{\"driver\": \"raw\"} is not a local file",
                assertThrows(MigrationException.class, () -> QemuSourceBlocks.checkMigratable("disk2",
                        inserted("json:{\"driver\": \"raw\"}", "raw"))).getMessage());
    }
}
