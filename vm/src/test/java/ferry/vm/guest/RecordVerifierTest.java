package ferry.vm.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RecordVerifierTest {
    private static final long DISK_BYTES = 3 * (1 << 20) + 5 * GuestRecord.SIZE; // not a multiple of the 1 MiB chunk
    private static final long BOOT_ID = 0x9b6cab6546c1d7efL;

    @TempDir Path tmp;

    private Path disk() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        try (FileChannel ch = FileChannel.open(disk, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ch.truncate(0);
            ch.write(ByteBuffer.allocate(1), DISK_BYTES - 1);
        }
        return disk;
    }

    private static void put(Path disk, long offset, ByteBuffer block) throws Exception {
        try (FileChannel ch = FileChannel.open(disk, StandardOpenOption.WRITE)) {
            ch.write(block.clear(), offset);
        }
    }

    private static ByteBuffer record(long seq, long offset) {
        ByteBuffer block = ByteBuffer.allocate(GuestRecord.SIZE);
        GuestRecord.encode(block, seq, offset, BOOT_ID, 1_700_000_000_000_000_000L);
        return block;
    }

    @Test
    void shouldPassAnAllZeroDisk() throws Exception {
        assertEquals(new VerifyReport(0, 0, 0, Optional.empty()), RecordVerifier.verify(disk()));
    }

    @Test
    void shouldCountValidRecordsAndTheHighestSeq() throws Exception {
        Path disk = disk();
        long last = DISK_BYTES - GuestRecord.SIZE;
        put(disk, 0, record(7, 0));
        put(disk, 1 << 20, record(42, 1 << 20));
        put(disk, last, record(3, last));
        VerifyReport report = RecordVerifier.verify(disk);
        assertEquals(new VerifyReport(3, 42, 0, Optional.empty()), report);
        assertEquals(true, report.ok());
    }

    @Test
    void shouldDetectACorruptedRecord() throws Exception {
        Path disk = disk();
        ByteBuffer block = record(5, 8 * GuestRecord.SIZE);
        block.put(2000, (byte) (block.get(2000) ^ 0x01)); // one flipped bit in the payload
        put(disk, 8 * GuestRecord.SIZE, block);
        put(disk, 9 * GuestRecord.SIZE, record(6, 9 * GuestRecord.SIZE));
        assertEquals(new VerifyReport(1, 6, 1, Optional.of("offset=32768 reason=bad-checksum")), RecordVerifier.verify(disk));
    }

    @Test
    void shouldDetectARecordAtTheWrongOffset() throws Exception {
        Path disk = disk();
        put(disk, 12 * GuestRecord.SIZE, record(9, 11 * GuestRecord.SIZE)); // a misdirected write
        assertEquals(new VerifyReport(0, 0, 1, Optional.of("offset=49152 reason=wrong-offset")), RecordVerifier.verify(disk));
    }

    @Test
    void shouldDetectGarbageAndATornRecord() throws Exception {
        Path disk = disk();
        ByteBuffer garbage = ByteBuffer.allocate(GuestRecord.SIZE);
        garbage.put(100, (byte) 1);
        put(disk, 0, garbage);
        ByteBuffer torn = record(4, GuestRecord.SIZE);
        for (int i = 2048; i < GuestRecord.SIZE; i++) {
            torn.put(i, (byte) 0); // second half never reached the disk
        }
        put(disk, GuestRecord.SIZE, torn);
        VerifyReport report = RecordVerifier.verify(disk);
        assertEquals(new VerifyReport(0, 0, 2, Optional.of("offset=0 reason=bad-magic")), report);
        assertEquals(false, report.ok());
    }
}
