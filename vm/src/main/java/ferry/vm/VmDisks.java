package ferry.vm;

import ferry.dirty.DirtyTrackingImage;
import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.nbd.NbdExport;
import ferry.nbd.NbdServer;
import ferry.qemu.QemuConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The VM's disks as Ferry serves them: each image wrapped in a {@link DirtyTrackingImage} (so the
 * migration sees every guest write) and exported by one NBD server on a private unix socket, one
 * export per disk named by the drive id. QEMU attaches them as NBD blockdevs.
 *
 * <p>Threads: the NBD server's threads call the images; {@link #close()} flushes and closes.
 */
public final class VmDisks implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VmDisks.class.getName());

    /** One served disk. */
    public record Disk(VmConfig.Drive drive, DirtyTrackingImage image) { }

    private final List<Disk> disks;
    private final NbdServer server;

    private VmDisks(List<Disk> disks, NbdServer server) {
        this.disks = List.copyOf(disks);
        this.server = server;
    }

    /** Serves already opened images (closed by {@link #close()}, also when this fails). */
    public static VmDisks serve(List<VmConfig.Drive> drives, List<BlockImage> images, Path socket) throws IOException {
        List<Disk> disks = new ArrayList<>();
        List<NbdExport> exports = new ArrayList<>();
        for (int i = 0; i < drives.size(); i++) {
            DirtyTrackingImage tracked = new DirtyTrackingImage(images.get(i));
            disks.add(new Disk(drives.get(i), tracked));
            exports.add(new NbdExport(drives.get(i).id(), tracked, false));
        }
        NbdServer server = NbdServer.unix(socket, exports);
        try {
            server.start();
        } catch (IOException e) {
            closeImages(images);
            throw new IOException("starting the disk server on " + socket + " failed: " + e.getMessage(), e);
        }
        return new VmDisks(disks, server);
    }

    public List<Disk> disks() {
        return disks;
    }

    public Path socket() {
        return server.socketPath();
    }

    /** QEMU's view: an NBD blockdev per disk. */
    public List<QemuConfig.Disk> qemuDisks() {
        List<QemuConfig.Disk> out = new ArrayList<>();
        for (Disk disk : disks) {
            out.add(new QemuConfig.Disk.Nbd(disk.drive().id(), socket(), disk.drive().id()));
        }
        return out;
    }

    /** Bytes allocated (DATA or ZERO extents in this layer) of one disk, for {@code info block}. */
    public static long allocatedBytes(BlockImage image) throws ImageException {
        long allocated = 0;
        long offset = 0;
        while (offset < image.size()) {
            List<Extent> extents = image.extents(offset, image.size() - offset);
            for (Extent extent : extents) {
                if (extent.type() == Extent.Type.DATA) {
                    allocated += extent.length();
                }
                offset = extent.end();
            }
        }
        return allocated;
    }

    public void flush() throws ImageException {
        for (Disk disk : disks) {
            disk.image().flush();
        }
    }

    private static void closeImages(List<BlockImage> images) {
        for (BlockImage image : images) {
            try {
                image.close();
            } catch (ImageException e) {
                LOG.log(System.Logger.Level.ERROR, "closing " + image.describe() + " failed: " + e.getMessage());
            }
        }
    }

    /** Stops serving, flushes and closes every image; reports the first failure with the rest suppressed. */
    @Override
    public void close() throws IOException {
        IOException failure = null;
        try {
            server.close();
        } catch (IOException e) {
            failure = e;
        }
        for (Disk disk : disks) {
            try {
                disk.image().flush();
                disk.image().close();
            } catch (ImageException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }
}
