package ferry.qmp;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * One element of the {@code query-block} reply (QAPI {@code BlockInfo}, qapi/block-core.json, QEMU 7.2):
 * a BlockBackend, i.e. a drive as a device sees it. Members Ferry does not use (io-status, tray_open,
 * cache, detect_zeroes, the image's format-specific data, ...) are not decoded.
 *
 * @param device the BlockBackend's name: the {@code -drive id}; empty for a {@code -blockdev} + {@code -device}
 * @param qdev the device's id, or its QOM path when it has none
 *     (e.g. {@code /machine/peripheral-anon/device[0]/virtio-backend}); {@code block_set_io_throttle} takes either
 * @param inserted the medium; empty for an empty removable drive
 */
public record BlockInfo(String device, Optional<String> qdev, boolean removable, boolean locked,
                        Optional<Inserted> inserted) {

    public BlockInfo {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(qdev, "qdev");
        Objects.requireNonNull(inserted, "inserted");
    }

    /**
     * How {@code block_set_io_throttle} finds this drive: by its device id (or QOM path) when it has a device,
     * otherwise by the BlockBackend's name (7.2's schema marks {@code device} there deprecated; it still works).
     */
    public DriveRef driveRef() {
        return qdev.<DriveRef>map(DriveRef.Qdev::new).orElseGet(() -> new DriveRef.Device(device));
    }

    /**
     * The medium (QAPI {@code BlockDeviceInfo}).
     *
     * @param nodeName the top node's name (auto-generated as {@code #blockNNN} when not given), which
     *     bitmaps and exports address; optional in the schema, always present in 7.2
     * @param file the image's file name
     * @param drv the top node's driver, e.g. {@code qcow2}, {@code raw}
     * @param virtualSize the image's size as the guest sees it, in bytes ({@code image.virtual-size})
     * @param dirtyBitmaps the node's dirty bitmaps; 7.2 reports them here only (the deprecated top-level
     *     {@code BlockInfo.dirty-bitmaps} is gone from its schema), older QEMUs also at the top
     */
    public record Inserted(Optional<String> nodeName, String file, String drv, boolean ro, Optional<String> backingFile,
                           long backingFileDepth, long virtualSize, IoThrottle throttle,
                           List<DirtyBitmapInfo> dirtyBitmaps) {
        public Inserted {
            Objects.requireNonNull(nodeName, "nodeName");
            Objects.requireNonNull(file, "file");
            Objects.requireNonNull(drv, "drv");
            Objects.requireNonNull(backingFile, "backingFile");
            Objects.requireNonNull(throttle, "throttle");
            dirtyBitmaps = List.copyOf(dirtyBitmaps);
        }

        /** The bitmap named {@code name}, if the node has one. */
        public Optional<DirtyBitmapInfo> dirtyBitmap(String name) {
            return dirtyBitmaps.stream().filter(b -> b.name().equals(Optional.of(name))).findFirst();
        }

        static Inserted decode(Json.Obj inserted, Optional<Json> topLevelBitmaps) throws JsonException {
            Optional<Json> bitmaps = inserted.member("dirty-bitmaps").or(() -> topLevelBitmaps);
            List<DirtyBitmapInfo> decoded = new ArrayList<>();
            if (bitmaps.isPresent()) {
                for (Json b : bitmaps.get().asArray()) {
                    decoded.add(DirtyBitmapInfo.decode(b.asObject()));
                }
            }
            return new Inserted(inserted.optionalString("node-name"), inserted.string("file"), inserted.string("drv"),
                    inserted.bool("ro"), inserted.optionalString("backing_file"), inserted.number("backing_file_depth"),
                    inserted.object("image").number("virtual-size"), IoThrottle.decode(inserted), decoded);
        }
    }

    /**
     * A dirty bitmap (QAPI {@code BlockDirtyInfo}).
     *
     * @param name empty for an anonymous bitmap (one a block job made)
     * @param dirtyBytes bytes marked dirty (QAPI {@code count}): a multiple of the granularity, but the
     *     last granule may be cut short by the end of the image
     * @param granularity bytes per bit
     * @param recording whether writes mark it (false once disabled)
     * @param busy whether an operation (e.g. an NBD export) holds it: it cannot then be removed or changed
     * @param inconsistent whether it was found not saved cleanly; absent in the reply means false
     */
    public record DirtyBitmapInfo(Optional<String> name, long dirtyBytes, long granularity, boolean recording,
                                  boolean busy, boolean persistent, boolean inconsistent) {
        public DirtyBitmapInfo {
            Objects.requireNonNull(name, "name");
        }

        static DirtyBitmapInfo decode(Json.Obj b) throws JsonException {
            return new DirtyBitmapInfo(b.optionalString("name"), b.number("count"), b.number("granularity"),
                    b.bool("recording"), b.bool("busy"), b.bool("persistent"),
                    b.has("inconsistent") && b.bool("inconsistent"));
        }
    }

    static BlockInfo decode(Json.Obj info) throws JsonException {
        Optional<Inserted> inserted = info.has("inserted")
                ? Optional.of(Inserted.decode(info.object("inserted"), info.member("dirty-bitmaps")))
                : Optional.empty();
        return new BlockInfo(info.string("device"), info.optionalString("qdev"), info.bool("removable"),
                info.bool("locked"), inserted);
    }

    static List<BlockInfo> decodeList(Json ret) throws JsonException {
        List<BlockInfo> list = new ArrayList<>();
        for (Json element : ret.asArray()) {
            list.add(decode(element.asObject()));
        }
        return List.copyOf(list);
    }
}
