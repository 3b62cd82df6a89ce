package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.raw.RawImage;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The bulk pass's plan from a real raw image's allocation map (SEEK_DATA/SEEK_HOLE on the test's
 * filesystem), and from a wrapper that reports part of it as BACKING or ZERO, as a qcow2 overlay would.
 */
class BulkPlanTest {
    private static final int GRANULE = 64 << 10;
    private static final long SIZE = 10L * GRANULE + 4096;     // 11 granules, the last one 4 KiB

    @TempDir Path tmp;
    private RawImage image;

    @BeforeEach
    void setUp() throws Exception {
        image = RawImage.create(tmp.resolve("disk.raw"), SIZE);
        write(GRANULE + 8192, 4096);                           // inside granule 1
        write(4L * GRANULE - 4096, 8192);                      // across granules 3 and 4
        write(6L * GRANULE, 3L * GRANULE);                     // granules 6..8, then a hole punched in 7
        image.writeZeroes(7L * GRANULE, GRANULE, true);
        write(SIZE - 4096, 4096);                              // the short last granule
        image.flush();
        assertEquals(Extent.Type.HOLE, image.extents(7L * GRANULE, GRANULE).getFirst().type(),
                "this test needs a filesystem that punches holes and reports them (SEEK_HOLE)");
    }

    @AfterEach
    void tearDown() throws Exception {
        image.close();
    }

    private void write(long offset, long length) throws ImageException {
        byte[] bytes = new byte[(int) length];
        java.util.Arrays.fill(bytes, (byte) 0x5a);
        image.write(offset, ByteBuffer.wrap(bytes));
    }

    private static List<Long> granules(DirtySnapshot set) {
        List<Long> out = new ArrayList<>();
        for (long g = set.nextDirty(0); g >= 0; g = set.nextDirty(g + 1)) {
            out.add(g);
        }
        return out;
    }

    private static List<Long> allBut(List<Long> excluded) {
        return LongStream.range(0, 11).boxed().filter(g -> !excluded.contains(g)).toList();
    }

    @Test
    void shouldRoundDataOutwardAndSkipHolesOnAFreshDestination() throws Exception {
        BulkPlan plan = BulkPlan.of(image, GRANULE, false, true);
        assertEquals(List.of(1L, 3L, 4L, 6L, 8L, 10L), granules(plan.data()));
        assertEquals(List.of(), granules(plan.zero()));
        assertEquals(5L * GRANULE + 4096, plan.dataBytes());
    }

    @Test
    void shouldSendZeroFramesForHolesOnAUsedDestination() throws Exception {
        BulkPlan plan = BulkPlan.of(image, GRANULE, false, false);
        List<Long> data = List.of(1L, 3L, 4L, 6L, 8L, 10L);
        assertEquals(data, granules(plan.data()));
        assertEquals(allBut(data), granules(plan.zero()));
    }

    @Test
    void shouldReadBackingRangesOnlyForAFullCopy() throws Exception {
        // granules 2..5 come from the base image (and the data written into 3 and 4 is hidden under it)
        BlockImage overlay = new Overriding(image, 2L * GRANULE, 4L * GRANULE, Extent.Type.BACKING);
        BulkPlan full = BulkPlan.of(overlay, GRANULE, false, true);
        assertEquals(List.of(1L, 2L, 3L, 4L, 5L, 6L, 8L, 10L), granules(full.data()));
        assertEquals(List.of(), granules(full.zero()));
        BulkPlan incremental = BulkPlan.of(overlay, GRANULE, true, true);
        assertEquals(List.of(1L, 6L, 8L, 10L), granules(incremental.data()));
        assertEquals(List.of(), granules(incremental.zero()), "holes on a fresh destination are skipped, incremental or not");
        BulkPlan incrementalUsed = BulkPlan.of(overlay, GRANULE, true, false);
        assertEquals(List.of(1L, 6L, 8L, 10L), granules(incrementalUsed.data()));
        assertEquals(List.of(0L, 7L, 9L), granules(incrementalUsed.zero()));
    }

    @Test
    void shouldSendZeroExtentsInIncrementalModeAndReadTheirPartialEdges() throws Exception {
        // a ZERO extent from the middle of granule 1 to the middle of granule 5 hides the base there
        BlockImage overlay = new Overriding(image, GRANULE + 4096, 4L * GRANULE, Extent.Type.ZERO);
        BulkPlan plan = BulkPlan.of(overlay, GRANULE, true, true);
        assertEquals(List.of(2L, 3L, 4L), granules(plan.zero()), "only the granules it covers whole");
        assertEquals(List.of(1L, 5L, 6L, 8L, 10L), granules(plan.data()), "its edge granules 1 and 5 are read");
        BulkPlan full = BulkPlan.of(overlay, GRANULE, false, true);
        assertEquals(List.of(), granules(full.zero()), "a full copy to a fresh destination skips zeroes");
        assertEquals(List.of(6L, 8L, 10L), granules(full.data()), "granule 1 reads as zero in this map: nothing to send");
    }

    @Test
    void shouldDescribeAZeroExtentInsideOneGranuleAsData() throws Exception {
        BlockImage overlay = new Overriding(image, 2L * GRANULE + 100, 200, Extent.Type.ZERO);
        BulkPlan plan = BulkPlan.of(overlay, GRANULE, true, true);
        assertEquals(List.of(), granules(plan.zero()));
        assertEquals(List.of(1L, 2L, 3L, 4L, 6L, 8L, 10L), granules(plan.data()));
    }

    @Test
    void shouldZeroAShortLastGranuleThatIsAHole() throws Exception {
        image.writeZeroes(SIZE - 4096, 4096, true);
        BulkPlan plan = BulkPlan.of(image, GRANULE, false, false);
        assertEquals(List.of(1L, 3L, 4L, 6L, 8L), granules(plan.data()));
        assertEquals(List.of(0L, 2L, 5L, 7L, 9L, 10L), granules(plan.zero()));
        assertEquals(5L * GRANULE, plan.dataBytes());
    }

    /** A test-only view of an image whose allocation map reports {@code type} for one range. */
    private record Overriding(BlockImage inner, long offset, long length, Extent.Type type) implements BlockImage {
        @Override
        public List<Extent> extents(long from, long span) throws ImageException {
            long end = from + span;
            List<Extent> out = new ArrayList<>();
            long position = from;
            while (position < end) {
                long rangeEnd = offset + length;
                if (position >= offset && position < rangeEnd) {
                    long stop = Math.min(end, rangeEnd);
                    out.add(new Extent(position, stop - position, type));
                    position = stop;
                    continue;
                }
                long stop = position < offset ? Math.min(end, offset) : end;
                long at = position;
                while (at < stop) {
                    Extent e = inner.extents(at, stop - at).getFirst();
                    long eEnd = Math.min(e.end(), stop);
                    out.add(new Extent(at, eEnd - at, e.type()));
                    at = eEnd;
                }
                position = stop;
            }
            return out;
        }

        @Override public long size() { return inner.size(); }
        @Override public boolean readOnly() { return true; }
        @Override public String describe() { return "overriding " + inner.describe(); }
        @Override public String format() { return inner.format(); }
        @Override public void read(long at, ByteBuffer dst) throws ImageException { inner.read(at, dst); }
        @Override public void write(long at, ByteBuffer src) { throw new UnsupportedOperationException("read-only test view"); }
        @Override public void writeZeroes(long at, long span, boolean mayUnmap) { throw new UnsupportedOperationException("read-only test view"); }
        @Override public void trim(long at, long span) { throw new UnsupportedOperationException("read-only test view"); }
        @Override public void flush() { }
        @Override public void close() { }
    }
}
