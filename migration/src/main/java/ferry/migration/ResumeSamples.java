package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.wire.Frame;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.random.RandomGenerator;

/**
 * The granules a resuming source asks the destination to compare before it goes on (the HELLO's
 * resume claim): per disk, granules that the destination must hold exactly as the source's disk holds
 * them now, with their digests as read now. The destination reads the same granules; a mismatch makes it
 * refuse the resume (its partial state is not what the source left) instead of finishing a corrupt copy.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Only granules recorded as sent ({@link GranuleDigests#nextRecorded}) and owed neither as unsent nor
 *       as unconfirmed ({@link ResendLedger#owed}) qualify: anything else the destination may rightly lack.</li>
 *   <li>The granules are read before the caller takes QEMU's dirty set, and {@link #without} then drops
 *       those the guest wrote meanwhile: a write racing the read is in that set, so no sample is stale.</li>
 *   <li>Random granules, not the first ones: a few scattered samples catch a wrong or damaged image
 *       anywhere on the disk.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} only. Reads through the given readers; changes nothing.
 */
final class ResumeSamples {
    /** Granules per disk a resume samples for the destination to compare ({@link ferry.migration.wire.MigrationWire#MAX_SAMPLES} at most). */
    static final int PER_DISK = 64;

    private ResumeSamples() {
    }

    /** The samples of every disk, in disk order, read through {@code readers}. */
    static List<List<Frame.Sample>> take(List<SourceDisk> disks, List<BlockImage> readers, List<GranuleDigests> digests,
                                         ResendLedger ledger, RandomGenerator random) throws MigrationException {
        List<List<Frame.Sample>> samples = new ArrayList<>();
        for (int i = 0; i < disks.size(); i++) {
            samples.add(ofDisk(disks.get(i), readers.get(i), digests.get(i), ledger.owed(i), random));
        }
        return samples;
    }

    /** {@code samples} without the granules in {@code written} (disk by disk): the guest changed them since they were read. */
    static List<List<Frame.Sample>> without(List<List<Frame.Sample>> samples, List<DirtySnapshot> written) {
        List<List<Frame.Sample>> kept = new ArrayList<>();
        for (int i = 0; i < samples.size(); i++) {
            DirtySnapshot changed = written.get(i);
            kept.add(samples.get(i).stream().filter(s -> !changed.isDirty(s.granule())).toList());
        }
        return kept;
    }

    /**
     * Up to {@link #PER_DISK} granules of {@code disk} that the destination must hold exactly as this disk does
     * now: recorded as sent, and not {@code owed}.
     */
    private static List<Frame.Sample> ofDisk(SourceDisk disk, BlockImage reader, GranuleDigests digests, DirtySnapshot owed,
                                             RandomGenerator random) throws MigrationException {
        int granuleSize = digests.granuleSize();
        TreeSet<Long> chosen = new TreeSet<>();
        long granules = (disk.size() + granuleSize - 1) / granuleSize;
        for (int tries = 0; tries < PER_DISK * 4 && chosen.size() < PER_DISK; tries++) {
            long g = digests.nextRecorded(random.nextLong(granules));
            if (g < 0) {
                g = digests.nextRecorded(0);
            }
            if (g < 0) {
                break;                                       // nothing recorded yet
            }
            if (!owed.isDirty(g)) {
                chosen.add(g);
            }
        }
        List<Frame.Sample> samples = new ArrayList<>();
        ByteBuffer buffer = ByteBuffer.allocateDirect(granuleSize);
        for (long g : chosen) {
            int length = digests.granuleLength(g);
            buffer.clear().limit(length);
            try {
                reader.read(g * granuleSize, buffer);
            } catch (ImageException e) {
                throw new MigrationException(Phase.HANDSHAKE, "reading disk " + disk.id() + " for the resume check failed: "
                        + e.getMessage(), e);
            }
            buffer.flip();
            samples.add(new Frame.Sample(g, GranuleDigests.digestOfGranule(buffer)));
        }
        return samples;
    }
}
