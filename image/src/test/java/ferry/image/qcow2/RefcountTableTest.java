package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RefcountTableTest {
    @TempDir Path tmp;

    private RefcountTable fresh(String name, int clusterSize) throws Exception {
        Path disk = tmp.resolve(name);
        Qcow2Layout.create(disk, 1 << 20, clusterSize, Optional.empty());
        HostFile file = HostFile.open(disk, false);
        ByteBuffer first = ByteBuffer.allocate(clusterSize);
        file.read(0, first);
        return RefcountTable.load(file, Qcow2Header.parse(first.flip(), name));
    }

    @Test
    void shouldCountTheMetadataOfANewImage() throws Exception {
        RefcountTable t = fresh("a.qcow2", 65536);
        // header, refcount table, one refcount block, one L1 cluster
        for (int c = 0; c < 4; c++) {
            assertEquals(1, t.refcount(c), "cluster " + c);
        }
        assertEquals(0, t.refcount(4));
        assertEquals(32768, t.entriesPerBlock(), "64 KiB of 16-bit entries");
    }

    @Test
    void shouldAllocateDistinctClustersAndReuseReleasedOnes() throws Exception {
        RefcountTable t = fresh("b.qcow2", 4096);
        Set<Long> seen = new HashSet<>();
        for (int i = 0; i < 100; i++) {
            assertTrue(seen.add(t.allocate()));
        }
        long victim = 4096L * 50;
        assertTrue(seen.contains(victim));
        t.release(victim, 4096);
        assertEquals(0, t.refcount(50));
        assertEquals(victim, t.allocate(), "the lowest free cluster is reused first");
        assertEquals(1, t.refcount(50));
    }

    @Test
    void shouldRefuseToReleaseAFreeCluster() throws Exception {
        RefcountTable t = fresh("c.qcow2", 4096);
        ImageException e = assertThrows(ImageException.class, () -> t.release(4096L * 200, 4096));
        assertEquals(ImageException.Kind.CORRUPT, e.kind());
    }

    @Test
    void shouldPlaceNewRefcountBlocksInsideTheRangeTheyCountAndGrowTheTable() throws Exception {
        RefcountTable t = fresh("d.qcow2", 512); // 256 clusters per block, 64 blocks per table cluster
        long covered = t.coveredClusters();
        assertEquals(64 * 256, covered);
        long last = 0;
        for (long i = 0; i < covered + 1000 && t.tableClusters() == 1; i++) {
            last = t.allocate();
        }
        assertTrue(t.tableClusters() >= 2, "table grew");
        assertTrue(t.coveredClusters() > covered);
        assertEquals(1, t.refcount(t.tableOffset() >> 9), "the new table counts itself");
        assertEquals(512, last, "the old table (cluster 1) was released and reused by the allocation that grew");
        assertEquals(1, t.refcount(1));
    }

    @Test
    void shouldReleaseEveryClusterACompressedRangeTouches() throws Exception {
        RefcountTable t = fresh("e.qcow2", 512);
        long a = t.allocate(), b = t.allocate();
        assertEquals(a + 512, b);
        t.release(a + 100, 600); // bytes a+100 .. a+699 touch both clusters
        assertEquals(0, t.refcount(a >> 9));
        assertEquals(0, t.refcount(b >> 9));
    }
}
