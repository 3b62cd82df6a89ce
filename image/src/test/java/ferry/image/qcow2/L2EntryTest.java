package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class L2EntryTest {
    @Test
    void shouldDecodeStandardEntries() {
        assertEquals(L2Entry.Kind.UNALLOCATED, L2Entry.kind(0, true));
        long normal = 0x8000_0000_0005_0000L; // COPIED | host 0x50000
        assertEquals(L2Entry.Kind.NORMAL, L2Entry.kind(normal, true));
        assertEquals(0x50000, L2Entry.hostOffset(normal));
        assertEquals(normal, L2Entry.normal(0x50000));
        assertEquals(L2Entry.Kind.ZERO_PLAIN, L2Entry.kind(1, true));
        assertEquals(L2Entry.Kind.ZERO_ALLOCATED, L2Entry.kind(normal | 1, true));
        assertEquals(L2Entry.Kind.NORMAL, L2Entry.kind(normal | 1, false), "v2 has no zero flag");
        assertEquals(L2Entry.Kind.UNALLOCATED, L2Entry.kind(1, false));
    }

    @Test
    void shouldDecodeCompressedEntryFor64KiBClusters() {
        // cluster_bits 16: x = 62 - 8 = 54; offset in bits 0..53, sectors-1 in bits 54..61.
        long entry = L2Entry.COMPRESSED | (3L << 54) | 0x12_3456L;
        assertEquals(L2Entry.Kind.COMPRESSED, L2Entry.kind(entry, true));
        assertEquals(0x12_3456L, L2Entry.compressedOffset(entry, 16));
        assertEquals(4, L2Entry.compressedSectors(entry, 16));
        assertEquals(4 * 512 - 0x56, L2Entry.compressedLength(entry, 16));
    }

    @Test
    void shouldDecodeCompressedEntryForSmallestAndLargestClusters() {
        // cluster_bits 9: x = 61, one bit of sector count. cluster_bits 21: x = 49, 13 bits.
        long small = L2Entry.COMPRESSED | (1L << 61) | 0x400;
        assertEquals(0x400, L2Entry.compressedOffset(small, 9));
        assertEquals(2, L2Entry.compressedSectors(small, 9));
        long large = L2Entry.COMPRESSED | (0x1fffL << 49) | 0x1_0000_0200L;
        assertEquals(0x1_0000_0200L, L2Entry.compressedOffset(large, 21));
        assertEquals(0x2000, L2Entry.compressedSectors(large, 21));
    }
}
