package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.raw.RawImage;
import ferry.migration.wire.Frame;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ResumeSamplesTest {
    private static final int GRANULE = 4096;
    private static final long GRANULES = 256;
    private static final long DISK = GRANULES * GRANULE;
    private static final SourceDisk DISK0 = new SourceDisk("disk0", DISK, "raw", Optional.empty());

    @TempDir Path tmp;

    /** Granule {@code g} of the test disk holds the byte {@code g + 1} throughout. */
    private static ByteBuffer granule(long g) {
        ByteBuffer data = ByteBuffer.allocate(GRANULE);
        while (data.hasRemaining()) {
            data.put((byte) (g + 1));
        }
        return data.flip();
    }

    private RawImage diskWithPattern() throws Exception {
        RawImage image = RawImage.create(tmp.resolve("disk0.raw"), DISK);
        for (long g = 0; g < GRANULES; g++) {
            image.write(g * GRANULE, granule(g));
        }
        return image;
    }

    private static DirtySnapshot granules(long first, long end) {
        DirtyBitmap bitmap = new DirtyBitmap(DISK, GRANULE);
        bitmap.markGranules(first, end);
        return bitmap.snapshotAndClear();
    }

    private static List<Frame.Sample> sample(BlockImage image, GranuleDigests digests, ResendLedger ledger) throws Exception {
        return ResumeSamples.take(List.of(DISK0), List.of(image), List.of(digests), ledger, new SplittableRandom(7)).get(0);
    }

    @Test
    void shouldSampleOnlyGranulesSentAndNotOwedWithTheDigestOfWhatTheDiskHoldsNow() throws Exception {
        try (RawImage image = diskWithPattern()) {
            GranuleDigests digests = new GranuleDigests(DISK, GRANULE);
            ResendLedger ledger = new ResendLedger(List.of(DISK), GRANULE, 1L << 30, 0);
            for (long g = 0; g < 200; g++) {
                digests.recordData(g, granule(g));               // granules 0..199 were sent
            }
            ledger.planned(0, granules(150, 200));
            ledger.sent(0, 150, 50, 50L * GRANULE);              // 150..199 sent but not confirmed: owed
            List<Frame.Sample> samples = sample(image, digests, ledger);
            assertFalse(samples.isEmpty());
            assertTrue(samples.size() <= ResumeSamples.PER_DISK);
            for (Frame.Sample s : samples) {
                assertTrue(s.granule() < 150, "granule " + s.granule() + " is owed or was never sent");
                assertEquals(GranuleDigests.digestOfGranule(granule(s.granule())), s.digest(), "granule " + s.granule());
            }
        }
    }

    @Test
    void shouldSampleNothingBeforeAnythingWasSent() throws Exception {
        try (RawImage image = diskWithPattern()) {
            GranuleDigests digests = new GranuleDigests(DISK, GRANULE);
            ResendLedger ledger = new ResendLedger(List.of(DISK), GRANULE, 1L << 30, 0);
            assertEquals(List.of(), sample(image, digests, ledger));
        }
    }

    @Test
    void shouldDropTheSamplesOfGranulesTheGuestWroteSinceTheyWereRead() {
        List<Frame.Sample> read = List.of(new Frame.Sample(3, 30), new Frame.Sample(9, 90), new Frame.Sample(12, 120));
        List<List<Frame.Sample>> kept = ResumeSamples.without(List.of(read), List.of(granules(9, 10)));
        assertEquals(List.of(List.of(new Frame.Sample(3, 30), new Frame.Sample(12, 120))), kept);
    }
}
