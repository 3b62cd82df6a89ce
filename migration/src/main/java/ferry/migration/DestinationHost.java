package ferry.migration;

import ferry.image.BlockImage;
import ferry.migration.wire.Frame;
import java.nio.file.Path;
import java.util.List;

/**
 * What the migration destination needs from its host: disks and a VM waiting for RAM. The
 * supervisor implements it (creating images, starting QEMU with the user's drives and
 * {@code -incoming defer -S}).
 */
public interface DestinationHost {

    /**
     * Checks the source's offer against this host's configuration and prepares for it: creates (or,
     * for incremental migration, opens) the images and opens them for the receiver's writes, with a
     * resume journal beside each (a partial state kept of an earlier migration is discarded first);
     * QEMU comes with {@link PreparedVm#startVm()}.
     * A HELLO with a resume claim instead reopens the partial state kept of that migration (same id,
     * same disks and sizes), or refuses when there is none.
     * Refuses with a MigrationException whose message the source shows to its user.
     */
    PreparedVm prepare(Frame.Hello hello) throws MigrationException;

    /** The partial state this host keeps for a resume, for {@code info migrate}; empty when there is none. */
    default java.util.Optional<ResumeInfo.PartialHeld> partialHeld() {
        return java.util.Optional.empty();
    }

    /** The VM being received. Exactly one of {@link #resume()} and {@link #abort(String)} ends it. */
    interface PreparedVm {
        /** The images in the order of the HELLO's disks; written by the receiver. Empty without -b. */
        List<BlockImage> images();

        /**
         * Every granule is written and flushed: Ferry lets go of the images (flushes and closes its
         * handles), so that QEMU alone owns them before it gets the device state and activates them.
         * Called once, before the RAM stream's remainder is fed to QEMU.
         */
        void imagesComplete() throws MigrationException;

        /** Per image: true when it starts out reading all zeroes, so the source may skip holes. */
        List<Boolean> fresh();

        /** The images' resume journals (with -b): what a checkpoint makes durable, and what a resume goes on from. */
        PartialMigration journal();

        /**
         * Starts QEMU waiting for its RAM stream ({@code -incoming defer}, {@code migrate-incoming}),
         * then does the checks that read a lot (for {@code -i}, each base's content digest). Runs
         * while the bulk pass arrives, on the session's {@code vm-start} thread: QEMU's start-up (about
         * a second under TCG) and the hashing then cost no migration time; the disks are verified
         * only after it returned.
         */
        void startVm() throws MigrationException;

        /**
         * Asks a {@link #startVm()} that still runs to give up at its next check (a long base digest);
         * {@link #abort} follows. Called from the session's thread.
         */
        void stopStarting();

        /** Where the waiting QEMU listens for its RAM stream (valid once {@link #startVm()} returned). */
        Path ramSocket();

        /** Tells {@code listener} about QEMU's incoming migration status ({@code completed}, {@code failed}). */
        void ramListener(SourceVm.RamListener listener);

        /** Starts the received VM ({@code cont}). */
        void resume() throws MigrationException;

        /**
         * Stops the VM. With {@code keepPartial} the images and their journals stay, closed, for a resume (the
         * host shows them as its partial state); without, what {@link #prepare} created is removed. Never throws;
         * reports what it could not undo.
         */
        void abort(String reason, boolean keepPartial);
    }
}
