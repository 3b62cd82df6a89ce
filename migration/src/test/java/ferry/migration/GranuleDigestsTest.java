package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The digest scheme both ends compare before the VM may run on the destination. */
class GranuleDigestsTest {
    private static final int GRANULE = 4096;
    private static final int GROUP_BYTES = GranuleDigests.GROUP_GRANULES * GRANULE;   // 4 MiB

    private static byte[] randomBytes(int length, long seed) {
        byte[] bytes = new byte[length];
        new Random(seed).nextBytes(bytes);
        return bytes;
    }

    @Test
    void shouldGiveSameGroupDigestsForSameData() {
        long size = 3L * GROUP_BYTES + 5 * GRANULE;
        byte[] data = randomBytes((int) size, 1);
        GranuleDigests a = new GranuleDigests(size, GRANULE);
        GranuleDigests b = new GranuleDigests(size, GRANULE);
        a.recordData(0, ByteBuffer.wrap(data));
        for (int offset = 0; offset < size; offset += 16 * GRANULE) {       // the same bytes, sent in other runs
            int length = (int) Math.min(16 * GRANULE, size - offset);
            b.recordData(offset / GRANULE, ByteBuffer.wrap(data, offset, length));
        }
        assertEquals(4, a.groupDigests().length);
        assertArrayEquals(a.groupDigests(), b.groupDigests());
        assertEquals(-1, GranuleDigests.firstMismatch(a.groupDigests(), b.groupDigests()));
    }

    @Test
    void shouldFindTheGroupWithOneChangedByte() {
        long size = 4L * GROUP_BYTES;
        byte[] data = randomBytes((int) size, 2);
        GranuleDigests a = new GranuleDigests(size, GRANULE);
        a.recordData(0, ByteBuffer.wrap(data));
        int changedAt = 2 * GROUP_BYTES + 12345;
        data[changedAt] ^= 1;
        GranuleDigests b = new GranuleDigests(size, GRANULE);
        b.recordData(0, ByteBuffer.wrap(data));
        assertEquals(2, GranuleDigests.firstMismatch(a.groupDigests(), b.groupDigests()));
        assertEquals("bytes 0x800000..0xc00000", a.describeGroup(2));
    }

    @Test
    void shouldSeeAGranuleNeverSentAsDifferent() {
        long size = 2L * GROUP_BYTES;
        GranuleDigests sent = new GranuleDigests(size, GRANULE);
        GranuleDigests dropped = new GranuleDigests(size, GRANULE);
        byte[] granule = randomBytes(GRANULE, 3);
        sent.recordData(1500, ByteBuffer.wrap(granule));
        assertEquals(1, GranuleDigests.firstMismatch(sent.groupDigests(), dropped.groupDigests()));
        // even a granule of zeroes that was sent differs from one that never was (0 = never sent)
        GranuleDigests zeroSent = new GranuleDigests(size, GRANULE);
        zeroSent.recordZero(10, 1);
        assertEquals(0, GranuleDigests.firstMismatch(zeroSent.groupDigests(), dropped.groupDigests()));
    }

    @Test
    void shouldTreatZeroRecordedAndDataRecordedZeroesAlike() {
        long size = GROUP_BYTES + 3 * GRANULE + 100;           // short last granule of 100 bytes
        GranuleDigests asZero = new GranuleDigests(size, GRANULE);
        GranuleDigests asData = new GranuleDigests(size, GRANULE);
        long granules = (size + GRANULE - 1) / GRANULE;
        asZero.recordZero(0, granules);
        asData.recordData(0, ByteBuffer.allocateDirect((int) size));
        assertArrayEquals(asZero.groupDigests(), asData.groupDigests());
        // and for another granule size, whose zero digest is cached in the other slot
        GranuleDigests big = new GranuleDigests(1 << 20, 65536);
        GranuleDigests bigData = new GranuleDigests(1 << 20, 65536);
        big.recordZero(0, 16);
        bigData.recordData(0, ByteBuffer.allocate(1 << 20));
        assertArrayEquals(big.groupDigests(), bigData.groupDigests());
        assertArrayEquals(asZero.groupDigests(), asData.groupDigests());
    }

    @Test
    void shouldHandleAShortLastGranule() {
        long size = 10L * GRANULE + 1000;
        GranuleDigests d = new GranuleDigests(size, GRANULE);
        assertEquals(GRANULE, d.granuleLength(9));
        assertEquals(1000, d.granuleLength(10));
        byte[] tail = randomBytes(1000, 4);
        d.recordData(10, ByteBuffer.wrap(tail));
        GranuleDigests same = new GranuleDigests(size, GRANULE);
        same.recordData(10, ByteBuffer.wrap(tail.clone()));
        assertArrayEquals(d.groupDigests(), same.groupDigests());
        tail[999] ^= 0x40;
        GranuleDigests other = new GranuleDigests(size, GRANULE);
        other.recordData(10, ByteBuffer.wrap(tail));
        assertEquals(0, GranuleDigests.firstMismatch(d.groupDigests(), other.groupDigests()));
        // zeroes of different lengths differ: the length is mixed into the digest
        GranuleDigests shortZero = new GranuleDigests(size, GRANULE);
        shortZero.recordZero(10, 1);
        GranuleDigests fullZero = new GranuleDigests(11L * GRANULE, GRANULE);
        fullZero.recordZero(10, 1);
        assertNotEquals(shortZero.groupDigests()[0], fullZero.groupDigests()[0]);
    }

    @Test
    void shouldReportMismatchWhenGroupCountsDiffer() {
        assertEquals(1, GranuleDigests.firstMismatch(new int[] {5}, new int[] {5, 6}));
        assertEquals(0, GranuleDigests.firstMismatch(new int[0], new int[] {5}));
    }

    @Test
    void shouldKeepASixteenTibDiskInAFewMibUntilDataArrives() {
        long size = 16L << 40;
        int granule = 8192;                                    // what the source picks for 16 TiB (MigrationWire.smallestGranuleFor)
        GranuleDigests d = new GranuleDigests(size, granule);
        assertEquals(2L << 20, GranuleDigests.groups(size, granule));
        assertTrue(GranuleDigests.tableBytes(size, granule) <= 17L << 20, "page table and change marks: 8 bytes and 1 bit per group");
        assertEquals(0, d.pageBytesInUse());
        d.recordData(0, ByteBuffer.allocate(1 << 20));         // 1 MiB at the start
        d.recordZero((size - granule) / granule, 1);           // the last granule
        assertEquals(2 * (GranuleDigests.PAGE_BYTES + 16), d.pageBytesInUse(), "two groups touched, two pages");
        int[] groups = d.groupDigests();
        assertEquals(2 << 20, groups.length);
        assertEquals(groups[1], groups[groups.length / 2], "untouched groups share one digest");
        GranuleDigests flat = new GranuleDigests(size, granule);
        flat.recordData(0, ByteBuffer.allocate(1 << 20));
        flat.recordZero((size - granule) / granule, 1);
        assertArrayEquals(groups, flat.groupDigests());
    }

    @Test
    void shouldHandOutChangedPagesOnceAsCopiesInGroupOrder() {
        GranuleDigests d = new GranuleDigests(8L * GROUP_BYTES, GRANULE);
        assertEquals(List.of(), d.takeChangedPages(), "nothing recorded, nothing changed");
        d.recordData(5L * 1024 + 7, ByteBuffer.wrap(randomBytes(GRANULE, 5)));
        d.recordZero(3, 2);
        d.recordZero(1024 + 1023, 2);                       // crosses from group 1 into group 2
        List<GranuleDigests.Page> pages = d.takeChangedPages();
        assertEquals(List.of(0, 1, 2, 5), pages.stream().map(GranuleDigests.Page::group).toList());
        int[] group5 = pages.get(3).digests();
        assertNotEquals(0, group5[7]);
        assertEquals(0, group5[6]);
        assertEquals(List.of(), d.takeChangedPages(), "the marks are cleared");

        int before = group5[7];
        d.recordData(5L * 1024 + 7, ByteBuffer.wrap(randomBytes(GRANULE, 6)));
        assertEquals(before, group5[7], "a page handed out does not alias the live one");
        List<GranuleDigests.Page> again = d.takeChangedPages();
        assertEquals(1, again.size());
        assertEquals(5, again.get(0).group());
        assertNotEquals(before, again.get(0).digests()[7]);
        assertNotSame(group5, again.get(0).digests());
    }

    @Test
    void shouldLoadPagesWithoutMarkingThemAndGiveTheSameDigests() {
        long size = 3L * GROUP_BYTES + 100;                 // a fourth group with one short granule
        GranuleDigests original = new GranuleDigests(size, GRANULE);
        original.recordData(0, ByteBuffer.wrap(randomBytes(2 * GRANULE, 7)));
        original.recordZero(3L * 1024, 1);                  // the short last granule
        GranuleDigests loaded = new GranuleDigests(size, GRANULE);
        for (GranuleDigests.Page page : original.takeChangedPages()) {
            loaded.loadPage(page.group(), page.digests());
        }
        assertArrayEquals(original.groupDigests(), loaded.groupDigests());
        assertEquals(List.of(), loaded.takeChangedPages(), "loaded pages are what the journal already holds");
        assertEquals(2 * (GranuleDigests.PAGE_BYTES + 16), loaded.pageBytesInUse());

        loaded.loadPage(0, new int[GranuleDigests.GROUP_GRANULES]);
        assertEquals(GranuleDigests.PAGE_BYTES + 16, loaded.pageBytesInUse(), "an all-zero page leaves the group untouched");
        assertEquals(new GranuleDigests(size, GRANULE).groupDigests()[0], loaded.groupDigests()[0]);
        assertEquals(1, loaded.touchedGranules());

        int[] pastTheEnd = new int[GranuleDigests.GROUP_GRANULES];
        pastTheEnd[1] = 42;                                 // the last group has one granule only
        assertThrows(IllegalArgumentException.class, () -> loaded.loadPage(3, pastTheEnd));
        assertThrows(IllegalArgumentException.class, () -> loaded.loadPage(4, new int[GranuleDigests.GROUP_GRANULES]));
        assertThrows(IllegalArgumentException.class, () -> loaded.loadPage(0, new int[3]));
    }

    @Test
    void shouldCountTouchedGranulesAndTheirExactBytes() {
        long size = 2L * GROUP_BYTES + 100;                 // last granule: 100 bytes
        GranuleDigests d = new GranuleDigests(size, GRANULE);
        assertEquals(0, d.touchedGranules());
        assertEquals(0, d.touchedBytes());
        d.recordData(10, ByteBuffer.wrap(randomBytes(3 * GRANULE, 8)));
        d.recordZero(11, 5);                                // 11, 12 again, and 13..15 new
        assertEquals(6, d.touchedGranules(), "a granule recorded twice counts once");
        assertEquals(6L * GRANULE, d.touchedBytes());
        d.recordData(d.granules() - 1, ByteBuffer.wrap(randomBytes(100, 9)));
        assertEquals(7, d.touchedGranules());
        assertEquals(6L * GRANULE + 100, d.touchedBytes(), "the short last granule counts its 100 bytes");

        GranuleDigests loaded = new GranuleDigests(size, GRANULE);
        for (GranuleDigests.Page page : d.takeChangedPages()) {
            loaded.loadPage(page.group(), page.digests());
        }
        assertEquals(7, loaded.touchedGranules());
        assertEquals(6L * GRANULE + 100, loaded.touchedBytes());
        loaded.loadPage(2, new int[GranuleDigests.GROUP_GRANULES]);   // replacing the last group forgets its granule
        assertEquals(6, loaded.touchedGranules());
        assertEquals(6L * GRANULE, loaded.touchedBytes());
    }
}
