package ferry.dirty;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class DirtySnapshotTest {
    private static final int GRANULE = 4096;

    private record Run(long first, long count) {}

    private static List<Run> runs(DirtySnapshot snapshot, long maxRunGranules) {
        List<Run> runs = new ArrayList<>();
        snapshot.forEachRun(maxRunGranules, (first, count) -> runs.add(new Run(first, count)));
        return runs;
    }

    private static DirtySnapshot snapshotOf(long granules, long[][] marked) {
        DirtyBitmap bitmap = new DirtyBitmap(granules * GRANULE, GRANULE);
        for (long[] range : marked) {
            bitmap.markGranules(range[0], range[1]);
        }
        return bitmap.snapshotAndClear();
    }

    @Test
    void shouldWalkRunsAcrossWordBoundariesAsOne() {
        DirtySnapshot snapshot = snapshotOf(256, new long[][] {{60, 70}, {127, 129}, {200, 256}});
        assertEquals(List.of(new Run(60, 10), new Run(127, 2), new Run(200, 56)), runs(snapshot, 1 << 20));
    }

    @Test
    void shouldSplitRunsByMaxRunGranules() {
        DirtySnapshot snapshot = snapshotOf(256, new long[][] {{10, 20}, {64, 68}});
        assertEquals(List.of(new Run(10, 4), new Run(14, 4), new Run(18, 2), new Run(64, 4)), runs(snapshot, 4));
        assertEquals(14, runs(snapshot, 1).size(), "one run per granule");
        assertEquals(List.of(new Run(10, 10), new Run(64, 4)), runs(snapshot, 10));
    }

    @Test
    void shouldEndTheLastRunAtTheLastGranule() {
        DirtyBitmap bitmap = new DirtyBitmap(70L * GRANULE + 1, GRANULE);   // 71 granules, last is 1 byte
        bitmap.markAll();
        DirtySnapshot snapshot = bitmap.snapshotAndClear();
        assertEquals(List.of(new Run(0, 32), new Run(32, 32), new Run(64, 7)), runs(snapshot, 32));
        assertEquals(70L * GRANULE + 1, snapshot.bytes());
        assertEquals(71, snapshot.nextClean(64));
        assertEquals(-1, snapshot.nextDirty(71));
    }

    @Test
    void shouldFindNextDirtyAndCleanAcrossWords() {
        DirtySnapshot snapshot = snapshotOf(300, new long[][] {{0, 1}, {63, 64}, {64, 192}, {299, 300}});
        assertEquals(0, snapshot.nextDirty(0));
        assertEquals(63, snapshot.nextDirty(1));
        assertEquals(192, snapshot.nextClean(63));
        assertEquals(299, snapshot.nextDirty(192));
        assertEquals(300, snapshot.nextClean(299));
        assertEquals(1, snapshot.nextClean(0));
        assertEquals(-1, snapshot.nextDirty(300));
        assertEquals(1 + 129 + 1, snapshot.count());
        assertEquals(131L * GRANULE, snapshot.bytes());
    }

    @Test
    void shouldVisitNothingForACleanOrEmptySnapshot() {
        assertEquals(List.of(), runs(snapshotOf(100, new long[][] {}), 8));
        DirtySnapshot empty = new DirtyBitmap(0, GRANULE).snapshotAndClear();
        assertEquals(List.of(), runs(empty, 8));
        assertEquals(-1, empty.nextDirty(0));
        assertEquals(0, empty.bytes());
    }
}
