package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.migration.wire.Frame;
import ferry.migration.wire.MigrationWire;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The source's side of HELLO and WELCOME (docs/migration-protocol.md), for a fresh start and for a resume:
 * what the source offers (its disks, the granule size, the VM's fingerprint), what a resume claims (the last
 * confirmed checkpoint and {@link ResumeSamples}), what it checks in the answer; and what the answers taught
 * it: whether the destination holds a partial state of this migration that another attempt can go on from.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>The offers are made once, before the first connect: hashing a base for {@code -i} may take long, and
 *       the destination gives HELLO 10 s.</li>
 *   <li>A resume takes QEMU's dirty set after the sample reads and before HELLO: a guest write racing a read
 *       is in that set, so its sample is dropped, and the set is what the resume pass sends besides the
 *       ledger's owed granules.</li>
 *   <li>A resume the destination refuses (its journal, its disks or the samples do not match) means it holds
 *       nothing to go on from: the next {@code migrate} starts over, so no resume point is kept.</li>
 *   <li>Logs under {@link MigrationSource}'s name, as these lines did before they moved here.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} only.
 */
final class SourceHandshake {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    private static final long WELCOME_TIMEOUT_MS = 120_000;

    private final String vmName;
    private final List<SourceDisk> disks;
    private final MigrationRequest request;
    private final SourceVm vm;
    private final SourceBlocks blocks;
    private final DiskPasses passes;
    private final SourceEvents events;
    /** The destination welcomed this migration's disks: it keeps a partial state that another attempt can go on from. */
    private boolean destinationHoldsPartial;

    SourceHandshake(String vmName, List<SourceDisk> disks, MigrationRequest request, SourceVm vm, SourceBlocks blocks,
                    DiskPasses passes, SourceEvents events) {
        this.vmName = vmName;
        this.disks = List.copyOf(disks);
        this.request = request;
        this.vm = vm;
        this.blocks = blocks;
        this.passes = passes;
        this.events = events;
    }

    /** The disks as HELLO offers them: id, size, format and, for {@code -i}, the base's identity (hashed here). */
    List<Frame.DiskOffer> offers() throws MigrationException {
        List<Frame.DiskOffer> offers = new ArrayList<>();
        for (SourceDisk disk : disks) {
            Optional<Frame.BaseIdentity> base = Optional.empty();
            if (request.incremental() && disk.base().isPresent()) {
                long startNs = System.nanoTime();
                base = Optional.of(disk.base().get().identity());
                LOG.log(System.Logger.Level.INFO, "base of " + disk.id() + " hashed in " + (System.nanoTime() - startNs) / 1_000_000
                        + " ms");
            }
            offers.add(new Frame.DiskOffer(disk.id(), disk.size(), disk.format(), base));
        }
        return offers;
    }

    /**
     * The granule-size parameter, doubled until the disks' group digests fit one DISKS_DONE frame: 4 KiB
     * granules do up to about 16 TiB of disks, larger ones need coarser granules (more bytes resent per
     * guest write, half the bitmap and digest memory per doubling).
     */
    static int granuleFor(List<Long> sizes, int wanted) throws MigrationException {
        int granule = MigrationWire.smallestGranuleFor(sizes, wanted);
        if (granule < 0) {
            throw new MigrationException(Phase.HANDSHAKE, "the disks are too large to migrate: " + sizes.stream().mapToLong(s -> s).sum()
                    + " bytes need more digests than one DISKS_DONE frame carries even at granule-size " + MigrationWire.MAX_GRANULE_SIZE);
        }
        if (granule != wanted) {
            LOG.log(System.Logger.Level.INFO, "granule-size " + wanted + " raised to " + granule + " for this migration: the digests of "
                    + sizes.stream().mapToLong(s -> s).sum() + " bytes of disks must fit one DISKS_DONE frame");
        }
        return granule;
    }

    /** True when the destination keeps a partial state of this migration (a later attempt resumes it). */
    boolean destinationHoldsPartial() {
        return destinationHoldsPartial;
    }

    /** {@code migrate -r}: the destination kept the interrupted migration's partial state. */
    void adopted() {
        destinationHoldsPartial = true;
    }

    /** A fresh start: HELLO, then WELCOME checked; returns per disk whether the destination's image starts out all zero. */
    List<Boolean> fresh(SourceStream stream, List<Frame.DiskOffer> offers, int granuleSize, UUID migrationId)
            throws MigrationException, Cancelled, LinkLost, InterruptedException {
        stream.send(Phase.HANDSHAKE, new Frame.Hello(MigrationWire.VERSION, vmName, granuleSize, request.copyDisks(),
                request.incremental(), offers, vm.fingerprint(), migrationId, Optional.empty()));
        Frame.Welcome welcome = events.awaitFrame(Frame.Welcome.class, WELCOME_TIMEOUT_MS, "the destination's WELCOME");
        if (request.copyDisks() && welcome.freshDisks().size() != disks.size()) {
            throw new MigrationException(Phase.HANDSHAKE, "destination prepared " + welcome.freshDisks().size()
                    + " disks, source has " + disks.size());
        }
        destinationHoldsPartial = request.copyDisks();
        return welcome.freshDisks();
    }

    /**
     * A later attempt (or {@code -r}): samples granules the destination must hold as they are here, takes
     * the guest's writes since the last pass began, and asks the destination to go on. The destination
     * answers with the checkpoint its journal holds; everything sent after it goes back into the ledger to be
     * sent again. Returns that checkpoint.
     */
    long resume(SourceStream stream, List<Frame.DiskOffer> offers, int granuleSize, UUID migrationId, List<BlockImage> readers)
            throws MigrationException, Cancelled, LinkLost, InterruptedException {
        ResendLedger ledger = passes.ledger();
        List<List<Frame.Sample>> sampled = ResumeSamples.take(disks, readers, passes.digests(), ledger, ThreadLocalRandom.current());
        List<DirtySnapshot> since = blocks.takeDirty();      // after the sample reads: a write racing them is in here
        for (int i = 0; i < disks.size(); i++) {
            ledger.planned(i, since.get(i));      // at once: QEMU no longer holds these, and this attempt may fail before WELCOME
        }
        List<List<Frame.Sample>> samples = ResumeSamples.without(sampled, since);
        stream.send(Phase.HANDSHAKE, new Frame.Hello(MigrationWire.VERSION, vmName, granuleSize, true, request.incremental(), offers,
                vm.fingerprint(), migrationId, Optional.of(new Frame.ResumeClaim(ledger.lastConfirmed(), samples))));
        Frame.Welcome welcome;
        try {
            welcome = events.awaitFrame(Frame.Welcome.class, WELCOME_TIMEOUT_MS, "the destination's WELCOME");
        } catch (MigrationException refused) {
            destinationHoldsPartial = false;                 // it holds nothing to go on from: the next migrate starts over
            throw refused;
        }
        ledger.resumeAt(welcome.checkpoint());
        LOG.log(System.Logger.Level.INFO, "resume: the guest wrote " + since.stream().mapToLong(DirtySnapshot::bytes).sum()
                + " bytes since the last pass began; the resume pass sends them with what the destination lacks");
        return welcome.checkpoint();
    }
}
