package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.qcow2.Qcow2Image;
import ferry.migration.DestinationHost;
import ferry.migration.GranuleDigests;
import ferry.migration.MigrationException;
import ferry.migration.ResumeInfo;
import ferry.migration.ResumeJournal;
import ferry.migration.wire.Frame;
import ferry.migration.wire.MigrationWire;
import ferry.migration.wire.VmFingerprint;
import ferry.monitor.MonitorException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The destination's checks of a HELLO, before QEMU starts (no QEMU needed), and the partial state it keeps of an
 * interrupted migration: journals made, kept, resumed, refused, discarded, found at start, timed out.
 */
class IncomingVmTest {
    private static final long SIZE = 8L << 20;

    @TempDir Path tmp;

    /** The destination's partial state; its partial-timeout is {@link #timeoutMs}. */
    private long timeoutMs = 86_400_000;
    private final PartialState partial = new PartialState(() -> timeoutMs);

    private IncomingVm host(Path disk, String format, boolean overwrite) throws Exception {
        return host(disk, format, overwrite, partial);
    }

    private IncomingVm host(Path disk, String format, boolean overwrite, PartialState partial) throws Exception {
        List<String> args = new java.util.ArrayList<>(List.of("-name", "in", "-drive", "file=" + disk + ",format=" + format,
                "-incoming", "tcp:127.0.0.1:4444", "--runtime-dir", tmp.resolve("run").toString()));
        if (overwrite) {
            args.add("--incoming-overwrite");
        }
        VmConfig config;
        try {
            config = VmConfigParser.parse(args);
        } catch (VmConfigParser.BadOptionException e) {
            throw new AssertionError("the test's options: " + e.getMessage(), e);
        }
        RuntimeDir runtime = RuntimeDir.create(tmp.resolve("run"), "in");
        return new IncomingVm(config, runtime, new QemuLauncher(config, runtime), ferry.migration.wire.VmFingerprint.of(), partial);
    }

    private static Frame.Hello incremental(String baseName) {
        Frame.BaseIdentity base = new Frame.BaseIdentity(baseName, SIZE, new byte[32]);
        return new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, true,
                List.of(new Frame.DiskOffer("disk0", SIZE, "qcow2", Optional.of(base))), ferry.migration.wire.VmFingerprint.of());
    }

    @Test
    void shouldDeleteNothingWhenTheBaseIsMissingEvenWithOverwrite() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        try (Qcow2Image image = Qcow2Image.create(disk, SIZE, 64 << 10, Optional.empty())) {
            image.write(0, ByteBuffer.wrap("precious".getBytes()));
        }
        byte[] before = Files.readAllBytes(disk);
        MigrationException refused = assertThrows(MigrationException.class,
                () -> host(disk, "qcow2", true).prepare(incremental("missing-base.raw")));
        assertTrue(refused.getMessage().contains("needs the source's base image on the destination too"), refused.getMessage());
        assertArrayEquals(before, Files.readAllBytes(disk), "--incoming-overwrite touched the disk before every check passed");
    }

    @Test
    void shouldDeleteNothingWhenTheBaseHasAnotherSize() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        Qcow2Image.create(disk, SIZE, 64 << 10, Optional.empty()).close();
        ferry.image.raw.RawImage.create(tmp.resolve("base.raw"), SIZE / 2).close();
        byte[] before = Files.readAllBytes(disk);
        MigrationException refused = assertThrows(MigrationException.class,
                () -> host(disk, "qcow2", true).prepare(incremental("base.raw")));
        assertTrue(refused.getMessage().contains("differs from the source's (size"), refused.getMessage());
        assertArrayEquals(before, Files.readAllBytes(disk));
    }

    @Test
    void shouldRefuseAnotherConfigurationBeforeCreatingAnything() throws Exception {
        Path disk = tmp.resolve("new/disk.raw");
        List<String> args = List.of("-name", "in", "-drive", "file=" + disk + ",format=raw", "-incoming", "tcp:127.0.0.1:4444",
                "--runtime-dir", tmp.resolve("run").toString());
        VmConfig config = VmConfigParser.parse(args);
        RuntimeDir runtime = RuntimeDir.create(tmp.resolve("run"), "in");
        VmFingerprint here = VmFingerprint.of(new VmFingerprint.Item("machine", "pc-i440fx-7.2"),
                new VmFingerprint.Item("memory", "128 MiB"));
        IncomingVm host = new IncomingVm(config, runtime, new QemuLauncher(config, runtime), here, partial);
        Frame.Hello hello = new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false,
                List.of(new Frame.DiskOffer("disk0", SIZE, "raw", Optional.empty())),
                VmFingerprint.of(new VmFingerprint.Item("machine", "pc-i440fx-7.2"), new VmFingerprint.Item("memory", "256 MiB")));
        MigrationException refused = assertThrows(MigrationException.class, () -> host.prepare(hello));
        assertEquals("configuration differs from the source: memory 128 MiB here, 256 MiB on the source", refused.getMessage());
        assertFalse(Files.exists(disk.getParent()), "nothing is created before the configuration check");
    }

    /** What the source reads of a refusal names nothing of this host: no path, no size of its files. */
    private void assertNamesNothingHere(MigrationException refused) {
        assertFalse(refused.getMessage().contains(tmp.toString()), refused.getMessage());
        assertFalse(refused.getMessage().contains("/etc"), refused.getMessage());
    }

    @Test
    void shouldRefuseBaseNamesThatAreNotPlainFileNamesWithoutLookingThemUp() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        for (String name : List.of("/etc/shadow", "../../../../etc/hostname", "..", ".", "", "sub/base.raw", "a\nb", "a\\b")) {
            MigrationException refused = assertThrows(MigrationException.class, () -> host(disk, "qcow2", false).prepare(incremental(name)));
            assertTrue(refused.getMessage().contains("the source's base name is not a plain file name"), name + ": " + refused.getMessage());
            assertNamesNothingHere(refused);
            assertTrue(refused.localDetail().orElseThrow().contains("the source named its base"), refused.localDetail().orElseThrow());
        }
        assertFalse(Files.exists(disk));
    }

    @Test
    void shouldRefuseAFifoOrADirectoryAsBaseAtOnce() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        new ProcessBuilder("mkfifo", tmp.resolve("base.fifo").toString()).start().waitFor();
        Files.createDirectories(tmp.resolve("base.dir"));
        for (String name : List.of("base.fifo", "base.dir")) {
            MigrationException refused = org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(java.time.Duration.ofSeconds(10),
                    () -> assertThrows(MigrationException.class, () -> host(disk, "qcow2", false).prepare(incremental(name))));
            assertTrue(refused.getMessage().contains("it is not there"), refused.getMessage());
            assertTrue(refused.localDetail().orElseThrow().contains("is not a regular file"), refused.localDetail().orElseThrow());
            assertNamesNothingHere(refused);
        }
    }

    @Test
    void shouldRefuseABaseOtherThanTheOneTheOverlayHereSitsOn() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        ferry.image.raw.RawImage.create(tmp.resolve("mine.raw"), SIZE).close();
        ferry.image.raw.RawImage.create(tmp.resolve("other.raw"), SIZE).close();
        Qcow2Image.create(disk, SIZE, 64 << 10, Optional.of(new ferry.image.qcow2.Backing("mine.raw", "raw"))).close();
        MigrationException refused = assertThrows(MigrationException.class, () -> host(disk, "qcow2", true).prepare(incremental("other.raw")));
        assertTrue(refused.getMessage().contains("the source's base is not the base of the destination's overlay"), refused.getMessage());
        assertNamesNothingHere(refused);
    }

    @Test
    void shouldCheckAnExistingQcow2WithoutOpeningItForWriting() throws Exception {
        Path disk = tmp.resolve("disk.qcow2");
        try (Qcow2Image image = Qcow2Image.create(disk, SIZE, 64 << 10, Optional.empty())) {
            image.write(0, ByteBuffer.wrap("precious".getBytes()));
        }
        try (var file = java.nio.channels.FileChannel.open(disk, java.nio.file.StandardOpenOption.WRITE)) {
            file.write(ByteBuffer.allocate(8).putLong(0, 1L), ferry.image.qcow2.Qcow2Header.AUTOCLEAR_FEATURES_OFFSET);   // QEMU's bitmaps bit
        }
        byte[] before = Files.readAllBytes(disk);
        Frame.Hello full = new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false,
                List.of(new Frame.DiskOffer("disk0", SIZE, "qcow2", Optional.empty())), VmFingerprint.of());
        MigrationException holdsData = assertThrows(MigrationException.class, () -> host(disk, "qcow2", false).prepare(full));
        assertTrue(holdsData.getMessage().contains("holds data; refusing to overwrite it"), holdsData.getMessage());
        assertNamesNothingHere(holdsData);
        Frame.Hello bigger = new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false,
                List.of(new Frame.DiskOffer("disk0", 2 * SIZE, "qcow2", Optional.empty())), VmFingerprint.of());
        MigrationException size = assertThrows(MigrationException.class, () -> host(disk, "qcow2", true).prepare(bigger));
        assertTrue(size.getMessage().contains("exists with a different size than the source's " + 2 * SIZE + " bytes"), size.getMessage());
        assertFalse(size.getMessage().contains(Long.toString(SIZE)), "this host's size stays here: " + size.getMessage());
        assertNamesNothingHere(size);
        assertArrayEquals(before, Files.readAllBytes(disk), "a refused image must stay byte for byte as it was (autoclear bits too)");
    }

    // ---- the partial state a destination keeps for a resume -------------------------------------------

    private static final UUID FIRST = UUID.fromString("00000000-0000-4000-8000-000000000001");
    private static final UUID SECOND = UUID.fromString("00000000-0000-4000-8000-000000000002");

    private static Frame.Hello hello(UUID id, long size, boolean resume) {
        return new Frame.Hello(MigrationWire.VERSION, "in", 4096, true, false, List.of(new Frame.DiskOffer("disk0", size, "raw",
                Optional.empty())), VmFingerprint.of(), id, resume ? Optional.of(new Frame.ResumeClaim(0, List.of(List.of())))
                : Optional.empty());
    }

    /** A fresh start of {@code id} that received 4 KiB "data" at offset 0, checkpoint 0 durable, then lost its source. */
    private IncomingVm interrupted(Path disk, UUID id, boolean keep) throws Exception {
        IncomingVm host = host(disk, "raw", false);
        DestinationHost.PreparedVm vm = host.prepare(hello(id, SIZE, false));
        ByteBuffer data = ByteBuffer.allocate(4096).put(0, "data".getBytes());
        vm.images().getFirst().write(0, data.duplicate());
        GranuleDigests digests = new GranuleDigests(SIZE, 4096);
        digests.recordData(0, data);
        vm.images().getFirst().flush();
        vm.journal().commit(0, List.of(digests.takeChangedPages()));
        vm.abort("the source's link dropped", keep);
        return host;
    }

    @Test
    void shouldCreateAJournalBesideEachImageOnAFreshStart() throws Exception {
        Path disk = tmp.resolve("new/disk.raw");
        DestinationHost.PreparedVm vm = host(disk, "raw", false).prepare(hello(FIRST, SIZE, false));
        assertEquals(List.of(true), vm.fresh());
        assertTrue(Files.isRegularFile(ResumeJournal.pathFor(disk)));
        assertEquals(FIRST, vm.journal().migrationId());
        ResumeJournal.Identity identity = vm.journal().identities().getFirst();
        assertEquals(List.of("disk0", SIZE, 4096, "raw", true), List.of(identity.diskId(), identity.diskSize(), identity.granuleSize(),
                identity.format(), identity.createdImage()), "the HELLO's identity, and Ferry created the image");
        vm.abort("test over", false);
    }

    @Test
    void shouldKeepImagesAndJournalsWhenAbortedForAResume() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        IncomingVm host = interrupted(disk, FIRST, true);
        assertTrue(Files.exists(disk) && Files.exists(ResumeJournal.pathFor(disk)));
        ResumeInfo.PartialHeld held = host.partialHeld().orElseThrow();
        assertEquals(FIRST, held.migrationId());
        assertEquals(4096, held.heldBytes(), "what checkpoint 0 made durable");
        assertEquals(Files.getLastModifiedTime(ResumeJournal.pathFor(disk)).toInstant(), held.since());
        assertEquals(held.since().plusMillis(timeoutMs), held.removeAt());
    }

    @Test
    void shouldRemoveJournalsAndTheImagesItCreatedWhenAbortedWithoutKeeping() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        IncomingVm host = interrupted(disk, FIRST, false);
        assertFalse(Files.exists(disk), "the image Ferry created for the failed migration");
        assertFalse(Files.exists(ResumeJournal.pathFor(disk)));
        assertEquals(Optional.empty(), host.partialHeld());
    }

    @Test
    void shouldResumeTheKeptStateWithItsImagesAsTheyAre() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        IncomingVm host = interrupted(disk, FIRST, true);
        DestinationHost.PreparedVm vm = host.prepare(hello(FIRST, SIZE, true));
        assertEquals(List.of(false), vm.fresh(), "what the image holds must not be skipped as zero");
        assertEquals(0, vm.journal().checkpoint());
        ByteBuffer read = ByteBuffer.allocate(4);
        vm.images().getFirst().read(0, read);
        assertEquals("data", new String(read.array()));
        assertEquals(Optional.empty(), host.partialHeld(), "in use by the session, not kept");
        partial.awaitTimer();                          // the removal timer of the kept state ended with the resume
        vm.abort("the link dropped again", true);
        assertEquals(4096, host.partialHeld().orElseThrow().heldBytes());
    }

    @Test
    void shouldRefuseAResumeOfAnotherMigrationOrOtherDisksAndKeepTheState() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        IncomingVm host = interrupted(disk, FIRST, true);
        MigrationException other = assertThrows(MigrationException.class, () -> host.prepare(hello(SECOND, SIZE, true)));
        assertEquals("resume refused: this destination holds migration " + FIRST + ", not " + SECOND
                + ": migrate without -r to start over", other.getMessage());
        MigrationException size = assertThrows(MigrationException.class, () -> host.prepare(hello(FIRST, 2 * SIZE, true)));
        assertEquals("resume refused: disk disk0 had " + SIZE + " bytes, the source offers " + 2 * SIZE
                + ": migrate without -r to start over", size.getMessage());
        assertEquals(FIRST, host.partialHeld().orElseThrow().migrationId(), "a refused resume leaves the state kept");
        assertTrue(Files.exists(disk) && Files.exists(ResumeJournal.pathFor(disk)));
        MigrationException none = assertThrows(MigrationException.class,
                () -> host(tmp.resolve("elsewhere.raw"), "raw", false, new PartialState(() -> timeoutMs)).prepare(hello(FIRST, SIZE, true)));
        assertEquals("resume refused: this destination holds no partial state of migration " + FIRST
                + ": migrate without -r to start over", none.getMessage());
    }

    @Test
    void shouldDiscardAKeptStateBeforeAFreshStart() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        IncomingVm host = interrupted(disk, FIRST, true);
        DestinationHost.PreparedVm vm = host.prepare(hello(SECOND, SIZE, false));
        assertEquals(SECOND, vm.journal().migrationId());
        assertEquals(List.of(true), vm.fresh(), "the image of the discarded state was Ferry's: created again, empty");
        assertEquals(Optional.empty(), ResumeJournal.open(disk).map(j -> {
            try (j) {
                return j.identity().migrationId();
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }).filter(FIRST::equals), "one drive never holds two partial states");
        vm.abort("test over", false);
    }

    @Test
    void shouldFindAKeptStateAtStartAndLeaveADamagedJournalAlone() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        interrupted(disk, FIRST, true);
        PartialState restarted = new PartialState(() -> timeoutMs);
        restarted.find(List.of(disk));
        ResumeInfo.PartialHeld held = restarted.held().orElseThrow();
        assertEquals(List.of(FIRST, 4096L), List.of(held.migrationId(), held.heldBytes()));
        restarted.close();

        Path journal = ResumeJournal.pathFor(disk);
        try (var file = java.nio.channels.FileChannel.open(journal, java.nio.file.StandardOpenOption.WRITE)) {
            file.write(ByteBuffer.wrap(new byte[1024]), 0);          // both header slots gone
        }
        PartialState damaged = new PartialState(() -> timeoutMs);
        damaged.find(List.of(disk));
        assertEquals(Optional.empty(), damaged.held());
        assertTrue(Files.exists(journal), "a damaged journal is left alone, for a human to look at");
    }

    @Test
    void shouldRemoveAKeptStateOncePartialTimeoutHasPassed() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        timeoutMs = 0;
        interrupted(disk, FIRST, true);
        partial.awaitTimer();
        assertEquals(Optional.empty(), partial.held());
        assertFalse(Files.exists(disk) || Files.exists(ResumeJournal.pathFor(disk)));
    }

    @Test
    void shouldRemoveAKeptStateOnDiscardButNotWhileASessionUsesIt() throws Exception {
        Path disk = tmp.resolve("disk.raw");
        IncomingVm host = interrupted(disk, FIRST, true);
        DestinationHost.PreparedVm vm = host.prepare(hello(FIRST, SIZE, true));
        MonitorException inUse = assertThrows(MonitorException.class, () -> partial.discard("migrate_incoming_discard"));
        assertTrue(inUse.error().contains("in use by the incoming migration that resumes it"), inUse.error());
        vm.abort("the link dropped again", true);
        assertEquals(FIRST, partial.discard("migrate_incoming_discard").orElseThrow().migrationId());
        assertFalse(Files.exists(disk) || Files.exists(ResumeJournal.pathFor(disk)));
        assertEquals(Optional.empty(), partial.discard("again: nothing left"));
    }
}
