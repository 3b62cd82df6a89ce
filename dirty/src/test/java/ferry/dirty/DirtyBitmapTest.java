package ferry.dirty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.linux.Threads;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class DirtyBitmapTest {
    private static final int GRANULE = 4096;

    @Test
    void shouldCountAShortLastGranule() {
        long size = 10L * GRANULE + 100;   // 11 granules, the last one 100 bytes long
        DirtyBitmap bitmap = new DirtyBitmap(size, GRANULE);
        assertEquals(11, bitmap.granuleCount());
        bitmap.markRange(size - 1, 1);
        assertTrue(bitmap.isDirty(10));
        assertEquals(1, bitmap.dirtyCount());
        assertEquals(100, bitmap.peek().bytes(), "only the 100 bytes of the last granule");
        bitmap.markRange(size, 4096);          // starts at the end: ignored
        bitmap.markRange(size - 50, 10_000);   // runs past the end: clipped
        assertEquals(1, bitmap.dirtyCount());
    }

    @Test
    void shouldClearExactlyTheGranulesAskedForAcrossWords() {
        DirtyBitmap bitmap = new DirtyBitmap(300L * GRANULE, GRANULE);
        bitmap.markAll();
        bitmap.clearGranules(60, 130);                       // crosses two word boundaries, one whole word
        assertTrue(bitmap.isDirty(59));
        assertFalse(bitmap.isDirty(60));
        assertFalse(bitmap.isDirty(129));
        assertTrue(bitmap.isDirty(130));
        assertEquals(300 - 70, bitmap.dirtyCount());
        bitmap.clearGranules(5, 5);                          // empty range: nothing
        assertEquals(300 - 70, bitmap.dirtyCount());
    }

    @Test
    void shouldMarkRangesSpanningWordBoundaries() {
        DirtyBitmap bitmap = new DirtyBitmap(300L * GRANULE, GRANULE);
        bitmap.markRange(63L * GRANULE + 4095, 2);          // last byte of granule 63 and first of 64
        bitmap.markRange(120L * GRANULE + 1, 140L * GRANULE);  // granules 120..260: three words
        DirtySnapshot snapshot = bitmap.snapshotAndClear();
        for (long g = 0; g < 300; g++) {
            boolean expected = g == 63 || g == 64 || (g >= 120 && g <= 260);
            assertEquals(expected, snapshot.isDirty(g), "granule " + g);
        }
        assertEquals(2 + 141, snapshot.count());
        assertEquals(0, bitmap.dirtyCount(), "snapshotAndClear leaves the bitmap clean");
    }

    @Test
    void shouldMarkExactlyTheGranulesTouched() {
        DirtyBitmap bitmap = new DirtyBitmap(64L * GRANULE, GRANULE);
        bitmap.markRange(GRANULE, GRANULE);          // exactly granule 1
        bitmap.markRange(5L * GRANULE - 1, 1);       // last byte of granule 4
        bitmap.markRange(-100, 101);                 // negative start: clipped to byte 0
        bitmap.markRange(20L * GRANULE, 0);          // empty: nothing
        bitmap.markRange(30L * GRANULE, -5);         // negative: nothing
        assertEquals(List.of(0L, 1L, 4L), dirtyGranules(bitmap.peek()));
    }

    @Test
    void shouldMarkAllWithoutBitsPastTheLastGranule() {
        long size = 130L * GRANULE - 1;   // 130 granules: the last word is partly used
        DirtyBitmap bitmap = new DirtyBitmap(size, GRANULE);
        bitmap.markAll();
        assertEquals(130, bitmap.dirtyCount());
        assertEquals(size, bitmap.dirtyBytes());
        DirtySnapshot snapshot = bitmap.snapshotAndClear();
        assertEquals(size, snapshot.bytes());
        assertEquals(130, snapshot.nextClean(0));
        assertEquals(0, bitmap.dirtyCount());
    }

    @Test
    void shouldPutBackAFailedPassWithMerge() {
        DirtyBitmap bitmap = new DirtyBitmap(200L * GRANULE, GRANULE);
        bitmap.markGranules(5, 70);
        DirtySnapshot failedPass = bitmap.snapshotAndClear();
        bitmap.markGranules(150, 151);   // a write that came in meanwhile
        bitmap.merge(failedPass);
        DirtySnapshot next = bitmap.snapshotAndClear();
        assertEquals(66, next.count());
        assertTrue(next.isDirty(5) && next.isDirty(69) && next.isDirty(150));
        assertFalse(next.isDirty(70) || next.isDirty(4));
        assertEquals(65, failedPass.count(), "a snapshot is not changed by later marks or merges");
    }

    @Test
    void shouldPeekWithoutClearing() {
        DirtyBitmap bitmap = new DirtyBitmap(10L * GRANULE, GRANULE);
        bitmap.markGranules(2, 4);
        assertEquals(2, bitmap.peek().count());
        assertEquals(2, bitmap.dirtyCount());
        bitmap.markGranules(9, 10);
        assertEquals(3, bitmap.snapshotAndClear().count());
        assertEquals(0, bitmap.peek().count());
    }

    @Test
    void shouldRejectBadGeometry() {
        assertThrows(IllegalArgumentException.class, () -> new DirtyBitmap(-1, GRANULE));
        assertThrows(IllegalArgumentException.class, () -> new DirtyBitmap(GRANULE, 256));
        assertThrows(IllegalArgumentException.class, () -> new DirtyBitmap(GRANULE, 3000));
        assertEquals(0, new DirtyBitmap(0, GRANULE).granuleCount());
    }

    @Test
    void shouldKeepEveryConcurrentMarkInTheSameWords() throws Exception {
        // 4 threads mark interleaved granules (g % 4 == thread), so they race on every word
        int threads = 4;
        long granules = 64 * 64;
        DirtyBitmap bitmap = new DirtyBitmap(granules * GRANULE, GRANULE);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        ThreadFactory factory = Threads.platform("marker");
        List<Thread> started = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int lane = t;
            Thread thread = factory.newThread(() -> {
                try {
                    for (long g = lane; g < granules; g += threads) {
                        bitmap.markRange(g * GRANULE, 1);
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            thread.start();
            started.add(thread);
        }
        for (Thread thread : started) {
            thread.join(10_000);
            assertFalse(thread.isAlive(), thread.getName() + " finished");
        }
        assertEquals(null, failure.get());
        assertEquals(granules, bitmap.dirtyCount());
    }

    static List<Long> dirtyGranules(DirtySnapshot snapshot) {
        List<Long> granules = new ArrayList<>();
        for (long g = snapshot.nextDirty(0); g >= 0; g = snapshot.nextDirty(g + 1)) {
            granules.add(g);
        }
        return granules;
    }
}
