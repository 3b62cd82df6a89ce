package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Random;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;

class GranuleHashTest {

    private static ByteBuffer pattern(int length, int factor, int add) {
        ByteBuffer buffer = ByteBuffer.allocate(length);
        for (int i = 0; i < length; i++) {
            buffer.put((byte) (i * factor + add));
        }
        return buffer.flip();
    }

    /** Reference values from xxhsum -H1 (Debian's xxhash 0.8.1), for every branch: no stripe, tails of 8, 4 and 1 bytes, stripes. */
    @Test
    void shouldMatchTheReferenceXxh64() {
        assertEquals(0xEF46DB3751D8E999L, GranuleHash.xxh64(ByteBuffer.allocate(0)));
        assertEquals(0x44BC2CF5AD770999L, GranuleHash.xxh64(ByteBuffer.wrap("abc".getBytes(StandardCharsets.US_ASCII))));
        assertEquals(0x17BB1103C92C502FL, GranuleHash.xxh64(ByteBuffer.allocate(100)));
        assertEquals(0x3FAAD671307E3373L, GranuleHash.xxh64(pattern(45, 13, 1)));
        assertEquals(0xE21174BE82DC78D9L, GranuleHash.xxh64(pattern(4096, 31, 7)));
        ByteBuffer direct = ByteBuffer.allocateDirect(4096 + 3);
        direct.position(3).put(pattern(4096, 31, 7)).position(3);
        assertEquals(0xE21174BE82DC78D9L, GranuleHash.xxh64(direct.slice()), "a direct buffer at an unaligned offset");
        assertEquals(3, direct.position(), "the buffer is not moved");
    }

    /**
     * Blocks that end with the CRC32C of their other bytes (as the demo guest's records, filesystem metadata and
     * database pages do) all share one CRC32C; their granule digests must still differ.
     */
    @Test
    void shouldTellApartBlocksThatCarryTheirOwnCrc() {
        Random random = new Random(3);
        int[] digests = new int[2];
        long[] crcs = new long[2];
        for (int i = 0; i < 2; i++) {
            byte[] block = new byte[4096];
            random.nextBytes(block);
            CRC32C crc = new CRC32C();
            crc.update(block, 0, 4092);
            ByteBuffer.wrap(block).order(ByteOrder.LITTLE_ENDIAN).putInt(4092, (int) crc.getValue());
            CRC32C whole = new CRC32C();
            whole.update(block);
            crcs[i] = whole.getValue();
            digests[i] = GranuleDigests.digestOfGranule(ByteBuffer.wrap(block));
        }
        assertEquals(crcs[0], crcs[1], "the premise: CRC32C cannot tell such blocks apart");
        assertNotEquals(digests[0], digests[1]);
    }
}
