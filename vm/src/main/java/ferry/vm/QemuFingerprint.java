package ferry.vm;

import ferry.migration.wire.VmFingerprint;
import ferry.qmp.CpuInfoFast;
import ferry.qmp.MemorySizeSummary;
import ferry.qmp.PciDevice;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import ferry.qmp.JsonException;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads a VM's {@link VmFingerprint} from its QEMU (docs/migration-protocol.md, HELLO): the machine type
 * ({@code qom-get /machine type}, versioned even when {@code -machine pc} was given), memory
 * ({@code query-memory-size-summary}), the vCPUs ({@code query-cpus-fast} and the first one's QOM type)
 * and every PCI function in address order ({@code query-pci}). These are what QEMU's device state
 * depends on; the destination refuses a VM whose fingerprint differs before it creates anything.
 *
 * <p>Threads: the caller's (the migration's, or {@code ferry run}'s start-up for the destination's probe).
 */
final class QemuFingerprint {
    private static final long MIB = 1 << 20;

    private QemuFingerprint() {}

    static VmFingerprint of(QmpClient qmp) throws QmpException {
        List<VmFingerprint.Item> items = new ArrayList<>();
        try {
            String machine = qmp.execute(new QmpCommand.QomGet("/machine", "type")).asString();
            items.add(new VmFingerprint.Item("machine", strip(machine, "-machine")));
            MemorySizeSummary memory = qmp.execute(new QmpCommand.QueryMemorySizeSummary());
            items.add(new VmFingerprint.Item("memory", size(memory.baseMemoryBytes() + memory.pluggedMemoryBytes().orElse(0))));
            List<CpuInfoFast> cpus = qmp.execute(new QmpCommand.QueryCpusFast());
            items.add(new VmFingerprint.Item("vcpus", Integer.toString(cpus.size())));
            if (!cpus.isEmpty()) {
                CpuInfoFast first = cpus.get(0);
                String type = qmp.execute(new QmpCommand.QomGet(first.qomPath(), "type")).asString();
                items.add(new VmFingerprint.Item("cpu", strip(type, "-" + first.target() + "-cpu")));
            }
            for (PciDevice device : qmp.execute(new QmpCommand.QueryPci())) {
                items.add(new VmFingerprint.Item("pci " + device.address(), String.format("%04x:%04x", device.vendorId(),
                        device.deviceId()) + (device.classDesc().isEmpty() ? "" : " " + device.classDesc())
                        + (device.qdevId().isEmpty() ? "" : " id=" + device.qdevId())));
            }
        } catch (JsonException e) {
            throw new QmpException(QmpException.Kind.PROTOCOL, "qom-get", "qom-get type is not a string: " + e.getMessage(), e);
        }
        return new VmFingerprint(items);
    }

    private static String strip(String text, String suffix) {
        return text.endsWith(suffix) ? text.substring(0, text.length() - suffix.length()) : text;
    }

    private static String size(long bytes) {
        return bytes % MIB == 0 ? bytes / MIB + " MiB" : bytes + " bytes";
    }
}
