package ferry.migration;

import java.time.Instant;
import java.util.List;
import java.util.UUID;

/**
 * What a source keeps of a migration that failed or was cancelled before COMMIT, so that
 * {@code migrate -r} sends only what the destination lacks (DESIGN.md "Resume"): the migration's id,
 * the ledger of unsent and unconfirmed granules, the digests of what was sent, and the VM's block
 * layer with its dirty tracking still recording (QEMU keeps the one active bitmap; nothing else of
 * Ferry's stays in QEMU).
 *
 * <p>Exactly one of {@link MigrationSource} (resuming from it) and {@link #discard()} ends it.
 *
 * <p>Threads: made and used by {@code migration-send}; {@link #info()} may be read from any thread.
 */
public final class ResumePoint {
    private final UUID migrationId;
    private final int granuleSize;
    private final boolean incremental;
    private final List<Long> diskSizes;
    private final ResendLedger ledger;
    private final List<GranuleDigests> digests;
    private final SourceBlocks blocks;
    private final Instant since;
    private final long owedBytes;

    ResumePoint(UUID migrationId, int granuleSize, boolean incremental, List<Long> diskSizes, ResendLedger ledger,
                List<GranuleDigests> digests, SourceBlocks blocks, Instant since) {
        this.migrationId = migrationId;
        this.granuleSize = granuleSize;
        this.incremental = incremental;
        this.diskSizes = List.copyOf(diskSizes);
        this.ledger = ledger;
        this.digests = List.copyOf(digests);
        this.blocks = blocks;
        this.since = since;
        this.owedBytes = ledger.owedBytes();
    }

    public UUID migrationId() {
        return migrationId;
    }

    int granuleSize() {
        return granuleSize;
    }

    boolean incremental() {
        return incremental;
    }

    List<Long> diskSizes() {
        return diskSizes;
    }

    ResendLedger ledger() {
        return ledger;
    }

    List<GranuleDigests> digests() {
        return digests;
    }

    /** The block layer that still tracks guest writes: the next attempt must use this one. */
    public SourceBlocks blocks() {
        return blocks;
    }

    /** For {@code info migrate}: what a resume would send besides the guest's writes since. */
    public ResumeInfo.Resumable info() {
        return new ResumeInfo.Resumable(migrationId, owedBytes, since);
    }

    /**
     * Checks that {@code request} and these disks are the ones this point was taken for; the message says what
     * differs and that {@code migrate} without {@code -r} starts over.
     */
    void checkFits(MigrationRequest request, List<SourceDisk> disks) throws MigrationException {
        if (!request.copyDisks()) {
            throw new MigrationException(Phase.HANDSHAKE, "-r resumes a block migration: give -b as well");
        }
        if (request.incremental() != incremental) {
            throw new MigrationException(Phase.HANDSHAKE, "the interrupted migration was " + (incremental ? "" : "not ")
                    + "incremental: resume it with the same -i, or migrate without -r to start over");
        }
        List<Long> sizes = disks.stream().map(SourceDisk::size).toList();
        if (!sizes.equals(diskSizes)) {
            throw new MigrationException(Phase.HANDSHAKE, "the disks changed since the interrupted migration (sizes " + diskSizes
                    + " then, " + sizes + " now): migrate without -r to start over");
        }
    }

    /** Drops the point: removes what it kept in QEMU's block layer (the dirty bitmap). */
    public void discard() throws MigrationException {
        blocks.stop();
    }
}
