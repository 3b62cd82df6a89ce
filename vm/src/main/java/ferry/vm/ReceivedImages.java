package ferry.vm;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.MigrationException;
import ferry.migration.PartialMigration;
import ferry.migration.Phase;
import java.util.List;

/**
 * The images a destination writes arriving granules into while its QEMU waits with them inactive,
 * and lets go of once: flushed and closed before QEMU gets the device state ({@link #complete()}),
 * or closed when the attempt is dropped ({@link #drop()}); with -b, also their resume journals, which
 * go back to the {@link PartialState} when the attempt ends ({@link #committed()}, {@link #release}).
 * Shared by {@link IncomingVm} (images Ferry created or checked) and {@link AttachedIncoming} (images a
 * hand-started QEMU already opened).
 *
 * <p>Threads: the session's thread writes and completes; {@link #drop()} may come from the listener.
 */
final class ReceivedImages {
    private final List<BlockImage> images;
    private final List<Boolean> fresh;
    /** The resume journals, with -b; null for shared storage. */
    private final PartialMigration journal;
    private final PartialState partial;
    private boolean closed;

    /**
     * @param fresh per image: true when it starts out reading all zeroes (the source may skip holes);
     *     empty when the disks are shared and nothing is received
     * @param journal the images' resume journals, taken from {@code partial}; null for shared storage
     */
    ReceivedImages(List<BlockImage> images, List<Boolean> fresh, PartialMigration journal, PartialState partial) {
        this.images = List.copyOf(images);
        this.fresh = List.copyOf(fresh);
        this.journal = journal;
        this.partial = partial;
    }

    /** The resume journals (with -b). */
    PartialMigration journal() {
        if (journal == null) {
            throw new IllegalStateException("no resume journal: the disks are shared (migrate without -b)");
        }
        return journal;
    }

    /** COMMIT arrived and the VM was resumed (or tried to be): it is this host's, nothing is kept to resume. */
    void committed() {
        if (journal != null) {
            partial.completed(journal);
        }
    }

    /** The attempt is over: the journals go back to the partial state, kept for a resume or removed. */
    void release(boolean keepPartial) {
        if (journal != null) {
            partial.release(journal, keepPartial);
        }
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
    }
}
