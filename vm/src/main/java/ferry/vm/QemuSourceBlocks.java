package ferry.vm;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.MigrationException;
import ferry.migration.Phase;
import ferry.migration.SourceBlocks;
import ferry.nbd.NbdExportImage;
import ferry.qmp.BlockExportInfo;
import ferry.qmp.BlockInfo;
import ferry.qmp.DriveRef;
import ferry.qmp.IoThrottle;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import ferry.qmp.TransactionAction;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The source QEMU's block layer, joined only while a migration runs (DESIGN.md "QEMU owns the
 * disks"): per drive a dirty bitmap of the granule size, one read-only NBD export of the drive's
 * node on QEMU's own NBD server (a private unix socket), and for each pass a short-lived export of
 * the bitmap that was just retired, read through {@code qemu:dirty-bitmap:NAME}.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>A pass swaps bitmaps in one {@code transaction} (add {@code ferry-N+1}, disable
 *       {@code ferry-N} on every drive): QEMU drains in-flight requests around it, so every guest
 *       write lands in exactly one of the two. The retired bitmap is then read and removed. An export
 *       lists its bitmaps when it is created, hence one export per pass.</li>
 *   <li>Guest writes are slowed with QEMU's own I/O throttling ({@code block_set_io_throttle},
 *       {@code bps_wr}); the drive's own limits, read from {@code query-block} at {@link #start},
 *       are sent back unchanged at {@link #stop}.</li>
 *   <li>Between two attempts of one migration ({@link #suspend}, {@link #reopen}) only the current
 *       bitmap stays: the guest's writes meanwhile are the next attempt's to send.</li>
 *   <li>Names start with {@code ferry-}: {@link #stop} removes exactly those, so that
 *       {@code query-block} and {@code query-block-exports} show nothing of Ferry's afterwards.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} only.
 */
final class QemuSourceBlocks implements SourceBlocks {
    private static final System.Logger LOG = System.getLogger(QemuSourceBlocks.class.getName());
    private static final String PREFIX = "ferry-";
    private static final long EXPORT_GONE_TIMEOUT_MS = 5_000;

    /** One migrated drive as {@code query-block} described it when the migration began. */
    record Drive(String id, String nodeName, String format, long size, DriveRef ref, IoThrottle ownThrottle) { }

    private final QmpClient qmp;
    private final List<Drive> drives;
    private final Path socket;
    private final List<NbdExportImage> readers = new ArrayList<>();
    private boolean serverStarted;
    private boolean throttled;
    private int generation;
    private int granuleSize;
    private boolean incremental;

    QemuSourceBlocks(QmpClient qmp, List<Drive> drives, Path socket) {
        this.qmp = qmp;
        this.drives = List.copyOf(drives);
        this.socket = socket;
    }

    /** The drives named {@code ids} ({@code -drive id=}), as QEMU reports them now. */
    static List<Drive> describe(QmpClient qmp, List<String> ids) throws QmpException, MigrationException {
        List<BlockInfo> blocks = qmp.execute(new QmpCommand.QueryBlock());
        List<Drive> drives = new ArrayList<>();
        for (String id : ids) {
            BlockInfo info = blocks.stream().filter(b -> driveName(b).equals(id)).findFirst()
                    .orElseThrow(() -> new MigrationException(Phase.HANDSHAKE, "QEMU has no drive " + id + " (query-block)"));
            drives.add(drive(info));
        }
        return drives;
    }

    /**
     * {@code ferry attach}: every drive with an inserted, writable medium, in {@code query-block}'s order.
     * Read-only media (a CD-ROM's ISO) and empty drives are not migrated: the destination must have its own.
     * A drive Ferry cannot migrate (a format other than raw or qcow2, an image that is not a local file)
     * is refused with a line that names it.
     */
    static List<Drive> discover(QmpClient qmp) throws QmpException, MigrationException {
        List<Drive> drives = new ArrayList<>();
        for (BlockInfo info : qmp.execute(new QmpCommand.QueryBlock())) {
            if (info.inserted().isEmpty() || info.inserted().get().ro()) {
                LOG.log(System.Logger.Level.INFO, "not migrated: drive " + driveName(info)
                        + (info.inserted().isEmpty() ? " (no medium)" : " (read-only)"));
                continue;
            }
            drives.add(drive(info));
        }
        if (drives.isEmpty()) {
            throw new MigrationException(Phase.HANDSHAKE, "QEMU has no drive with a writable medium to migrate (query-block)");
        }
        return drives;
    }

    private static Drive drive(BlockInfo info) throws MigrationException {
        String id = driveName(info);
        BlockInfo.Inserted inserted = info.inserted().orElseThrow(() -> new MigrationException(Phase.HANDSHAKE,
                "drive " + id + " has no medium"));
        String node = inserted.nodeName().orElseThrow(() -> new MigrationException(Phase.HANDSHAKE,
                "drive " + id + " has no node name in query-block"));
        checkMigratable(id, inserted);
        return new Drive(id, node, inserted.drv(), inserted.virtualSize(), info.driveRef(), inserted.throttle());
    }

    /** Ferry copies raw and qcow2 images that are local files; anything else is refused by name. */
    static void checkMigratable(String id, BlockInfo.Inserted inserted) throws MigrationException {
        if (!inserted.drv().equals("raw") && !inserted.drv().equals("qcow2")) {
            throw new MigrationException(Phase.HANDSHAKE, "drive " + id + " cannot be migrated: its format is "
                    + inserted.drv() + " (Ferry copies raw and qcow2 images)");
        }
        if (inserted.file().startsWith("json:") || !inserted.file().startsWith("/") && inserted.file().matches("^[a-z+]+:.*")) {
            throw new MigrationException(Phase.HANDSHAKE, "drive " + id + " cannot be migrated: its image " + inserted.file()
                    + " is not a local file");
        }
    }

    /**
     * The name a drive goes by in HELLO and on the destination: its {@code -drive id=} (QMP {@code device});
     * for a {@code -blockdev} + {@code -device} drive (libvirt's way), which has none, its device's id
     * ({@code /machine/peripheral/ID/...}), else the device's QOM path.
     */
    static String driveName(BlockInfo info) {
        if (!info.device().isEmpty()) {
            return info.device();
        }
        String qdev = info.qdev().orElse("");
        String peripheral = "/machine/peripheral/";
        if (qdev.startsWith(peripheral)) {
            String rest = qdev.substring(peripheral.length());
            int slash = rest.indexOf('/');
            return slash < 0 ? rest : rest.substring(0, slash);
        }
        return qdev;
    }

    @Override
    public List<BlockImage> start(int granuleSize, boolean incremental) throws MigrationException {
        this.granuleSize = granuleSize;
        this.incremental = incremental;
        try {
            qmp.execute(new QmpCommand.NbdServerStart(socket, java.util.OptionalLong.empty()));
            serverStarted = true;
            List<TransactionAction> adds = new ArrayList<>();
            for (Drive drive : drives) {
                adds.add(new QmpCommand.BlockDirtyBitmapAdd(drive.nodeName(), bitmap(0), granuleSize));
            }
            qmp.execute(new QmpCommand.Transaction(adds));      // tracking starts before the first read
            return openReaders();
        } catch (QmpException e) {
            throw new MigrationException(Phase.HANDSHAKE, "QEMU refused to set up dirty tracking and its NBD export: "
                    + e.getMessage() + (serverStarted ? "" : " (an NBD server of QEMU's own may already run: nbd-server-stop it first)"), e);
        } catch (ImageException e) {
            throw new MigrationException(Phase.HANDSHAKE, "reading QEMU's NBD export failed: " + e.getMessage(), e);
        }
    }

    /** One read-only export per drive on QEMU's NBD server, and Ferry's NBD client on each. */
    private List<BlockImage> openReaders() throws QmpException, ImageException {
        List<BlockImage> images = new ArrayList<>();
        for (int i = 0; i < drives.size(); i++) {
            Drive drive = drives.get(i);
            qmp.execute(new QmpCommand.BlockExportAdd(readExport(i), drive.nodeName(), readExport(i), false, List.of(),
                    incremental, Optional.empty()));
            NbdExportImage reader = NbdExportImage.open(socket, readExport(i), drive.format(), incremental);
            readers.add(reader);
            images.add(reader);
        }
        return images;
    }

    @Override
    public void suspend() throws MigrationException {
        List<String> failures = new ArrayList<>();
        closeReaders(failures);
        try {
            removeExportsAndServer();
        } catch (QmpException | MigrationException e) {
            failures.add(e.getMessage());
        }
        restoreThrottle(failures);
        if (!failures.isEmpty()) {
            throw new MigrationException(Phase.RETRY, String.join("; ", failures));
        }
        LOG.log(System.Logger.Level.INFO, "migration suspended: QEMU keeps tracking guest writes in " + bitmap(generation)
                + "; its NBD export is gone");
    }

    @Override
    public List<BlockImage> reopen() throws MigrationException {
        try {
            qmp.execute(new QmpCommand.NbdServerStart(socket, java.util.OptionalLong.empty()));
            serverStarted = true;
            return openReaders();
        } catch (QmpException e) {
            throw new MigrationException(Phase.HANDSHAKE, "QEMU refused to export its drives again: " + e.getMessage(), e);
        } catch (ImageException e) {
            throw new MigrationException(Phase.HANDSHAKE, "reading QEMU's NBD export failed: " + e.getMessage(), e);
        }
    }

    @Override
    public List<DirtySnapshot> takeDirty() throws MigrationException {
        String retired = bitmap(generation);
        String fresh = bitmap(generation + 1);
        try {
            List<TransactionAction> swap = new ArrayList<>();
            for (Drive drive : drives) {
                swap.add(new QmpCommand.BlockDirtyBitmapAdd(drive.nodeName(), fresh, granuleSize));
                swap.add(new QmpCommand.BlockDirtyBitmapDisable(drive.nodeName(), retired));
            }
            qmp.execute(new QmpCommand.Transaction(swap));
            generation++;
            List<DirtySnapshot> snapshots = new ArrayList<>();
            for (int i = 0; i < drives.size(); i++) {
                snapshots.add(read(i, retired));
            }
            return snapshots;
        } catch (QmpException e) {
            throw new MigrationException(Phase.ITERATE, "swapping QEMU's dirty bitmaps failed: " + e.getMessage(), e);
        } catch (ImageException e) {
            throw new MigrationException(Phase.ITERATE, "reading QEMU's dirty bitmap " + retired + " failed: " + e.getMessage(), e);
        }
    }

    /** Exports the retired bitmap, reads its dirty runs, then removes the export and the bitmap. */
    private DirtySnapshot read(int index, String retired) throws QmpException, ImageException, MigrationException {
        Drive drive = drives.get(index);
        String export = dirtyExport(index);
        qmp.execute(new QmpCommand.BlockExportAdd(export, drive.nodeName(), export, false, List.of(retired), false, Optional.empty()));
        DirtyBitmap dirty = new DirtyBitmap(drive.size(), granuleSize);
        try (NbdExportImage view = NbdExportImage.open(socket, export, drive.format(), false, List.of(retired))) {
            for (NbdExportImage.Range run : view.dirtyExtents(retired)) {
                dirty.markRange(run.offset(), run.length());
            }
        } finally {
            deleteExport(qmp, export);
        }
        qmp.execute(new QmpCommand.BlockDirtyBitmapRemove(drive.nodeName(), retired));
        return dirty.snapshotAndClear();
    }

    @Override
    public long dirtyBytes() throws MigrationException {
        try {
            String current = bitmap(generation);
            long bytes = 0;
            for (BlockInfo info : qmp.execute(new QmpCommand.QueryBlock())) {
                for (Drive drive : drives) {
                    if (info.inserted().isPresent() && info.inserted().get().nodeName().equals(Optional.of(drive.nodeName()))) {
                        bytes += info.inserted().get().dirtyBitmap(current).map(BlockInfo.DirtyBitmapInfo::dirtyBytes).orElse(0L);
                    }
                }
            }
            return bytes;
        } catch (QmpException e) {
            throw new MigrationException(Phase.ITERATE, "query-block for the dirty count failed: " + e.getMessage(), e);
        }
    }

    @Override
    public void throttleWrites(long bytesPerSec) throws MigrationException {
        try {
            for (Drive drive : drives) {
                IoThrottle limits = bytesPerSec > 0 ? drive.ownThrottle().withWriteLimit(bytesPerSec) : drive.ownThrottle();
                qmp.execute(new QmpCommand.BlockSetIoThrottle(drive.ref(), limits));
            }
            throttled = bytesPerSec > 0;
        } catch (QmpException e) {
            throw new MigrationException(Phase.ITERATE, "block_set_io_throttle failed: " + e.getMessage(), e);
        }
    }

    @Override
    public void stop() throws MigrationException {
        List<String> failures = new ArrayList<>();
        closeReaders(failures);
        try {
            removeExportsAndServer();
            for (BlockInfo info : qmp.execute(new QmpCommand.QueryBlock())) {
                for (Drive drive : drives) {
                    if (info.inserted().isEmpty() || !info.inserted().get().nodeName().equals(Optional.of(drive.nodeName()))) {
                        continue;
                    }
                    for (BlockInfo.DirtyBitmapInfo bitmap : info.inserted().get().dirtyBitmaps()) {
                        if (bitmap.name().filter(n -> n.startsWith(PREFIX)).isPresent()) {
                            qmp.execute(new QmpCommand.BlockDirtyBitmapRemove(drive.nodeName(), bitmap.name().get()));
                        }
                    }
                }
            }
        } catch (QmpException | MigrationException e) {
            failures.add(e.getMessage());
        }
        restoreThrottle(failures);
        if (!failures.isEmpty()) {
            throw new MigrationException(Phase.COMPLETE, String.join("; ", failures));
        }
    }

    private void closeReaders(List<String> failures) {
        for (NbdExportImage reader : readers) {
            try {
                reader.close();
            } catch (ImageException e) {
                failures.add("closing " + reader.describe() + ": " + e.getMessage());
            }
        }
        readers.clear();
    }

    private void removeExportsAndServer() throws QmpException, MigrationException {
        for (BlockExportInfo export : qmp.execute(new QmpCommand.QueryBlockExports())) {
            if (export.id().startsWith(PREFIX)) {
                deleteExport(qmp, export.id());
            }
        }
        if (serverStarted) {
            qmp.execute(new QmpCommand.NbdServerStop());
            serverStarted = false;
        }
    }

    private void restoreThrottle(List<String> failures) {
        if (throttled) {
            try {
                throttleWrites(0);
            } catch (MigrationException e) {
                failures.add("restoring the drives' own I/O limits: " + e.getMessage());
            }
        }
    }

    /**
     * What a Ferry that died in the middle of a migration left in QEMU's block layer: its {@code ferry-}
     * exports (and then the NBD server, which was its own), its {@code ferry-} bitmaps. Removed when
     * {@code ferry attach} takes the VM back, so that the next migration can start; returns what it removed.
     * A write throttle it may have left cannot be told from the user's own and stays.
     */
    static List<String> removeLeftovers(QmpClient qmp) throws QmpException, MigrationException {
        List<String> removed = new ArrayList<>();
        for (BlockExportInfo export : qmp.execute(new QmpCommand.QueryBlockExports())) {
            if (export.id().startsWith(PREFIX)) {
                deleteExport(qmp, export.id());
                removed.add("export " + export.id());
            }
        }
        if (!removed.isEmpty()) {
            qmp.execute(new QmpCommand.NbdServerStop());
            removed.add("its NBD server");
        }
        for (BlockInfo info : qmp.execute(new QmpCommand.QueryBlock())) {
            if (info.inserted().isEmpty() || info.inserted().get().nodeName().isEmpty()) {
                continue;
            }
            for (BlockInfo.DirtyBitmapInfo bitmap : info.inserted().get().dirtyBitmaps()) {
                if (bitmap.name().filter(n -> n.startsWith(PREFIX)).isPresent()) {
                    qmp.execute(new QmpCommand.BlockDirtyBitmapRemove(info.inserted().get().nodeName().get(), bitmap.name().get()));
                    removed.add("bitmap " + bitmap.name().get() + " of " + driveName(info));
                }
            }
        }
        return removed;
    }

    /** Deletes an export and waits until QEMU has really dropped it (the bitmap stays busy until then). */
    private static void deleteExport(QmpClient qmp, String id) throws QmpException, MigrationException {
        qmp.execute(new QmpCommand.BlockExportDel(id, Optional.of(QmpCommand.BlockExportDel.Mode.HARD)));
        long deadline = System.nanoTime() + EXPORT_GONE_TIMEOUT_MS * 1_000_000;
        while (qmp.execute(new QmpCommand.QueryBlockExports()).stream().anyMatch(e -> e.id().equals(id))) {
            if (System.nanoTime() > deadline) {
                throw new MigrationException(Phase.ITERATE, "QEMU did not remove its NBD export " + id + " within "
                        + EXPORT_GONE_TIMEOUT_MS + " ms of block-export-del");
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MigrationException(Phase.ITERATE, "interrupted while QEMU removed export " + id, e);
            }
        }
        LOG.log(System.Logger.Level.DEBUG, "export " + id + " removed");
    }

    private static String bitmap(int generation) {
        return PREFIX + generation;
    }

    private static String readExport(int index) {
        return PREFIX + "read-" + index;
    }

    private static String dirtyExport(int index) {
        return PREFIX + "dirty-" + index;
    }
}
