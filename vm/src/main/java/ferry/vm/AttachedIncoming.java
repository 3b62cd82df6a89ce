package ferry.vm;

import ferry.image.BlockImage;
import ferry.image.Images;
import ferry.migration.DestinationHost;
import ferry.migration.MigrationException;
import ferry.migration.PartialMigration;
import ferry.migration.Phase;
import ferry.migration.ResumeInfo;
import ferry.migration.wire.Frame;
import ferry.qmp.BlockInfo;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import ferry.qmp.RunState;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The destination of a migration into a QEMU that Ferry did not start ({@code ferry attach -incoming}):
 * QEMU was started by hand with the VM's configuration and {@code -incoming defer}, so it has already
 * opened its drives, inactive. The images must exist with the source's sizes (Ferry cannot create what
 * QEMU already holds open); Ferry compares the VM's fingerprint, finds each offered disk among QEMU's
 * drives by name ({@link QemuSourceBlocks#driveName}), writes the granules straight into the image files
 * while they are inactive, as {@link IncomingVm} does, and gives QEMU the RAM stream with
 * {@code migrate-incoming}. It never stops QEMU and never deletes an image: after a failed attempt, the
 * images it wrote may be written again by the next attempt of this {@code ferry attach}. With {@code -b}
 * the resume journals beside the images and the partial state they make are {@link PartialState}'s, as for
 * {@link IncomingVm}; removing that state removes only the journals here.
 *
 * <p>Threads: {@link #prepare} on {@code migration-listen}, {@code startVm} on {@code vm-start}; QEMU's events
 * on {@code qmp-reader}.
 */
final class AttachedIncoming implements DestinationHost {
    private static final System.Logger LOG = System.getLogger(AttachedIncoming.class.getName());

    private final QmpClient qmp;
    private final RuntimeDir runtime;
    private final boolean overwrite;
    private final PartialState partial;
    /** Images an earlier attempt of this attachment wrote: their data is Ferry's, not the user's. */
    private final Set<Path> writtenByUs = new HashSet<>();
    /** QEMU listens for the RAM stream once {@code migrate-incoming} was given; QEMU takes it only once. */
    private boolean incomingStarted;

    /** @param partial the partial state this host keeps of an interrupted incoming migration (the VM's one) */
    AttachedIncoming(QmpClient qmp, RuntimeDir runtime, boolean overwrite, PartialState partial) {
        this.qmp = qmp;
        this.runtime = runtime;
        this.overwrite = overwrite;
        this.partial = partial;
    }

    @Override
    public PreparedVm prepare(Frame.Hello hello) throws MigrationException {
        List<Path> paths = new ArrayList<>();
        List<String> formats = new ArrayList<>();
        try {
            RunState state = qmp.execute(new QmpCommand.QueryStatus()).status();
            if (state != RunState.INMIGRATE) {
                throw new MigrationException(Phase.HANDSHAKE, "the QEMU Ferry attached to here does not wait for a migration"
                        + " (status " + state.qapiName() + "): start it with -incoming defer");
            }
            IncomingVm.checkFingerprint(QemuFingerprint.of(qmp), hello);
            List<BlockInfo> blocks = qmp.execute(new QmpCommand.QueryBlock());
            for (Frame.DiskOffer offer : hello.disks()) {
                BlockInfo.Inserted inserted = drive(blocks, offer);
                paths.add(Path.of(inserted.file()));
                formats.add(inserted.drv());
            }
        } catch (QmpException e) {
            throw new MigrationException(Phase.HANDSHAKE, "asking the destination QEMU failed (its log says why)", e.getMessage(), e);
        }
        if (!hello.copyDisks()) {
            if (partial.held().isPresent()) {
                throw new MigrationException(Phase.HANDSHAKE, "this destination keeps the partial state of block migration "
                        + partial.held().get().migrationId() + " on its disks: resume it with migrate -b -r, or remove it there"
                        + " with migrate_incoming_discard");
            }
            return new Prepared(List.of(), List.of(), List.of(), null);   // shared storage: QEMU alone opens the images
        }
        return hello.resume().isPresent() ? prepareResume(hello, paths, formats) : prepareFresh(hello, paths, formats);
    }

    @Override
    public Optional<ResumeInfo.PartialHeld> partialHeld() {
        return partial.held();
    }

    /**
     * A fresh start: a partial state kept here is discarded first; an image that holds data is written over only when
     * Ferry wrote that data (an earlier attempt, a discarded partial state) or with {@code --incoming-overwrite}.
     */
    private PreparedVm prepareFresh(Frame.Hello hello, List<Path> paths, List<String> formats) throws MigrationException {
        Set<Path> discarded = partial.discardForFresh(hello.migrationId());
        List<BlockImage> images = new ArrayList<>();
        List<Boolean> fresh = new ArrayList<>();
        try {
            for (int i = 0; i < paths.size(); i++) {
                Path file = paths.get(i);
                boolean holdsData;
                try (BlockImage check = Images.open(file, formats.get(i), true)) {   // read-only: a refusal changes nothing
                    holdsData = IncomingVm.holdsData(check);
                }
                boolean ours;
                synchronized (this) {
                    ours = writtenByUs.contains(file) || discarded.contains(file);
                }
                if (holdsData && !overwrite && !ours) {
                    throw new MigrationException(Phase.HANDSHAKE, "disk " + hello.disks().get(i).id() + ": the destination's image"
                            + " holds data; refusing to overwrite it", file + ": give ferry attach --incoming-overwrite, or an empty image",
                            null);
                }
                images.add(Images.open(file, formats.get(i), false));
                fresh.add(!holdsData);
            }
            return new Prepared(images, fresh, paths, partial.create(hello, paths, List.of()));   // Ferry created none of them
        } catch (IOException e) {
            IncomingVm.closeAll(images);
            throw new MigrationException(Phase.HANDSHAKE, "preparing the disks failed", e.getMessage(), e);
        } catch (MigrationException e) {
            IncomingVm.closeAll(images);
            throw e;
        }
    }

    /** A resume: the partial state kept here (or found beside QEMU's images) must be of that migration. */
    private PreparedVm prepareResume(Frame.Hello hello, List<Path> paths, List<String> formats) throws MigrationException {
        PartialMigration journal = partial.claim(hello, paths);
        List<BlockImage> images = new ArrayList<>();
        try {
            for (int i = 0; i < paths.size(); i++) {
                images.add(Images.open(paths.get(i), formats.get(i), false));
            }
        } catch (IOException e) {
            IncomingVm.closeAll(images);
            partial.unprepared();
            throw new MigrationException(Phase.HANDSHAKE, "reopening the disks for the resume failed", e.getMessage(), e);
        }
        return new Prepared(images, java.util.Collections.nCopies(images.size(), false), paths, journal);
    }

    /** The drive QEMU has for the offered disk, checked against the offer. */
    private static BlockInfo.Inserted drive(List<BlockInfo> blocks, Frame.DiskOffer offer) throws MigrationException {
        BlockInfo info = blocks.stream().filter(b -> QemuSourceBlocks.driveName(b).equals(offer.id())).findFirst()
                .orElseThrow(() -> new MigrationException(Phase.HANDSHAKE, "disk " + offer.id() + ": the QEMU here has no drive "
                        + offer.id() + " (query-block); give it the source's drive ids"));
        BlockInfo.Inserted inserted = info.inserted().orElseThrow(() -> new MigrationException(Phase.HANDSHAKE,
                "disk " + offer.id() + ": the drive here has no medium"));
        if (inserted.ro()) {
            throw new MigrationException(Phase.HANDSHAKE, "disk " + offer.id() + ": the drive here is read-only");
        }
        QemuSourceBlocks.checkMigratable(offer.id(), inserted);
        if (!inserted.drv().equals(offer.format())) {
            throw new MigrationException(Phase.HANDSHAKE, "disk " + offer.id() + ": source format " + offer.format()
                    + ", the drive here is " + inserted.drv());
        }
        if (inserted.virtualSize() != offer.size()) {
            throw new MigrationException(Phase.HANDSHAKE, "disk " + offer.id() + ": the drive here has another size than the source's "
                    + offer.size() + " bytes", inserted.file() + " has " + inserted.virtualSize() + " bytes; create it with qemu-img create -f "
                    + offer.format() + " " + inserted.file() + " " + offer.size(), null);
        }
        if (!Files.isRegularFile(Path.of(inserted.file()))) {
            throw new MigrationException(Phase.HANDSHAKE, "disk " + offer.id() + ": the drive here is not a file", inserted.file(), null);
        }
        return inserted;
    }

    /** A migration arriving in the attached QEMU. */
    private final class Prepared extends ReceivingVm {
        private final List<Path> paths;

        Prepared(List<BlockImage> images, List<Boolean> fresh, List<Path> paths, PartialMigration journal) {
            super(new ReceivedImages(images, fresh, journal, partial), runtime.resolve("ram-in.sock"));
            this.paths = List.copyOf(paths);
        }

        @Override
        public void stopStarting() {
            // startVm only connects to a QEMU that already runs: nothing long to stop
        }

        @Override
        public void startVm() throws MigrationException {
            qmp.addListener(ramEvents);
            synchronized (AttachedIncoming.this) {
                if (incomingStarted) {
                    return;                             // QEMU still listens from the last attempt
                }
                try {
                    qmp.execute(new QmpCommand.MigrateSetCapabilities(Map.of("events", true)));
                    qmp.execute(new QmpCommand.MigrateIncoming("unix:" + ramSocket()));
                    incomingStarted = true;
                } catch (QmpException e) {
                    throw new MigrationException(Phase.HANDSHAKE, "the destination QEMU refused migrate-incoming (its log says why)",
                            e.getMessage(), e);
                }
            }
        }

        @Override
        protected void cont() throws QmpException {
            qmp.removeListener(ramEvents);
            qmp.execute(new QmpCommand.Cont());
        }

        /**
         * Lets go of the images; QEMU and the images stay (Ferry did not start or create them). With {@code keepPartial}
         * their journals stay too, for a resume; without, the journals go.
         */
        @Override
        public void abort(String reason, boolean keepPartial) {
            LOG.log(System.Logger.Level.WARNING, "incoming migration into the attached QEMU failed: " + reason
                    + (Optional.ofNullable(qmp.closed().getNow(null)).isPresent() ? " (QEMU has exited)" : ""));
            qmp.removeListener(ramEvents);
            received.drop();
            received.release(keepPartial);
            synchronized (AttachedIncoming.this) {
                writtenByUs.addAll(paths);
            }
        }
    }
}
