package ferry.vm;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.MigrationException;
import ferry.migration.PartialMigration;
import ferry.migration.Phase;
import ferry.migration.ResumeJournal;
import ferry.migration.wire.Frame;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * The images a destination writes arriving granules into while its QEMU waits with them inactive,
 * and lets go of once: flushed and closed before QEMU gets the device state ({@link #complete()}),
 * or closed when the attempt is dropped ({@link #drop()}). Shared by {@link IncomingVm} (images Ferry
 * created or checked) and {@link AttachedIncoming} (images a hand-started QEMU already opened).
 *
 * <p>Threads: the session's thread writes and completes; {@link #drop()} may come from the listener.
 */
final class ReceivedImages {
    private final List<BlockImage> images;
    private final List<Boolean> fresh;
    private final PartialMigration journal;
    private boolean closed;

    /**
     * @param fresh per image: true when it starts out reading all zeroes (the source may skip holes);
     *     empty when the disks are shared and nothing is received
     */
    ReceivedImages(List<BlockImage> images, List<Boolean> fresh, PartialMigration journal) {
        this.images = List.copyOf(images);
        this.fresh = List.copyOf(fresh);
        this.journal = journal;
    }

    /**
     * The resume journals of a fresh start, one beside each of {@code files} (a journal left there by an earlier
     * migration is removed first: one drive never holds two partial states).
     */
    static PartialMigration newJournal(Frame.Hello hello, List<Path> files, List<Path> created) throws IOException {
        List<ResumeJournal.Identity> identities = new ArrayList<>();
        Instant now = Instant.now();
        for (int i = 0; i < files.size(); i++) {
            ResumeJournal.discard(files.get(i));
            Frame.DiskOffer offer = hello.disks().get(i);
            identities.add(new ResumeJournal.Identity(hello.migrationId(), offer.id(), offer.size(), hello.granuleSize(),
                    offer.format(), created.contains(files.get(i)), now));
        }
        return PartialMigration.create(files, identities);
    }

    /** The images' resume journals; null without -b. */
    PartialMigration journal() {
        return journal;
    }

    List<BlockImage> images() {
        return images;
    }

    List<Boolean> fresh() {
        return fresh;
    }

    /** Flushes and closes every image, once: from here on QEMU alone owns them. */
    synchronized void complete() throws MigrationException {
        if (closed) {
            return;
        }
        closed = true;
        for (BlockImage image : images) {
            try {
                image.flush();
                image.close();
            } catch (ImageException e) {
                throw new MigrationException(Phase.SWITCHOVER, "closing " + image.describe() + " failed: " + e.getMessage(), e);
            }
        }
    }

    /** Closes what {@link #complete()} has not closed; failures are logged (the attempt is over anyway). */
    synchronized void drop() {
        if (!closed) {
            closed = true;
            IncomingVm.closeAll(images);
        }
        if (journal != null) {
            try {
                journal.discard();
            } catch (IOException e) {
                System.getLogger(ReceivedImages.class.getName()).log(System.Logger.Level.WARNING,
                        "removing the resume journals failed: " + e.getMessage());
            }
        }
    }
}
