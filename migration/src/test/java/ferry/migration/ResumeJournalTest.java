package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.UUID;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The destination's resume journal: its file, its two header slots, and what survives a crash at each step. */
class ResumeJournalTest {
    private static final int GRANULE = 4096;
    private static final long MIB = 1 << 20;
    private static final UUID MIGRATION = UUID.fromString("6f1d2c3b-4a59-4e8d-9c7b-112233445566");
    private static final Instant STARTED = Instant.parse("2025-03-01T12:00:00.123456Z");

    @TempDir
    Path dir;

    private static ResumeJournal.Identity identity(String diskId, long size) {
        return new ResumeJournal.Identity(MIGRATION, diskId, size, GRANULE, "qcow2", true, STARTED);
    }

    private static void record(GranuleDigests digests, long granule, long seed) {
        byte[] data = new byte[GRANULE];
        new Random(seed).nextBytes(data);
        digests.recordData(granule, ByteBuffer.wrap(data));
    }

    private ResumeJournal reopen(Path image) throws IOException {
        return ResumeJournal.open(image).orElseThrow();
    }

    /** Overwrites {@code bytes} at {@code offset} of the file, as a crash or a bad sector would leave it. */
    private static void overwrite(Path file, long offset, byte[] bytes) throws IOException {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE)) {
            channel.write(ByteBuffer.wrap(bytes), offset);
        }
    }

    @Test
    void shouldCreateAPrivateJournalBesideTheImageAndReadItsIdentityBack() throws Exception {
        Path image = dir.resolve("vda.qcow2");
        Path path = ResumeJournal.pathFor(image);
        assertEquals(dir.resolve("vda.qcow2.ferry-resume"), path);
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 64 * MIB))) {
            assertEquals(-1, journal.checkpoint());
            assertEquals(path, journal.path());
        }
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(path)));
        assertEquals(JournalSlot.LENGTH, Files.size(path), "slot 0 only: slot 1 and the pages are holes");
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(identity("virtio0", 64 * MIB), journal.identity());
            assertEquals(Instant.parse("2025-03-01T12:00:00.123Z"), journal.identity().startedAt(), "milliseconds, as in the file");
            assertEquals(-1, journal.checkpoint());
            GranuleDigests digests = journal.loadDigests();
            assertEquals(0, digests.touchedGranules());
            assertEquals(0, digests.pageBytesInUse());
        }
        assertEquals(Optional.empty(), ResumeJournal.open(dir.resolve("other.raw")), "no journal, nothing to resume");
    }

    @Test
    void shouldReopenAtTheLastCommittedCheckpointWithItsDigests() throws Exception {
        Path image = dir.resolve("vda.raw");
        long size = 64 * MIB + 100;                                      // 17 groups, a short last granule
        GranuleDigests digests = new GranuleDigests(size, GRANULE);
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", size))) {
            record(digests, 0, 1);
            record(digests, 3 * 1024 + 5, 2);
            digests.recordZero(digests.granules() - 1, 1);
            journal.writePages(digests.takeChangedPages());
            journal.syncData();
            journal.commitHeader(0);
            record(digests, 3 * 1024 + 5, 3);                            // rewritten, in a group already in the file
            record(digests, 4 * 1024, 4);
            journal.writePages(digests.takeChangedPages());
            journal.syncData();
            journal.commitHeader(7);
            assertEquals(7, journal.checkpoint());
            assertThrows(IllegalArgumentException.class, () -> journal.commitHeader(7), "checkpoints only go forward");
        }
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(7, journal.checkpoint());
            GranuleDigests loaded = journal.loadDigests();
            assertArrayEquals(digests.groupDigests(), loaded.groupDigests());
            assertEquals(4, loaded.touchedGranules());
            assertEquals(3L * GRANULE + 100, loaded.touchedBytes());
            assertEquals(List.of(), loaded.takeChangedPages(), "what was loaded is already in the journal");
        }
    }

    @Test
    void shouldFallBackToTheOlderHeaderCopyWhenTheNewerIsTorn() throws Exception {
        Path image = dir.resolve("vda.raw");
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 8 * MIB))) {
            journal.commitHeader(0);                                     // slot 1, sequence 2
            journal.commitHeader(1);                                     // slot 0, sequence 3
        }
        Path path = ResumeJournal.pathFor(image);
        byte[] intact = Files.readAllBytes(path);
        overwrite(path, JournalSlot.CHECKPOINT_OFFSET + 3, new byte[] {0x55});   // one byte of slot 0 changed
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(0, journal.checkpoint(), "slot 0 fails its CRC: slot 1 wins");
            journal.commitHeader(2);                                     // rewrites slot 0, the torn one
        }
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(2, journal.checkpoint());
        }
        Files.write(path, intact);
        overwrite(path, 40, new byte[JournalSlot.LENGTH - 40]);          // only slot 0's first 40 bytes reached the disk
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(0, journal.checkpoint());
        }
    }

    @Test
    void shouldRefuseAJournalWhoseHeaderCopiesBothFailTheirChecksum() throws Exception {
        Path image = dir.resolve("vda.raw");
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 8 * MIB))) {
            journal.commitHeader(0);
        }
        Path path = ResumeJournal.pathFor(image);
        overwrite(path, JournalSlot.SEQUENCE_OFFSET, new byte[] {9});
        overwrite(path, JournalSlot.LENGTH + JournalSlot.DISK_SIZE_OFFSET, new byte[] {9});
        JournalException e = assertThrows(JournalException.class, () -> ResumeJournal.open(image));
        assertEquals("journal " + path + " is damaged (both header copies fail their checksum): remove it and migrate without -r",
                e.getMessage());
        assertEquals(path, e.journal());

        overwrite(path, 0, new byte[JournalSlot.LENGTH]);
        assertEquals("journal " + path + " is damaged (header copy 0 was never written, header copy 1 fails its checksum):"
                + " remove it and migrate without -r", assertThrows(JournalException.class, () -> ResumeJournal.open(image)).getMessage());
    }

    @Test
    void shouldReopenAtTheOldCheckpointWithTheNewPagesAfterACrashBetweenPagesAndHeader() throws Exception {
        Path image = dir.resolve("vda.raw");
        GranuleDigests digests = new GranuleDigests(16 * MIB, GRANULE);
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 16 * MIB))) {
            record(digests, 1, 1);
            journal.writePages(digests.takeChangedPages());
            journal.syncData();
            journal.commitHeader(4);
            record(digests, 2 * 1024, 2);
            journal.writePages(digests.takeChangedPages());
            journal.syncData();
            // the crash: step 3, commitHeader(5), never runs
        }
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(4, journal.checkpoint(), "the header still names the old checkpoint");
            GranuleDigests loaded = journal.loadDigests();
            assertArrayEquals(digests.groupDigests(), loaded.groupDigests(),
                    "the new pages are read too: they describe data the image holds, and the source sends it again after checkpoint 4");
            assertEquals(2, loaded.touchedGranules());
        }
    }

    @Test
    void shouldReadAPageCutShortAtTheEndOfTheFileAsUntouchedGranules() throws Exception {
        Path image = dir.resolve("vda.raw");
        GranuleDigests digests = new GranuleDigests(16 * MIB, GRANULE);
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 16 * MIB))) {
            record(digests, 2 * 1024 + 1, 1);                            // granule 1 of group 2: bytes 4..7 of its page
            record(digests, 2 * 1024 + 600, 2);                          // granule 600: bytes 2400..2403
            journal.writePages(digests.takeChangedPages());
            journal.syncData();
        }
        Path path = ResumeJournal.pathFor(image);
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.WRITE)) {
            channel.truncate(ResumeJournal.PAGES_OFFSET + 2L * GranuleDigests.PAGE_BYTES + 1000);   // the extension was torn
        }
        try (ResumeJournal journal = reopen(image)) {
            GranuleDigests loaded = journal.loadDigests();
            assertEquals(1, loaded.touchedGranules(), "granule 600's digest was lost: it reads as untouched and is sent again");
        }
    }

    @Test
    void shouldLoadTheSparseJournalOfASixteenTibDiskPageByPage() throws Exception {
        long size = 16L << 40;
        Path image = dir.resolve("big.raw");
        GranuleDigests digests = new GranuleDigests(size, GRANULE);
        long lastGranule = digests.granules() - 1;
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", size))) {
            record(digests, 0, 1);
            record(digests, 1024L * 1024 * 1024 + 17, 2);               // group 1 Mi, in the middle of the file
            record(digests, lastGranule, 3);
            journal.writePages(digests.takeChangedPages());
            journal.syncData();
            journal.commitHeader(0);
        }
        Path path = ResumeJournal.pathFor(image);
        long groups = GranuleDigests.groups(size, GRANULE);
        assertEquals(4 * MIB, groups);
        assertEquals(ResumeJournal.PAGES_OFFSET + groups * GranuleDigests.PAGE_BYTES, Files.size(path), "a 16 GiB file, mostly holes");
        try (ResumeJournal journal = reopen(image)) {
            GranuleDigests loaded = journal.loadDigests();
            assertEquals(3 * (GranuleDigests.PAGE_BYTES + 16), loaded.pageBytesInUse(), "three pages in the heap, not 4 Mi");
            assertEquals(3, loaded.touchedGranules());
            assertEquals(3L * GRANULE, loaded.touchedBytes());
            assertArrayEquals(digests.groupDigests(), loaded.groupDigests());
        }
    }

    @Test
    void shouldRefuseASymbolicLinkOrADirectoryInPlaceOfTheJournal() throws Exception {
        Path elsewhere = dir.resolve("elsewhere.raw");
        ResumeJournal.create(elsewhere, identity("virtio0", 8 * MIB)).close();
        Path target = ResumeJournal.pathFor(elsewhere);
        byte[] targetBytes = Files.readAllBytes(target);
        Path image = dir.resolve("vda.raw");
        Path link = Files.createSymbolicLink(ResumeJournal.pathFor(image), target);

        JournalException open = assertThrows(JournalException.class, () -> ResumeJournal.open(image));
        assertEquals("journal " + link + " is a symbolic link, not a file Ferry wrote: refusing to use it;"
                + " remove it and migrate without -r", open.getMessage());
        assertThrows(JournalException.class, () -> ResumeJournal.create(image, identity("virtio0", 8 * MIB)));
        assertThrows(JournalException.class, () -> ResumeJournal.discard(image));
        assertTrue(Files.isSymbolicLink(link), "the link is left for the user to look at");
        assertArrayEquals(targetBytes, Files.readAllBytes(target), "nothing was written through the link");

        Path other = dir.resolve("vdb.raw");
        Files.createDirectory(ResumeJournal.pathFor(other));
        assertTrue(assertThrows(JournalException.class, () -> ResumeJournal.open(other)).getMessage().contains("is not a regular file"));
    }

    @Test
    void shouldRefuseToCreateAJournalThatExists() throws Exception {
        Path image = dir.resolve("vda.raw");
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 8 * MIB))) {
            journal.commitHeader(3);
        }
        Path path = ResumeJournal.pathFor(image);
        JournalException e = assertThrows(JournalException.class, () -> ResumeJournal.create(image, identity("virtio1", 8 * MIB)));
        assertEquals("a resume journal already exists at " + path + " (left by an interrupted migration): resume it with"
                + " migrate -r, or remove it to start over", e.getMessage());
        try (ResumeJournal journal = reopen(image)) {
            assertEquals(3, journal.checkpoint(), "the existing journal is untouched");
            assertEquals("virtio0", journal.identity().diskId());
        }
    }

    @Test
    void shouldRefuseAnotherFormatVersionEvenWithAValidOlderCopy() throws Exception {
        Path image = dir.resolve("vda.raw");
        try (ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 8 * MIB))) {
            journal.commitHeader(0);                                     // slot 1, the newer one
        }
        Path path = ResumeJournal.pathFor(image);
        ByteBuffer slot = ByteBuffer.wrap(Arrays.copyOfRange(Files.readAllBytes(path), JournalSlot.LENGTH, 2 * JournalSlot.LENGTH));
        slot.putInt(JournalSlot.VERSION_OFFSET, 2);
        int crcOffset = JournalSlot.FORMAT_OFFSET + 1 + "qcow2".length() + 2 + "virtio0".length();
        CRC32C crc = new CRC32C();
        crc.update(slot.slice(0, crcOffset));
        slot.putInt(crcOffset, (int) crc.getValue());
        overwrite(path, JournalSlot.LENGTH, slot.array());
        JournalException e = assertThrows(JournalException.class, () -> ResumeJournal.open(image));
        assertEquals("journal " + path + " has format version 2, this Ferry reads version 1: resume with the Ferry that"
                + " wrote it, or remove it and migrate without -r", e.getMessage());
    }

    @Test
    void shouldRefuseDigestsThatCannotBelongToTheDisk() throws Exception {
        Path image = dir.resolve("vda.raw");
        long size = 4 * MIB + GRANULE;                                   // 2 groups, the second with one granule
        ResumeJournal.create(image, identity("virtio0", size)).close();
        Path path = ResumeJournal.pathFor(image);
        ByteBuffer page = ByteBuffer.allocate(GranuleDigests.PAGE_BYTES).putInt(4, 77);   // granule 1 of its group
        overwrite(path, ResumeJournal.PAGES_OFFSET + GranuleDigests.PAGE_BYTES, page.array());
        try (ResumeJournal journal = reopen(image)) {
            JournalException e = assertThrows(JournalException.class, journal::loadDigests);
            assertTrue(e.getMessage().startsWith("journal " + path + " is damaged (bad page: group 1 has a digest for granule 1025"),
                    e.getMessage());
        }
        overwrite(path, ResumeJournal.PAGES_OFFSET + GranuleDigests.PAGE_BYTES, new byte[GranuleDigests.PAGE_BYTES]);
        overwrite(path, ResumeJournal.PAGES_OFFSET + 5L * GranuleDigests.PAGE_BYTES, page.array());
        try (ResumeJournal journal = reopen(image)) {
            assertEquals("journal " + path + " is damaged (it holds digests for group 5, past the last group 1 of a disk of "
                    + size + " bytes): remove it and migrate without -r", assertThrows(JournalException.class, journal::loadDigests).getMessage());
        }
    }

    @Test
    void shouldOpenOrRefuseCleanlyAfterAnyRandomCorruptionOfTheHeader() throws Exception {
        Path image = dir.resolve("vda.raw");
        try (ResumeJournal journal = ResumeJournal.create(image, identity("disk-é", 8 * MIB))) {
            journal.commitHeader(10);                                    // slot 1
            journal.commitHeader(11);                                    // slot 0
        }
        Path path = ResumeJournal.pathFor(image);
        byte[] intact = Files.readAllBytes(path);
        Random random = new Random(20250301);
        int opened = 0;
        int refused = 0;
        for (int round = 0; round < 1000; round++) {
            byte[] bytes = intact.clone();
            int corruptions = 1 + random.nextInt(8);
            for (int i = 0; i < corruptions; i++) {
                bytes[random.nextInt(2 * JournalSlot.LENGTH)] = (byte) random.nextInt(256);
            }
            Files.write(path, bytes);
            try (ResumeJournal journal = reopen(image)) {
                assertTrue(journal.checkpoint() == 10 || journal.checkpoint() == 11, "round " + round + ": " + journal.checkpoint());
                assertEquals(identity("disk-é", 8 * MIB), journal.identity(), "round " + round);
                opened++;
            } catch (JournalException e) {
                assertTrue(e.getMessage().startsWith("journal " + path + " is damaged ("), "round " + round + ": " + e.getMessage());
                refused++;
            }
        }
        assertTrue(opened > 0 && refused > 0, "both outcomes seen: opened " + opened + ", refused " + refused);
    }

    @Test
    void shouldDiscardTheJournalDurablyAndOnlyOnce() throws Exception {
        Path image = dir.resolve("vda.raw");
        Files.write(image, new byte[] {1});
        ResumeJournal.create(image, identity("virtio0", 8 * MIB)).close();
        assertTrue(ResumeJournal.discard(image));
        assertFalse(Files.exists(ResumeJournal.pathFor(image), LinkOption.NOFOLLOW_LINKS));
        assertFalse(ResumeJournal.discard(image), "nothing left to remove");
        assertTrue(Files.exists(image), "the image is the caller's");

        ResumeJournal journal = ResumeJournal.create(image, identity("virtio0", 8 * MIB));
        journal.delete();
        assertEquals(Optional.empty(), ResumeJournal.open(image));
    }

    @Test
    void shouldRejectIdentitiesTheFileCannotHold() {
        assertThrows(IllegalArgumentException.class, () -> new ResumeJournal.Identity(MIGRATION, "d", MIB, 4096, "a-very-long-format-name", false, STARTED));
        assertThrows(IllegalArgumentException.class, () -> new ResumeJournal.Identity(MIGRATION, "d".repeat(257), MIB, 4096, "raw", false, STARTED));
        assertThrows(IllegalArgumentException.class, () -> new ResumeJournal.Identity(MIGRATION, "d", MIB, 3000, "raw", false, STARTED));
        assertThrows(IllegalArgumentException.class, () -> new ResumeJournal.Identity(MIGRATION, "d", 0, 4096, "raw", false, STARTED));
        assertThrows(IllegalArgumentException.class, () -> new ResumeJournal.Identity(MIGRATION, "d", MIB, 4096, "raw", false, Instant.MAX));
        new ResumeJournal.Identity(MIGRATION, "d".repeat(256), MIB, 4096, "f".repeat(16), false, STARTED);
    }

    @Test
    void shouldLayOutAHeaderSlotAsTheSpecSays() {
        var identity = new ResumeJournal.Identity(new UUID(0x0102030405060708L, 0x1112131415161718L), "vd", 0x10_0000_0000L, 65536,
                "raw", true, Instant.ofEpochMilli(0x0123456789L));
        ByteBuffer slot = new JournalSlot(3, 42, identity).encode().order(ByteOrder.BIG_ENDIAN);
        byte[] head = new byte[80];
        slot.get(0, head);
        byte[] expected = {
            'F', 'E', 'R', 'R', 'Y', 'R', 'S', 'J',                                     // magic
            0, 0, 0, 1,                                                                 // version 1
            0, 0, 0, 0, 0, 0, 0, 3,                                                     // sequence 3
            0, 0, 0, 0, 0, 0, 0, 42,                                                    // checkpoint 42
            1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,     // migration id
            0, 1, 0, 0,                                                                 // granule size 64 KiB
            0, 0, 0, 0x10, 0, 0, 0, 0,                                                  // disk size 64 GiB
            1,                                                                          // created image
            0, 0, 0, 0x01, 0x23, 0x45, 0x67, (byte) 0x89,                               // started at, epoch ms
            3, 'r', 'a', 'w',                                                           // format
            0, 2, 'v', 'd',                                                             // disk id
            0, 0, 0, 0,                                                                 // CRC32C (checked below)
            0, 0, 0};                                                                   // zeroes to 512
        CRC32C crc = new CRC32C();
        crc.update(head, 0, 73);
        ByteBuffer.wrap(expected).putInt(73, (int) crc.getValue());
        assertArrayEquals(expected, head);
        assertEquals(JournalSlot.LENGTH, slot.remaining());
        assertEquals(new JournalSlot.Valid(new JournalSlot(3, 42, identity)), JournalSlot.decode(slot));
    }
}
