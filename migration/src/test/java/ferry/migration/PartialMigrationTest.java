package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The journals of one migration's disks: all or none, one migration, committed together. */
class PartialMigrationTest {
    private static final int GRANULE = 4096;
    private static final long SIZE = 16L << 20;
    private static final UUID MIGRATION = UUID.fromString("0e6b1f34-0f8a-4c3e-8e53-6a1f0c2d9b71");
    private static final Instant STARTED = Instant.parse("2025-03-01T12:00:00Z");

    @TempDir
    Path dir;

    private static ResumeJournal.Identity identity(UUID migration, String diskId, Instant startedAt) {
        return new ResumeJournal.Identity(migration, diskId, SIZE, GRANULE, "raw", false, startedAt);
    }

    private List<Path> images(String... names) {
        return List.of(names).stream().map(dir::resolve).toList();
    }

    @Test
    void shouldFindTheJournalsOfEveryDiskAtTheirCommittedCheckpoint() throws Exception {
        List<Path> images = images("vda.raw", "vdb.raw");
        assertEquals(Optional.empty(), PartialMigration.find(images), "no journal: a fresh migration");
        GranuleDigests vda = new GranuleDigests(SIZE, GRANULE);
        GranuleDigests vdb = new GranuleDigests(SIZE, GRANULE);
        try (PartialMigration migration = PartialMigration.create(images, List.of(identity(MIGRATION, "virtio0", STARTED),
                identity(MIGRATION, "virtio1", STARTED.minusSeconds(1))))) {
            vda.recordData(5, ByteBuffer.allocate(3 * GRANULE));
            vdb.recordZero(2048, 1);
            migration.commit(0, List.of(vda.takeChangedPages(), vdb.takeChangedPages()));
            vdb.recordZero(3000, 2);
            migration.commit(1, List.of(vda.takeChangedPages(), vdb.takeChangedPages()));
        }
        try (PartialMigration migration = PartialMigration.find(images).orElseThrow()) {
            assertEquals(MIGRATION, migration.migrationId());
            assertEquals(1, migration.checkpoint());
            assertEquals(STARTED.minusSeconds(1), migration.startedAt(), "the earliest disk's start");
            assertEquals(List.of("virtio0", "virtio1"), migration.identities().stream().map(ResumeJournal.Identity::diskId).toList());
            assertArrayEquals(vda.groupDigests(), migration.journals().get(0).loadDigests().groupDigests());
            assertEquals(3, migration.journals().get(1).loadDigests().touchedGranules());
        }
    }

    @Test
    void shouldTakeTheLowestCheckpointWhenACrashHitTheHeadersHalfWay() throws Exception {
        List<Path> images = images("vda.raw", "vdb.raw");
        try (PartialMigration migration = PartialMigration.create(images, List.of(identity(MIGRATION, "virtio0", STARTED),
                identity(MIGRATION, "virtio1", STARTED)))) {
            migration.commit(3, List.of(List.of(), List.of()));
            migration.journals().get(0).commitHeader(4);                 // step 3 reached the first disk only
        }
        try (PartialMigration migration = PartialMigration.find(images).orElseThrow()) {
            assertEquals(3, migration.checkpoint());
        }
    }

    @Test
    void shouldRefuseDisksOfWhichOnlySomeHaveAJournal() throws Exception {
        List<Path> images = images("vda.raw", "vdb.raw", "vdc.raw");
        ResumeJournal.create(images.get(1), identity(MIGRATION, "virtio1", STARTED)).close();
        JournalException e = assertThrows(JournalException.class, () -> PartialMigration.find(images));
        Path vdb = ResumeJournal.pathFor(images.get(1));
        Path vda = ResumeJournal.pathFor(images.get(0));
        Path vdc = ResumeJournal.pathFor(images.get(2));
        assertEquals("only some disks have a resume journal: [" + vdb + "] exist, [" + vda + ", " + vdc + "] do not;"
                + " remove the ones that exist and migrate without -r", e.getMessage());
        assertTrue(Files.exists(vdb), "nothing is removed behind the user's back");
    }

    @Test
    void shouldRefuseJournalsOfDifferentMigrations() throws Exception {
        List<Path> images = images("vda.raw", "vdb.raw");
        UUID other = UUID.fromString("00000000-0000-4000-8000-000000000001");
        ResumeJournal.create(images.get(0), identity(MIGRATION, "virtio0", STARTED)).close();
        ResumeJournal.create(images.get(1), identity(other, "virtio1", STARTED)).close();
        JournalException e = assertThrows(JournalException.class, () -> PartialMigration.find(images));
        assertEquals("resume journals of different migrations: " + ResumeJournal.pathFor(images.get(0)) + " is of migration "
                + MIGRATION + ", " + ResumeJournal.pathFor(images.get(1)) + " of " + other + "; remove them and migrate without -r",
                e.getMessage());
    }

    @Test
    void shouldDiscardEveryJournalAndLeaveTheImages() throws Exception {
        List<Path> images = images("vda.raw", "vdb.raw");
        for (Path image : images) {
            Files.write(image, new byte[] {1});
        }
        PartialMigration.create(images, List.of(identity(MIGRATION, "virtio0", STARTED), identity(MIGRATION, "virtio1", STARTED))).close();
        PartialMigration migration = PartialMigration.find(images).orElseThrow();
        migration.discard();
        for (Path image : images) {
            assertFalse(Files.exists(ResumeJournal.pathFor(image)));
            assertTrue(Files.exists(image));
        }
        assertEquals(Optional.empty(), PartialMigration.find(images));
    }

    @Test
    void shouldCreateAllJournalsOrNone() throws Exception {
        List<Path> images = images("vda.raw", "vdb.raw");
        ResumeJournal.create(images.get(1), identity(MIGRATION, "left-over", STARTED)).close();
        assertThrows(JournalException.class, () -> PartialMigration.create(images,
                List.of(identity(MIGRATION, "virtio0", STARTED), identity(MIGRATION, "virtio1", STARTED))));
        assertFalse(Files.exists(ResumeJournal.pathFor(images.get(0))), "the journal created before the failure is removed");
        assertTrue(Files.exists(ResumeJournal.pathFor(images.get(1))), "the one that was there is not ours to remove");
    }
}
