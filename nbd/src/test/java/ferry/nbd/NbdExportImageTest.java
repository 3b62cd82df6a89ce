package ferry.nbd;

import static org.junit.jupiter.api.Assertions.*;

import ferry.image.Extent;
import ferry.image.ImageException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * NbdExportImage against Ferry's own NbdServer in-process (base:allocation only; QEMU's contexts are
 * covered by NbdExportImageIT): requests split at the 32 MiB maximum, a map longer than one reply
 * (the server sends at most 8192 descriptors), errors mapped to ImageException kinds.
 */
class NbdExportImageTest {
    static final int SIZE = 40 << 20;   // above the 32 MiB maximum block size
    @TempDir Path tmp;
    MemoryImage image;
    NbdServer server;
    Path socket;

    @BeforeEach
    void start() throws IOException {
        image = new MemoryImage(SIZE, false);
        socket = tmp.resolve("nbd.sock");
        server = NbdServer.unix(socket, List.of(new NbdExport("disk", image, false),
                new NbdExport("ro", new MemoryImage(1 << 20, true), true))).start();
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
    }

    @Test
    void shouldSplitReadsAndWritesLargerThanTheMaximumBlockSize() throws IOException {
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "raw", false)) {
            assertEquals(SIZE, nbd.size());
            assertEquals("nbd disk on " + socket, nbd.describe());
            assertEquals("raw", nbd.format());
            ByteBuffer src = NbdServerTest.pattern(SIZE - 4096, 3);
            nbd.write(4096, src);
            assertFalse(src.hasRemaining());
            ByteBuffer dst = ByteBuffer.allocateDirect(SIZE);
            nbd.read(0, dst);
            assertFalse(dst.hasRemaining());
            assertEquals(0, dst.get(4095));
            assertEquals(NbdServerTest.pattern(SIZE - 4096, 3), dst.position(4096));
            nbd.flush();
        }
    }

    @Test
    void shouldMapZeroesAndHolesAndLoopPastAShortReply() throws IOException {
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "raw", false)) {
            // 4500 data granules with holes between: 9000 descriptors, more than one reply carries (8192)
            for (int i = 0; i < 4500; i++) {
                nbd.write(i * 8192L, NbdServerTest.pattern(4096, i));
            }
            long a = 4500 * 8192L;
            long b = a + (1 << 20);
            nbd.write(a, NbdServerTest.pattern(2 << 20, 1));
            nbd.writeZeroes(a, 1 << 20, true);    // may unmap: MemoryImage punches a hole
            nbd.writeZeroes(b, 1 << 20, false);   // NO_HOLE: stays allocated
            List<Extent> map = new ArrayList<>();
            int requests = 0;
            for (long pos = 0; pos < SIZE; requests++) {
                List<Extent> part = nbd.extents(pos, SIZE - pos);
                assertEquals(pos, part.getFirst().offset());
                map.addAll(part);
                pos = part.getLast().end();
            }
            assertTrue(requests > 1, "the server stops after 8192 descriptors");
            for (int i = 0; i < 4500; i++) {
                assertEquals(Extent.Type.DATA, typeAt(map, i * 8192L), "granule " + i);
                assertEquals(Extent.Type.HOLE, typeAt(map, i * 8192L + 4096), "gap " + i);
            }
            assertEquals(Extent.Type.HOLE, typeAt(map, a));
            assertEquals(Extent.Type.DATA, typeAt(map, b));
            ByteBuffer zeroes = ByteBuffer.allocate(2 << 20);
            nbd.read(a, zeroes);
            assertEquals(ByteBuffer.allocate(2 << 20), zeroes.flip());
            assertEquals(Extent.Type.HOLE, typeAt(map, SIZE - 1));
        }
    }

    @Test
    void shouldMapRefusalsToImageErrorKinds() throws IOException {
        try (NbdExportImage ro = NbdExportImage.open(socket, "ro", "raw", false)) {
            assertTrue(ro.readOnly());
            ImageException e = assertThrows(ImageException.class, () -> ro.write(0, ByteBuffer.allocate(512)));
            assertEquals(ImageException.Kind.READ_ONLY, e.kind());
            assertTrue(e.getMessage().startsWith("write failed: export=ro socket=" + socket + " offset=0x0 length=512"), e.getMessage());
            e = assertThrows(ImageException.class, () -> ro.read(1 << 20, ByteBuffer.allocate(1)));
            assertEquals(ImageException.Kind.OUT_OF_BOUNDS, e.kind());
            e = assertThrows(ImageException.class, () -> ro.dirtyExtents("b0"));
            assertEquals(ImageException.Kind.UNSUPPORTED, e.kind());
            ro.read(0, ByteBuffer.allocate(512));   // still usable
        }
        ImageException e = assertThrows(ImageException.class, () -> NbdExportImage.open(socket, "disk", "raw", true));
        assertEquals(ImageException.Kind.UNSUPPORTED, e.kind());
        assertTrue(e.getMessage().contains("qemu:allocation-depth"), e.getMessage());
        e = assertThrows(ImageException.class, () -> NbdExportImage.open(socket, "nosuch", "raw", false));
        assertEquals(ImageException.Kind.IO, e.kind());
        assertTrue(e.getMessage().startsWith("nbd open failed: export=nosuch socket=" + socket), e.getMessage());
    }

    private static Extent.Type typeAt(List<Extent> map, long offset) {
        for (Extent e : map) {
            if (offset >= e.offset() && offset < e.end()) {
                return e.type();
            }
        }
        throw new AssertionError("no extent at " + offset);
    }
}
