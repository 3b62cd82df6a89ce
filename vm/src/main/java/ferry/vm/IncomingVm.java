package ferry.vm;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.Images;
import ferry.migration.DestinationHost;
import ferry.migration.MigrationException;
import ferry.migration.PartialMigration;
import ferry.migration.Phase;
import ferry.migration.ResumeInfo;
import ferry.migration.wire.Frame;
import ferry.migration.wire.VmFingerprint;
import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The destination host of {@code ferry run ... -incoming}: checks the source's offer against this
 * host's {@code -drive}s, creates the images it needs (refusing to overwrite one that holds data
 * unless {@code --incoming-overwrite}), and starts QEMU with the user's {@code -drive}s and
 * {@code -incoming defer -S}, listening for its RAM stream on a private unix socket.
 *
 * <p>Ferry writes the arriving granules straight into the image files while QEMU waits: QEMU opens
 * the images of an incoming VM inactive (no write lock, nothing cached that it keeps: it re-reads
 * qcow2 metadata when it activates them at the end of the incoming migration), and Ferry flushes
 * and closes its own handles before QEMU gets the device state (DESIGN.md "Destination").
 *
 * <p>With {@code -b} a resume journal goes beside each image, and a failed migration leaves its images and
 * journals as the host's {@link PartialState}, which a HELLO that resumes the same migration opens again
 * (DESIGN.md "Resume"); a fresh HELLO discards it first.
 *
 * <p>Threads: {@link #prepare} runs on {@code migration-listen}.
 */
final class IncomingVm implements DestinationHost {
    private static final System.Logger LOG = System.getLogger(IncomingVm.class.getName());

    private final VmConfig config;
    private final RuntimeDir runtime;
    private final QemuLauncher launcher;
    private final VmFingerprint fingerprint;
    private final PartialState partial;

    /**
     * @param fingerprint this configuration's VM as this host's QEMU reports it ({@link QemuLauncher#probe()})
     * @param partial the partial state this host keeps of an interrupted incoming migration (the VM's one)
     */
    IncomingVm(VmConfig config, RuntimeDir runtime, QemuLauncher launcher, VmFingerprint fingerprint, PartialState partial) {
        this.config = config;
        this.runtime = runtime;
        this.launcher = launcher;
        this.fingerprint = fingerprint;
        this.partial = partial;
    }

    /** Refuses a source VM this host's QEMU could not run, before anything is created (one line naming the difference). */
    static void checkFingerprint(VmFingerprint here, Frame.Hello hello) throws MigrationException {
        java.util.Optional<String> difference = here.differenceFrom(hello.fingerprint());
        if (difference.isPresent()) {
            throw new MigrationException(Phase.HANDSHAKE, "configuration differs from the source: " + difference.get());
        }
    }

    /** Filled by {@link #prepare} for {@code -i}; handed to the prepared VM. */
    private final List<BaseCheck> baseChecks = new ArrayList<>();

    @Override
    public PreparedVm prepare(Frame.Hello hello) throws MigrationException {
        baseChecks.clear();
        checkFingerprint(fingerprint, hello);
        if (hello.disks().size() != config.drives().size()) {
            throw new MigrationException(Phase.HANDSHAKE, "the source VM has " + hello.disks().size()
                    + " disks, this destination was started with " + config.drives().size() + " -drive options");
        }
        for (int i = 0; i < hello.disks().size(); i++) {
            Frame.DiskOffer offer = hello.disks().get(i);
            VmConfig.Drive drive = config.drives().get(i);
            if (!offer.format().equals(drive.format())) {
                throw new MigrationException(Phase.HANDSHAKE, "disk " + drive.id() + ": source format " + offer.format()
                        + ", destination -drive says " + drive.format());
            }
        }
        if (!hello.copyDisks()) {
            return prepareShared(hello);
        }
        return hello.resume().isPresent() ? prepareResume(hello) : prepareFresh(hello);
    }

    @Override
    public java.util.Optional<ResumeInfo.PartialHeld> partialHeld() {
        return partial.held();
    }

    private List<Path> files() {
        return config.drives().stream().map(VmConfig.Drive::file).toList();
    }

    /**
     * Shared storage: the images exist and QEMU alone opens them. Refused while this host keeps the partial state of a
     * block migration: its images are these files, and a VM must not run on a partial copy.
     */
    private PreparedVm prepareShared(Frame.Hello hello) throws MigrationException {
        java.util.Optional<ResumeInfo.PartialHeld> held = partial.held();
        if (held.isPresent()) {
            throw new MigrationException(Phase.HANDSHAKE, "this destination keeps the partial state of block migration "
                    + held.get().migrationId() + " on its disks: resume it with migrate -b -r, or remove it there with"
                    + " migrate_incoming_discard");
        }
        try {
            for (int i = 0; i < hello.disks().size(); i++) {
                openShared(hello.disks().get(i), config.drives().get(i)).close();   // checked; QEMU alone opens it
            }
        } catch (IOException e) {
            throw new MigrationException(Phase.HANDSHAKE, "preparing the disks failed"
                    + (e instanceof ImageException i ? ": " + i.kind() : ""), e.getMessage(), e);
        }
        return new Prepared(List.of(), List.of(), List.of(), null);
    }

    /**
     * A fresh start with {@code -b}: a partial state kept here is discarded first, then the images are created (or
     * checked), then a resume journal beside each.
     */
    private PreparedVm prepareFresh(Frame.Hello hello) throws MigrationException {
        java.util.Set<Path> ferryWritten = partial.discardForFresh(hello.migrationId());
        List<Path> created = new ArrayList<>();
        List<BlockImage> images = new ArrayList<>();
        List<Boolean> fresh = new ArrayList<>();
        try {
            for (int i = 0; i < hello.disks().size(); i++) {
                openForCopy(hello.disks().get(i), config.drives().get(i), hello.incremental(), ferryWritten, images, fresh, created);
            }
            PartialMigration journal = partial.create(hello, files(), created);
            return new Prepared(images, fresh, List.copyOf(baseChecks), journal);
        } catch (MigrationException e) {
            undo(images, created);
            throw e;
        } catch (IOException e) {
            undo(images, created);
            throw new MigrationException(Phase.HANDSHAKE, "preparing the disks failed"
                    + (e instanceof ImageException i ? ": " + i.kind() : ""), e.getMessage(), e);
        }
    }

    /**
     * A resume: the partial state kept here must be of that migration ({@link PartialState#claim}); its images are
     * opened for writing as they are (for {@code -i} the overlay too: it is not created again, and its base is checked
     * again on {@code vm-start}). Nothing in them reads as fresh: what they hold is what the source must not resend.
     */
    private PreparedVm prepareResume(Frame.Hello hello) throws MigrationException {
        PartialMigration journal = partial.claim(hello, files());
        List<BlockImage> images = new ArrayList<>();
        List<Boolean> fresh = new ArrayList<>();
        try {
            for (int i = 0; i < hello.disks().size(); i++) {
                Frame.DiskOffer offer = hello.disks().get(i);
                VmConfig.Drive drive = config.drives().get(i);
                if (!Files.isRegularFile(drive.file(), java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                    throw refuse("resume refused: disk " + offer.id() + " is gone from this destination: migrate without -r to start"
                            + " over", drive.file() + " is not a regular file any more");
                }
                if (hello.incremental()) {
                    checkBase(offer, drive, true);
                }
                images.add(Images.open(drive.file(), drive.format(), false));
                fresh.add(false);
            }
            return new Prepared(images, fresh, List.copyOf(baseChecks), journal);
        } catch (MigrationException e) {
            closeAll(images);
            partial.unprepared();
            throw e;
        } catch (IOException e) {
            closeAll(images);
            partial.unprepared();
            throw new MigrationException(Phase.HANDSHAKE, "reopening the disks for the resume failed"
                    + (e instanceof ImageException i ? ": " + i.kind() : ""), e.getMessage(), e);
        }
    }

    /**
     * A refusal: {@code toSource} is all the source reads (its own disk ids and sizes, never a path, a size
     * or a name of this host's files); {@code here} goes to this host's log and {@code info migrate}.
     */
    private static MigrationException refuse(String toSource, String here) {
        return new MigrationException(Phase.HANDSHAKE, toSource, here, null);
    }

    /** @param ferryWritten images whose data a migration Ferry received wrote (a discarded partial state's): no user data */
    private void openForCopy(Frame.DiskOffer offer, VmConfig.Drive drive, boolean incremental, java.util.Set<Path> ferryWritten,
                             List<BlockImage> images, List<Boolean> fresh, List<Path> created) throws MigrationException, IOException {
        Path file = drive.file();
        if (incremental) {
            images.add(createOverlay(offer, drive));
            created.add(file);
            fresh.add(false);                       // the overlay reads its base: nothing may be skipped as zero
            return;
        }
        if (Files.exists(file, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            // Checked read-only: a qcow2 opened for writing clears the autoclear bits it does not know
            // (QEMU's bitmaps), and a refusal must leave the file as it was.
            boolean holdsData;
            long size;
            try (BlockImage existing = Images.open(file, drive.format(), true)) {
                holdsData = holdsData(existing);
                size = existing.size();
            }
            if (size != offer.size()) {
                throw refuse("disk " + drive.id() + ": the destination's image exists with a different size than the source's "
                        + offer.size() + " bytes", file + " has " + size + " bytes; remove it or fix the path");
            }
            if (holdsData && !config.incomingOverwrite() && !ferryWritten.contains(file)) {
                throw refuse("disk " + drive.id() + ": the destination's image exists and holds data; refusing to overwrite it",
                        file + ": remove it, or start the destination with --incoming-overwrite");
            }
            images.add(Images.open(file, drive.format(), false));   // every check passed: now for the receiver's writes
            fresh.add(!holdsData);
            return;
        }
        Files.createDirectories(file.toAbsolutePath().getParent());
        images.add(Images.create(file, drive.format(), offer.size()));
        created.add(file);
        fresh.add(true);
    }

    /**
     * {@code -i}: a new qcow2 overlay on this host's copy of the base, after checking that the copy
     * is the same (size and content digest) as the source's.
     */
    private BlockImage createOverlay(Frame.DiskOffer offer, VmConfig.Drive drive) throws MigrationException, IOException {
        BaseCheck base = checkBase(offer, drive, false);
        // Every check so far passed: only now may --incoming-overwrite remove the old overlay.
        Files.deleteIfExists(drive.file());
        return ferry.image.qcow2.Qcow2Image.create(drive.file(), offer.size(), Images.QCOW2_CLUSTER_SIZE,
                java.util.Optional.of(new ferry.image.qcow2.Backing(base.expected().fileName(), base.baseFormat())));
    }

    /**
     * {@code -i}: this host's copy of the offered base must be the source's: its size is checked now, its content
     * digest on {@code vm-start} (the {@link BaseCheck} this adds), while the bulk pass arrives. {@code resuming}: the
     * overlay is the one a resume goes on writing; otherwise an existing one is refused unless {@code --incoming-overwrite}.
     */
    private BaseCheck checkBase(Frame.DiskOffer offer, VmConfig.Drive drive, boolean resuming) throws MigrationException, IOException {
        Path file = drive.file();
        Frame.BaseIdentity base = offer.base().orElseThrow(() -> new MigrationException(Phase.HANDSHAKE,
                "disk " + drive.id() + ": the source asked for incremental migration but named no base image"));
        if (!drive.format().equals("qcow2")) {
            throw new MigrationException(Phase.HANDSHAKE, "disk " + drive.id() + ": incremental migration needs a qcow2"
                    + " overlay, but this destination's -drive says format=" + drive.format());
        }
        if (!resuming && Files.exists(file, java.nio.file.LinkOption.NOFOLLOW_LINKS) && !config.incomingOverwrite()) {
            throw refuse("disk " + drive.id() + ": the destination's overlay exists; refusing to overwrite it",
                    file + ": remove it, or start the destination with --incoming-overwrite");
        }
        Path basePath = knownBase(drive, base.fileName());
        String baseFormat = Images.probeFormat(basePath);
        long ourSize;
        try (BlockImage local = Images.open(basePath, baseFormat, true)) {
            ourSize = local.size();
        }
        if (ourSize != base.size()) {
            throw refuse(differs(drive, "size"), basePath + " has " + ourSize + " bytes, the source's " + base.size());
        }
        // The content digest reads the whole base: it runs while the bulk pass arrives (BaseCheck),
        // not here, where a large base would outlast the source's wait for WELCOME.
        BaseCheck check = new BaseCheck(drive, basePath, baseFormat, base);
        baseChecks.add(check);
        return check;
    }

    private static String differs(VmConfig.Drive drive, String how) {
        return "disk " + drive.id() + ": the destination's base image differs from the source's (" + how
                + "): refusing incremental migration onto it";
    }

    /**
     * The base a {@code -i} overlay of {@code drive} may sit on, for the base name the source gave. The
     * name is only compared, never followed: it must be a plain file name (no '/', not '.' or '..', no
     * control characters), and the file it names in the drive's directory must be this host's own base:
     * the backing file the existing overlay names when there is one, else a regular file (not a FIFO or
     * device, which could block or read what is no image). A name that fails any of this is refused
     * with one line that names nothing of this host.
     */
    static Path knownBase(VmConfig.Drive drive, String offeredName) throws MigrationException {
        boolean plain = !offeredName.isEmpty() && !offeredName.equals(".") && !offeredName.equals("..")
                && offeredName.chars().noneMatch(c -> c == '/' || c == '\\' || c < 0x20 || c == 0x7f);
        if (!plain) {
            throw refuse("disk " + drive.id() + ": the source's base name is not a plain file name: refusing incremental migration",
                    "the source named its base '" + offeredName.replaceAll("\\p{Cntrl}", "?") + "'");
        }
        Path dir = drive.file().toAbsolutePath().getParent();
        Path basePath = dir.resolve(offeredName);
        java.util.Optional<String> ownBacking = existingBacking(drive.file());
        if (ownBacking.isPresent() && !dir.resolve(ownBacking.get()).normalize().equals(basePath)) {
            throw refuse("disk " + drive.id() + ": the source's base is not the base of the destination's overlay: refusing"
                    + " incremental migration", "the overlay " + drive.file() + " sits on " + ownBacking.get()
                    + ", the source named " + offeredName);
        }
        if (!Files.isRegularFile(basePath)) {
            throw refuse("disk " + drive.id() + ": incremental migration needs the source's base image on the destination too;"
                    + " it is not there", basePath + (Files.exists(basePath, java.nio.file.LinkOption.NOFOLLOW_LINKS)
                    ? " is not a regular file" : " was not found") + "; copy the base here first");
        }
        return basePath;
    }

    /** The backing file an existing qcow2 overlay names (read from its header, read-only), if any. */
    private static java.util.Optional<String> existingBacking(Path overlay) {
        if (!Files.isRegularFile(overlay, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return java.util.Optional.empty();
        }
        try (java.nio.channels.FileChannel in = java.nio.channels.FileChannel.open(overlay, java.nio.file.StandardOpenOption.READ,
                java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            java.nio.ByteBuffer first = java.nio.ByteBuffer.allocate((int) Math.min(in.size(), 1 << ferry.image.qcow2.Qcow2Header.MAX_CLUSTER_BITS));
            while (first.hasRemaining() && in.read(first, first.position()) > 0) {
                // the buffer's position is also the file offset of the next read
            }
            return ferry.image.qcow2.Qcow2Header.parse(first.flip(), overlay.toString()).backingFile();
        } catch (IOException e) {
            return java.util.Optional.empty();     // not a qcow2 we read: --incoming-overwrite replaces it
        }
    }

    /** A base whose content digest must match the source's before the disks may be verified. */
    private record BaseCheck(VmConfig.Drive drive, Path basePath, String baseFormat, Frame.BaseIdentity expected) {
        /** True when this host's base is the source's; false when its content differs. Throws when it cannot be read. */
        boolean matches(java.util.function.BooleanSupplier stop) throws MigrationException {
            long startNs = System.nanoTime();
            Frame.BaseIdentity ours;
            try (BlockImage local = Images.open(basePath, baseFormat, true)) {
                ours = ferry.migration.BaseIdentities.of(local, expected.fileName(), stop);
            } catch (IOException e) {
                throw new MigrationException(Phase.BULK_COPY, "reading the destination's base image failed", basePath + ": "
                        + e.getMessage(), e);
            }
            if (!java.util.Arrays.equals(ours.sha256(), expected.sha256())) {
                return false;
            }
            LOG.log(System.Logger.Level.INFO, "base " + basePath + " matches the source's (" + expected.size() + " bytes hashed in "
                    + (System.nanoTime() - startNs) / 1_000_000 + " ms)");
            return true;
        }
    }

    private static BlockImage openShared(Frame.DiskOffer offer, VmConfig.Drive drive) throws MigrationException, IOException {
        if (!Files.exists(drive.file())) {
            throw refuse("disk " + drive.id() + ": migrate without -b needs shared storage, but the disk's image does not exist"
                    + " on the destination (use migrate -b to copy the disks)", drive.file() + " does not exist");
        }
        // Read-only: the source's QEMU owns the shared image now. A writable open would write to it
        // (a qcow2 writer clears the autoclear features it does not know, e.g. QEMU's bitmaps bit).
        BlockImage image = Images.open(drive.file(), drive.format(), true);
        if (image.size() != offer.size()) {
            image.close();
            throw refuse("disk " + drive.id() + ": the shared image has another size here than the source's " + offer.size()
                    + " bytes: not the same disk", drive.file() + " has " + image.size() + " bytes");
        }
        return image;
    }

    static boolean holdsData(BlockImage image) throws ImageException {
        long offset = 0;
        while (offset < image.size()) {
            for (Extent extent : image.extents(offset, image.size() - offset)) {
                if (extent.type() == Extent.Type.DATA) {
                    return true;
                }
                offset = extent.end();
            }
        }
        return false;
    }

    static void closeAll(List<BlockImage> images) {
        for (BlockImage image : images) {
            try {
                image.close();
            } catch (ImageException e) {
                LOG.log(System.Logger.Level.ERROR, "closing " + image.describe() + " failed: " + e.getMessage());
            }
        }
    }


    private static void undo(List<BlockImage> images, List<Path> created) {
        closeAll(images);
        for (Path file : created) {
            try {
                Files.deleteIfExists(file);
            } catch (IOException e) {
                LOG.log(System.Logger.Level.ERROR, "could not remove " + file + " after a failed migration: " + e.getMessage());
            }
        }
    }

    /** A VM being received: images open for Ferry's writes, QEMU waiting for RAM. */
    final class Prepared extends ReceivingVm {
        private volatile QemuProcess qemu;

        private final List<BaseCheck> baseChecks;
        private volatile boolean stopping;
        /** A base here is not the source's: an overlay on it is worth nothing to a resume. */
        private volatile boolean baseDiffers;

        @Override
        public void stopStarting() {
            stopping = true;
        }

        Prepared(List<BlockImage> images, List<Boolean> fresh, List<BaseCheck> baseChecks, PartialMigration journal) {
            super(new ReceivedImages(images, fresh, journal, partial), runtime.resolve("ram-in.sock"));
            this.baseChecks = baseChecks;
        }

        @Override
        public void startVm() throws MigrationException {
            try {
                qemu = launcher.start(true);
                qemu.addListener(ramEvents);
                qemu.qmp().execute(new QmpCommand.MigrateSetCapabilities(Map.of("events", true)));
                qemu.qmp().execute(new QmpCommand.MigrateIncoming("unix:" + ramSocket()));
            } catch (QemuException | QmpException e) {
                throw new MigrationException(Phase.HANDSHAKE, "starting the destination QEMU failed (its log says why)", e.getMessage(), e);
            }
            for (BaseCheck check : baseChecks) {
                if (!check.matches(() -> stopping)) {     // on vm-start, while the bulk pass arrives
                    baseDiffers = true;
                    throw new MigrationException(Phase.BULK_COPY, differs(check.drive(), "same size, different content"),
                            check.basePath().toString(), null);
                }
            }
        }

        QemuProcess qemu() {
            return qemu;
        }

        @Override
        protected void cont() throws QmpException {
            qemu.qmp().execute(new QmpCommand.Cont());
        }

        @Override
        public void abort(String reason, boolean keepPartial) {
            LOG.log(System.Logger.Level.WARNING, "dropping the incoming VM: " + reason);
            QemuProcess q = qemu;
            if (q != null) {
                try {
                    q.close();
                } catch (QemuException e) {
                    LOG.log(System.Logger.Level.ERROR, "stopping the destination QEMU failed: " + e.getMessage());
                }
            }
            received.drop();
            received.release(keepPartial && !baseDiffers);   // kept for a resume, or removed with the images created for it
        }
    }
}
