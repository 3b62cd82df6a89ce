package ferry.vm.guest;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * The demo guest's disk record: one self-checking 4 KiB block, written by {@code guest/ferry-disk.c}.
 * The spec both sides follow is guest/README.md ("The record format"). Little-endian.
 * <pre>
 *  | magic "FERRYREC" | version u32 | size u32 | seq u64 | offset u64 | boot id u64 | time ns u64 | payload ... | crc32c u32 |
 *  0                  8             12         16        24           32            40            48            4092       4096
 * </pre>
 */
public final class GuestRecord {
    public static final int SIZE = 4096;
    public static final int MAGIC_OFFSET = 0, VERSION_OFFSET = 8, SIZE_OFFSET = 12, SEQ_OFFSET = 16,
            DISK_OFFSET_OFFSET = 24, BOOT_ID_OFFSET = 32, TIME_NS_OFFSET = 40, PAYLOAD_OFFSET = 48, CRC_OFFSET = 4092;
    public static final int VERSION = 1;
    public static final byte[] MAGIC = "FERRYREC".getBytes(StandardCharsets.US_ASCII);

    private GuestRecord() {}

    /** What one 4 KiB block holds. */
    public sealed interface Block {
        record Zero() implements Block {}

        record Valid(long seq, long bootId) implements Block {}

        /** Not a valid record; {@code reason} is the first failed check as guest/README.md names it. */
        record Bad(String reason) implements Block {}
    }

    /**
     * Classifies the {@link #SIZE} bytes of {@code block} from its position (which is left unchanged),
     * found at byte {@code diskOffset} of the disk.
     */
    public static Block check(ByteBuffer block, long diskOffset) {
        ByteBuffer b = block.slice(block.position(), SIZE).order(ByteOrder.LITTLE_ENDIAN);
        if (allZero(b)) {
            return new Block.Zero();
        }
        for (int i = 0; i < MAGIC.length; i++) {
            if (b.get(MAGIC_OFFSET + i) != MAGIC[i]) {
                return new Block.Bad("bad-magic");
            }
        }
        if (b.getInt(VERSION_OFFSET) != VERSION) {
            return new Block.Bad("bad-version");
        }
        if (b.getInt(SIZE_OFFSET) != SIZE) {
            return new Block.Bad("bad-record-size");
        }
        if (b.getInt(CRC_OFFSET) != (int) crc(b)) {
            return new Block.Bad("bad-checksum");
        }
        if (b.getLong(DISK_OFFSET_OFFSET) != diskOffset) {
            return new Block.Bad("wrong-offset");
        }
        long seq = b.getLong(SEQ_OFFSET);
        if (seq == 0) {
            return new Block.Bad("zero-seq");
        }
        return new Block.Valid(seq, b.getLong(BOOT_ID_OFFSET));
    }

    /** Writes a valid record into {@code dst} at its position (unchanged) the way ferry-disk does. */
    public static void encode(ByteBuffer dst, long seq, long diskOffset, long bootId, long timeNs) {
        ByteBuffer b = dst.slice(dst.position(), SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC_OFFSET, MAGIC);
        b.putInt(VERSION_OFFSET, VERSION);
        b.putInt(SIZE_OFFSET, SIZE);
        b.putLong(SEQ_OFFSET, seq);
        b.putLong(DISK_OFFSET_OFFSET, diskOffset);
        b.putLong(BOOT_ID_OFFSET, bootId);
        b.putLong(TIME_NS_OFFSET, timeNs);
        long s = seq ^ bootId ^ 0xA5A5A5A5A5A5A5A5L;
        if (s == 0) {
            s = 1;
        }
        for (int i = PAYLOAD_OFFSET; i + 8 <= CRC_OFFSET; i += 8) {
            s ^= s << 13;
            s ^= s >>> 7;
            s ^= s << 17;
            b.putLong(i, s);
        }
        b.putInt(CRC_OFFSET, (int) crc(b));
    }

    private static long crc(ByteBuffer b) {
        CRC32C crc = new CRC32C();
        crc.update(b.slice(0, CRC_OFFSET));
        return crc.getValue();
    }

    private static boolean allZero(ByteBuffer b) {
        for (int i = 0; i < SIZE; i += 8) {
            if (b.getLong(i) != 0) {
                return false;
            }
        }
        return true;
    }
}
