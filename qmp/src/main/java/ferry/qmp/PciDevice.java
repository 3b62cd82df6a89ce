package ferry.qmp;

import java.util.ArrayList;
import java.util.List;

/**
 * One PCI function as {@code query-pci} reports it (QAPI {@code PciDeviceInfo}), flattened: devices
 * behind a bridge follow the bridge, in QEMU's order. Members Ferry does not use (regions, irq) are not decoded.
 *
 * @param classDesc QEMU's name of the device class, e.g. {@code SCSI controller} (virtio-blk); empty if none
 * @param qdevId the device's {@code id=}, empty for an anonymous device
 */
public record PciDevice(long bus, long slot, long function, int vendorId, int deviceId, String classDesc, String qdevId) {

    /** {@code BB:SS.F}, the way lspci writes an address. */
    public String address() {
        return String.format("%02x:%02x.%x", bus, slot, function);
    }

    static List<PciDevice> decodeList(Json ret) throws JsonException {
        List<PciDevice> devices = new ArrayList<>();
        for (Json bus : ret.asArray()) {
            addDevices(bus.asObject().array("devices"), devices);
        }
        return List.copyOf(devices);
    }

    private static void addDevices(List<Json> list, List<PciDevice> out) throws JsonException {
        for (Json element : list) {
            Json.Obj d = element.asObject();
            Json.Obj id = d.object("id");
            Json.Obj classInfo = d.object("class_info");
            out.add(new PciDevice(d.number("bus"), d.number("slot"), d.number("function"), (int) id.number("vendor"),
                    (int) id.number("device"), classInfo.optionalString("desc").orElse(""), d.string("qdev_id")));
            if (d.has("pci_bridge")) {
                Json.Obj bridge = d.object("pci_bridge");
                if (bridge.has("devices")) {
                    addDevices(bridge.array("devices"), out);
                }
            }
        }
    }
}
