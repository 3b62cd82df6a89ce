package ferry.migration;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.UUID;
import java.util.zip.CRC32C;

/**
 * One header slot of a resume journal: its codec, big-endian, 512 bytes. The file around it, and why
 * there are two slots: {@link ResumeJournal}.
 * <pre>
 *  | magic "FERRYRSJ" | version u32 | sequence u64 | checkpoint i64 | migration id 16 bytes |
 *  0                  8             12             20               28                      44
 *  | granule size u32 | disk size u64 | created image u8 | started at, epoch ms i64 |
 *  44                 48              56                 57                         65
 *  | format length u8 | format, US-ASCII (<= 16) | disk id length u16 | disk id, UTF-8 (<= 256) | CRC32C u32 | zeroes |
 *  65                 66                         66+F                 68+F                      68+F+D       72+F+D   512
 * </pre>
 * The CRC32C covers every byte before it. A slot of zeroes is one never written.
 *
 * <p>Threads: none; values only.
 */
record JournalSlot(long sequence, long checkpoint, ResumeJournal.Identity identity) {
    static final int LENGTH = 512;
    static final int VERSION = 1;
    static final byte[] MAGIC = "FERRYRSJ".getBytes(StandardCharsets.US_ASCII);
    static final int VERSION_OFFSET = 8, SEQUENCE_OFFSET = 12, CHECKPOINT_OFFSET = 20, MIGRATION_ID_OFFSET = 28;
    static final int GRANULE_SIZE_OFFSET = 44, DISK_SIZE_OFFSET = 48, CREATED_IMAGE_OFFSET = 56, STARTED_AT_OFFSET = 57;
    static final int FORMAT_OFFSET = 65;
    static final int MAX_FORMAT_BYTES = 16, MAX_DISK_ID_BYTES = 256;

    /** What reading a slot found: a header, nothing usable, or a header of a format version this Ferry cannot read. */
    sealed interface Read permits Valid, Invalid, OtherVersion { }

    record Valid(JournalSlot slot) implements Read { }

    /** Why the slot cannot be used, for the message: "fails its checksum", "was never written", ... */
    record Invalid(String reason) implements Read { }

    record OtherVersion(long version) implements Read { }

    JournalSlot {
        if (sequence < 1 || checkpoint < -1) {
            throw new IllegalArgumentException("bad journal slot: sequence=" + sequence + " checkpoint=" + checkpoint);
        }
    }

    ByteBuffer encode() {
        byte[] format = identity.format().getBytes(StandardCharsets.US_ASCII);
        byte[] diskId = identity.diskId().getBytes(StandardCharsets.UTF_8);
        ByteBuffer out = ByteBuffer.allocateDirect(LENGTH).order(ByteOrder.BIG_ENDIAN);
        out.put(MAGIC).putInt(VERSION).putLong(sequence).putLong(checkpoint)
                .putLong(identity.migrationId().getMostSignificantBits()).putLong(identity.migrationId().getLeastSignificantBits())
                .putInt(identity.granuleSize()).putLong(identity.diskSize()).put((byte) (identity.createdImage() ? 1 : 0))
                .putLong(identity.startedAt().toEpochMilli())
                .put((byte) format.length).put(format).putShort((short) diskId.length).put(diskId);
        CRC32C crc = new CRC32C();
        crc.update(out.duplicate().flip());
        out.putInt((int) crc.getValue());
        return out.clear();
    }

    /** Reads the {@link #LENGTH} bytes {@code in} has remaining; never throws for bad bytes. */
    static Read decode(ByteBuffer in) {
        if (in.remaining() != LENGTH) {
            throw new IllegalArgumentException("a journal slot is " + LENGTH + " bytes, not " + in.remaining());
        }
        ByteBuffer slot = ByteBuffer.allocate(LENGTH).order(ByteOrder.BIG_ENDIAN);
        slot.put(in.duplicate()).clear();
        if (isZero(slot)) {
            return new Invalid("was never written");
        }
        if (!slot.slice(0, MAGIC.length).equals(ByteBuffer.wrap(MAGIC))) {
            return new Invalid("has no magic");
        }
        int formatLength = Byte.toUnsignedInt(slot.get(FORMAT_OFFSET));
        if (formatLength > MAX_FORMAT_BYTES) {
            return new Invalid("fails its checksum (format length " + formatLength + ")");
        }
        int diskIdOffset = FORMAT_OFFSET + 1 + formatLength;
        int diskIdLength = Short.toUnsignedInt(slot.getShort(diskIdOffset));
        if (diskIdLength > MAX_DISK_ID_BYTES) {
            return new Invalid("fails its checksum (disk id length " + diskIdLength + ")");
        }
        int crcOffset = diskIdOffset + 2 + diskIdLength;
        CRC32C crc = new CRC32C();
        crc.update(slot.slice(0, crcOffset));
        if ((int) crc.getValue() != slot.getInt(crcOffset)) {
            return new Invalid("fails its checksum");
        }
        long version = Integer.toUnsignedLong(slot.getInt(VERSION_OFFSET));
        if (version != VERSION) {
            return new OtherVersion(version);
        }
        return decodeFields(slot, formatLength, diskIdOffset, diskIdLength);
    }

    private static Read decodeFields(ByteBuffer slot, int formatLength, int diskIdOffset, int diskIdLength) {
        int created = Byte.toUnsignedInt(slot.get(CREATED_IMAGE_OFFSET));
        if (created > 1) {
            return new Invalid("has a bad created-image flag " + created);
        }
        try {
            String format = StandardCharsets.US_ASCII.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .decode(slot.slice(FORMAT_OFFSET + 1, formatLength)).toString();
            String diskId = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(slot.slice(diskIdOffset + 2, diskIdLength)).toString();
            UUID migrationId = new UUID(slot.getLong(MIGRATION_ID_OFFSET), slot.getLong(MIGRATION_ID_OFFSET + 8));
            var identity = new ResumeJournal.Identity(migrationId, diskId, slot.getLong(DISK_SIZE_OFFSET),
                    slot.getInt(GRANULE_SIZE_OFFSET), format, created == 1, Instant.ofEpochMilli(slot.getLong(STARTED_AT_OFFSET)));
            return new Valid(new JournalSlot(slot.getLong(SEQUENCE_OFFSET), slot.getLong(CHECKPOINT_OFFSET), identity));
        } catch (CharacterCodingException e) {
            return new Invalid("has a format or disk id that is not text (" + e.getMessage() + ")");
        } catch (IllegalArgumentException e) {
            return new Invalid("has fields out of range (" + e.getMessage() + ")");   // a valid CRC over values no Ferry writes
        }
    }

    private static boolean isZero(ByteBuffer slot) {
        for (int i = 0; i < LENGTH; i += Long.BYTES) {
            if (slot.getLong(i) != 0) {
                return false;
            }
        }
        return true;
    }
}
