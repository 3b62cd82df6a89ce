package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ferry.migration.wire.VmFingerprint;
import ferry.migration.wire.VmFingerprint.Item;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class VmFingerprintTest {
    private static final VmFingerprint SOURCE = VmFingerprint.of(new Item("machine", "pc-i440fx-7.2"),
            new Item("memory", "256 MiB"), new Item("vcpus", "1"), new Item("pci 00:02.0", "1af4:1001 SCSI controller"));

    @Test
    void shouldFindNoDifferenceInTheSameConfiguration() {
        assertEquals(Optional.empty(), VmFingerprint.of(new Item("pci 00:02.0", "1af4:1001 SCSI controller"),
                new Item("vcpus", "1"), new Item("memory", "256 MiB"), new Item("machine", "pc-i440fx-7.2"))
                .differenceFrom(SOURCE), "the order of the items does not matter, their keys do");
    }

    @Test
    void shouldNameTheFirstDifferenceInOneLine() {
        VmFingerprint here = VmFingerprint.of(new Item("machine", "pc-i440fx-7.2"), new Item("memory", "128 MiB"),
                new Item("vcpus", "1"), new Item("pci 00:02.0", "1af4:1001 SCSI controller"));
        assertEquals(Optional.of("memory 128 MiB here, 256 MiB on the source"), here.differenceFrom(SOURCE));
    }

    @Test
    void shouldNameADeviceOnlyOneSideHasAndCountTheRest() {
        VmFingerprint here = VmFingerprint.of(new Item("machine", "pc-q35-7.2"), new Item("memory", "256 MiB"),
                new Item("vcpus", "2"), new Item("pci 00:02.0", "1af4:1001 SCSI controller"),
                new Item("pci 00:03.0", "1af4:1000 Ethernet controller"));
        assertEquals(Optional.of("machine pc-q35-7.2 here, pc-i440fx-7.2 on the source (and 2 more differences)"),
                here.differenceFrom(SOURCE));
        VmFingerprint extraDevice = VmFingerprint.of(new Item("machine", "pc-i440fx-7.2"), new Item("memory", "256 MiB"),
                new Item("vcpus", "1"), new Item("pci 00:02.0", "1af4:1001 SCSI controller"),
                new Item("pci 00:03.0", "1af4:1000 Ethernet controller"));
        assertEquals(Optional.of("pci 00:03.0 1af4:1000 Ethernet controller here, none on the source"),
                extraDevice.differenceFrom(SOURCE));
    }
}
