package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.dirty.DirtyTrackingImage;
import ferry.image.raw.RawImage;
import ferry.testkit.FaultProxy;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The migration protocol end to end in one JVM over loopback TCP, with stand-ins for the two
 * QEMUs: disks must arrive identical, RAM bytes in order and whole, and every fault must leave the
 * source running and the destination clean, with a retry that succeeds.
 */
class MigrationLoopbackTest {
    private static final long DISK_SIZE = 32L << 20;
    /** Records the guest writes while the migration tracks its writes, before the switchover may pause it. */
    private static final long GUEST_WRITES = 100;

    @TempDir Path tmp;
    private Path srcDir;
    private Path dstDir;
    private RawImage sourceRaw;
    private DirtyTrackingImage source;
    private FakeQemu.Destination host;
    private MigrationDestination destination;

    @BeforeEach
    void setUp() throws Exception {
        srcDir = Files.createDirectories(tmp.resolve("src"));
        dstDir = Files.createDirectories(tmp.resolve("dst"));
        sourceRaw = RawImage.create(srcDir.resolve("disk0.raw"), DISK_SIZE);
        Random random = new Random(42);
        byte[] chunk = new byte[1 << 20];
        for (long offset = 0; offset < DISK_SIZE / 2; offset += 3L << 20) {   // data with holes between
            random.nextBytes(chunk);
            sourceRaw.write(offset, ByteBuffer.wrap(chunk));
        }
        source = new DirtyTrackingImage(sourceRaw);
        host = new FakeQemu.Destination(dstDir);
        destination = new MigrationDestination("127.0.0.1", 0, host);
        destination.start();
    }

    @AfterEach
    void tearDown() throws Exception {
        destination.close();
        sourceRaw.close();
    }

    private MigrationSource migrate(int port, FakeQemu.Source vm) {
        return migrate(port, vm, FakeBlocks.of(source), 1L << 30);
    }

    private MigrationSource migrate(int port, FakeQemu.Source vm, FakeBlocks blocks, long bytesPerSec) {
        return migrate(port, vm, blocks, MigrationParameters.defaults().withMaxBandwidth(bytesPerSec), Optional.empty());
    }

    /** Without automatic reconnects: a cut link fails the migration (which stays resumable). */
    private MigrationSource migrateOnce(int port, FakeQemu.Source vm) {
        return migrate(port, vm, FakeBlocks.of(source), MigrationParameters.defaults().withMaxBandwidth(1L << 30).withRetryWindowMs(0),
                Optional.empty());
    }

    private MigrationSource migrate(int port, FakeQemu.Source vm, FakeBlocks blocks, MigrationParameters parameters,
                                    Optional<ResumePoint> resume) {
        MigrationSource migration = new MigrationSource("test-vm", blocks.disks(), vm, blocks,
                new MigrationRequest("127.0.0.1", port, true, false, new ferry.migration.stream.StreamSecurity.Plain(), resume.isPresent()),
                parameters, srcDir, resume);
        migration.checkpointEvery(CHECKPOINT_BYTES);
        migration.start();
        return migration;
    }

    /** Checkpoints this often: a 16 MiB bulk pass then has several to resume from. */
    private static final long CHECKPOINT_BYTES = 1L << 20;

    /** Waits, at most {@code timeoutMs}, until {@code counter} reaches {@code target}. */
    private static void awaitAtLeast(AtomicLong counter, long target, long timeoutMs, String what) throws InterruptedException {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000;
        while (counter.get() < target && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertTrue(counter.get() >= target, what + ": " + counter.get() + " of " + target + " within " + timeoutMs + " ms");
    }

    /** Where QEMU stops the vCPUs and drains I/O: the writer stops and its last write has returned. */
    private static void pause(AtomicBoolean paused, Thread guest) {
        paused.set(true);
        try {
            guest.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Test
    void shouldCopyDiskAndRamWhileTheGuestWrites() throws Exception {
        AtomicBoolean paused = new AtomicBoolean();
        AtomicLong written = new AtomicLong();
        FakeBlocks blocks = FakeBlocks.of(source);
        // The guest writes only once the migration tracks writes, and QEMU's pause (switchover) waits for its
        // first GUEST_WRITES: so they happen during the migration, whatever the machine's speed.
        Thread guest = Thread.ofVirtual().start(() -> {
            Random random = new Random(7);
            ByteBuffer record = ByteBuffer.allocateDirect(4096);
            try {
                assertTrue(blocks.tracking.await(60, java.util.concurrent.TimeUnit.SECONDS), "the migration never started tracking");
                for (int i = 0; i < 200_000 && !paused.get(); i++) {
                    record.clear();
                    while (record.hasRemaining()) {
                        record.put((byte) random.nextInt());
                    }
                    record.flip();
                    source.write(random.nextLong(DISK_SIZE / 4096) * 4096, record);
                    written.incrementAndGet();
                    if (i % 64 == 0) {
                        Thread.sleep(1);                         // a steady writer, not a flood (see the throttle test)
                    }
                }
            } catch (Exception e) {
                throw new AssertionError(e);
            }
        });
        FakeQemu.Source vm = new FakeQemu.Source();
        AtomicLong writtenAtPause = new AtomicLong(-1);
        vm.pauseGuest = () -> {
            try {
                awaitAtLeast(written, GUEST_WRITES, 30_000, "guest writes during the migration");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            pause(paused, guest);
            writtenAtPause.set(written.get());
        };
        MigrationSource migration = migrate(destination.port(), vm, blocks, 1L << 30);
        assertTrue(migration.await(60_000), "migration did not finish");
        MigrationReport report = migration.stats().report();
        assertEquals(MigrationStatus.COMPLETED, report.status(), () -> "source: " + report.error());
        assertTrue(destination.awaitCompleted(5_000));
        assertTrue(writtenAtPause.get() >= GUEST_WRITES, "the guest wrote " + writtenAtPause.get() + " records before the pause");
        assertTrue(report.dirtyPass() > 0, "no dirty pass ran while the guest wrote");
        FakeQemu.Prepared prepared = host.last();
        assertTrue(prepared.resumed.get(), "destination VM was not resumed");
        assertFalse(vm.resumed.get(), "source VM must stay paused after a completed migration");
        byte[] ram = prepared.receivedBytes();
        assertEquals(FakeQemu.RAM.length + FakeQemu.DEVICE_STATE.length, ram.length);
        assertArrayEquals(FakeQemu.RAM, java.util.Arrays.copyOf(ram, FakeQemu.RAM.length));
        prepared.close();
        // Every write before the pause is on the destination: the images are byte-identical.
        assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
    }

    @Test
    void shouldConvergeByThrottlingAGuestThatOutrunsTheLink() throws Exception {
        AtomicBoolean paused = new AtomicBoolean();
        AtomicLong written = new AtomicLong();
        long calibrationStartNs = System.nanoTime();
        Thread guest = Thread.ofVirtual().start(() -> {
            Random random = new Random(11);
            ByteBuffer block = ByteBuffer.allocateDirect(4096);
            long deadline = System.nanoTime() + 90_000_000_000L;
            try {
                while (!paused.get() && System.nanoTime() < deadline) {     // as fast as it can: GB/s in page cache
                    block.clear();
                    block.putLong(0, written.get());
                    source.write(random.nextLong(DISK_SIZE / 4096) * 4096, block);
                    written.incrementAndGet();
                }
            } catch (Exception e) {
                throw new AssertionError(e);
            }
        });
        // The link: an eighth of the rate the guest just wrote at (at most 16 MiB/s), so that it outruns the
        // link by construction, not by an assumption about the machine's speed.
        Thread.sleep(200);
        long guestBytesPerSec = written.get() * 4096 * 1_000_000_000L / (System.nanoTime() - calibrationStartNs);
        long link = Math.clamp(guestBytesPerSec / 8, 256 << 10, 16L << 20);
        FakeQemu.Source vm = new FakeQemu.Source();
        vm.pauseGuest = () -> pause(paused, guest);
        FakeBlocks blocks = FakeBlocks.of(source);
        MigrationSource migration = migrate(destination.port(), vm, blocks, link);
        assertTrue(migration.await(120_000), "a guest writing " + guestBytesPerSec + " B/s on a " + link
                + " B/s link must still converge");
        MigrationReport report = migration.stats().report();
        assertEquals(MigrationStatus.COMPLETED, report.status(), () -> report.error().orElse(""));
        assertTrue(blocks.highestLimit.get() > 0, "a guest writing " + guestBytesPerSec + " B/s on a " + link
                + " B/s link was never throttled: " + report);
        assertTrue(blocks.stopped, "the block layer's throttle and bitmaps were not removed");
        FakeQemu.Prepared prepared = host.last();
        prepared.close();
        assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
    }

    @Test
    void shouldMigrateAQcow2OverlayAsAWholeAndKeepItSparse() throws Exception {
        Path base = srcDir.resolve("base.raw");
        try (RawImage raw = RawImage.create(base, DISK_SIZE)) {
            raw.write(8L << 20, ByteBuffer.wrap(FakeQemu.pattern(2 << 20, 3)));          // 2 MiB in the base
        }
        try (ferry.image.qcow2.Qcow2Image overlay = ferry.image.qcow2.Qcow2Image.create(srcDir.resolve("top.qcow2"), DISK_SIZE,
                64 << 10, Optional.of(new ferry.image.qcow2.Backing("base.raw", "raw")))) {
            overlay.write(9L << 20, ByteBuffer.wrap(FakeQemu.pattern(1 << 20, 5)));       // 1 MiB over it
            overlay.write(20L << 20, ByteBuffer.wrap(FakeQemu.pattern(1 << 20, 6)));      // 1 MiB elsewhere
        }
        var top = ferry.image.qcow2.Qcow2Image.open(srcDir.resolve("top.qcow2"), false);
        FakeBlocks blocks = FakeBlocks.of(new DirtyTrackingImage(top));
        MigrationSource migration = new MigrationSource("test-vm", blocks.disks(), new FakeQemu.Source(), blocks, new MigrationRequest("127.0.0.1", destination.port(), true, false),
                MigrationParameters.defaults().withMaxBandwidth(1L << 30), srcDir);
        migration.start();
        assertTrue(migration.await(60_000));
        assertEquals(MigrationStatus.COMPLETED, migration.stats().report().status(), () -> migration.stats().report().error().orElse(""));
        FakeQemu.Prepared prepared = host.last();
        prepared.close();
        try (var copy = ferry.image.qcow2.Qcow2Image.open(prepared.paths.get(0), true)) {
            assertTrue(copy.backing().isEmpty(), "a full migration makes a standalone image");
            ByteBuffer a = ByteBuffer.allocate(1 << 20);
            ByteBuffer b = ByteBuffer.allocate(1 << 20);
            for (long offset = 0; offset < DISK_SIZE; offset += 1 << 20) {
                top.read(offset, a.clear());
                copy.read(offset, b.clear());
                assertEquals(a.flip(), b.flip(), "content differs at " + offset);
            }
            long allocated = 0;
            for (var extent : copy.extents(0, DISK_SIZE)) {
                allocated += extent.type() == ferry.image.Extent.Type.DATA ? extent.length() : 0;
            }
            assertTrue(allocated <= 4L << 20, "the copy is not sparse: " + allocated + " bytes allocated for 3 MiB of data");
            assertTrue(allocated >= 3L << 20, "data missing: " + allocated);
        } finally {
            top.close();
        }
    }

    @Test
    void shouldLeaveByteIdenticalImagesWhenTheGuestIsQuietAtSwitchover() throws Exception {
        FakeQemu.Source vm = new FakeQemu.Source();
        MigrationSource migration = migrate(destination.port(), vm);
        assertTrue(migration.await(60_000));
        assertEquals(MigrationStatus.COMPLETED, migration.stats().report().status(), () -> migration.stats().report().error().orElse(""));
        FakeQemu.Prepared prepared = host.last();
        prepared.close();
        assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
        // holes stay holes: the destination image is as sparse as the source
        long srcBlocks = allocatedBlocks(srcDir.resolve("disk0.raw"));
        long dstBlocks = allocatedBlocks(prepared.paths.get(0));
        assertTrue(dstBlocks <= srcBlocks + 64, "destination not sparse: " + dstBlocks + " vs " + srcBlocks);
    }

    @Test
    void shouldMeasureDowntimeFromQemusStopAndEndAtHundredPercent() throws Exception {
        FakeQemu.Source vm = new FakeQemu.Source();
        vm.stopBeforePreSwitchoverMs = 300;
        MigrationSource migration = migrate(destination.port(), vm);
        assertTrue(migration.await(60_000));
        MigrationReport report = migration.stats().report();
        assertEquals(MigrationStatus.COMPLETED, report.status(), () -> report.error().orElse(""));
        assertTrue(report.downtimeMs().orElseThrow() >= 300, "downtime runs from QEMU's STOP, 300 ms before"
                + " pre-switchover: " + report.downtimeMs());
        assertEquals(100, report.progressPercent(), "the sparse disk's holes count as done");
        host.last().close();
    }

    private static long allocatedBlocks(Path file) throws Exception {
        Process stat = new ProcessBuilder("stat", "-c", "%b", file.toString()).start();
        String out = new String(stat.getInputStream().readAllBytes()).trim();
        assertEquals(0, stat.waitFor());
        return Long.parseLong(out);
    }

    @Test
    void shouldResumeSourceAndCleanDestinationWhenTheLinkIsCutInEveryPhase() throws Exception {
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            FakeQemu.Source first = new FakeQemu.Source();
            MigrationSource measured = migrate(proxy.port(), first);
            assertTrue(measured.await(60_000));
            assertEquals(MigrationStatus.COMPLETED, measured.stats().report().status());
            host.last().close();
            long total = proxy.forwarded();
            destination.close();
            destination = new MigrationDestination("127.0.0.1", 0, host);
            destination.start();
            proxy.retarget(destination.port());
            // handshake, bulk pass, RAM, the device-state tail of switchover (before COMMIT)
            long[] cuts = {100, 64 << 10, total / 2, total * 9 / 10, total - 100};
            for (long cut : cuts) {
                proxy.cutAfter(cut);
                FakeQemu.Source vm = new FakeQemu.Source();
                MigrationSource migration = migrateOnce(proxy.port(), vm);
                assertTrue(migration.await(60_000), () -> "no end 60 s after a cut at " + cut + " bytes, state "
                        + migration.state() + "; threads:\n" + threadDump());
                MigrationReport report = migration.stats().report();
                if (report.status() == MigrationStatus.COMPLETED && proxy.forwarded() < cut && cut > total / 2) {
                    // Pass counts vary: this run needed fewer bytes than the measured one and ended before the cut.
                    System.out.println("cut after " + cut + " bytes not reached: the migration took " + proxy.forwarded());
                    host.last().close();
                    destination.close();                     // a completed migration ends the listener: a new one
                    destination = new MigrationDestination("127.0.0.1", 0, host);
                    destination.start();
                    proxy.retarget(destination.port());
                    continue;
                }
                assertEquals(MigrationStatus.FAILED, report.status(), "cut after " + cut + " bytes");
                assertTrue(report.error().isPresent());
                if (cut == total - 100 && !vm.resumed.get()) {
                    // Pass counts vary, so this cut may fall after COMMIT: then the source must stay paused and say why.
                    assertTrue(report.error().orElse("").contains("stays paused"), report.error().orElse(""));
                    vm.resume();
                    continue;
                }
                assertTrue(vm.resumed.get(), "source VM not resumed after cut at " + cut);
                awaitAborted(host.prepared.isEmpty() ? null : host.last(), cut);
            }
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource retry = migrate(proxy.port(), vm);
            assertTrue(retry.await(60_000));
            assertEquals(MigrationStatus.COMPLETED, retry.stats().report().status(), () -> retry.stats().report().error().orElse(""));
            FakeQemu.Prepared prepared = host.last();
            prepared.close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
        }
    }

    private void awaitAborted(FakeQemu.Prepared prepared, long cut) throws InterruptedException {
        if (prepared == null) {
            return;   // cut before the destination prepared anything
        }
        long deadline = System.currentTimeMillis() + 10_000;
        while (prepared.aborted.get() == null && System.currentTimeMillis() < deadline) {
            Thread.sleep(10);
        }
        assertNotNull(prepared.aborted.get(), "destination did not abort after cut at " + cut);
        if (prepared.keptPartial) {
            // WELCOME had gone out: the image and its journal stay for a resume (DESIGN.md "Resume")
            assertTrue(Files.exists(prepared.paths.get(0)), "the partial image went after cut at " + cut);
            assertTrue(Files.exists(ResumeJournal.pathFor(prepared.paths.get(0))), "the journal went after cut at " + cut);
        } else {
            assertFalse(Files.exists(prepared.paths.get(0)), "destination left its image behind after cut at " + cut);
        }
    }

    @Test
    void shouldRefuseACorruptStreamAndResumeTheSource() throws Exception {
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            proxy.flipAt(5L << 20);
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource migration = migrateOnce(proxy.port(), vm);
            assertTrue(migration.await(60_000));
            MigrationReport report = migration.stats().report();
            assertEquals(MigrationStatus.FAILED, report.status());
            assertTrue(vm.resumed.get());
            awaitAborted(host.last(), 5L << 20);
            assertTrue(destination.stats().report().error().orElse("").contains("checksum mismatch"),
                    () -> "destination error: " + destination.stats().report().error());
        }
    }

    /**
     * The destination's ERROR ends the migration even with reconnects on (the default retry-window): here its VM
     * fails to start, as when its base image differs, while the source streams the disk. A refusal or a failed check
     * is not a link blip; another attempt would only hide the destination's reason behind its own.
     */
    @Test
    void shouldNotReconnectWhenTheDestinationSaidWhyItEndedTheAttempt() throws Exception {
        fillSource();
        host.failStart = new MigrationException(Phase.BULK_COPY, "disk disk0: the destination's base image differs from the source's");
        FakeQemu.Source vm = new FakeQemu.Source();
        MigrationSource migration = migrate(destination.port(), vm, FakeBlocks.of(source), 64L << 20);
        assertTrue(migration.await(60_000));
        MigrationReport report = migration.stats().report();
        assertEquals(MigrationStatus.FAILED, report.status());
        assertTrue(report.error().orElse("").contains("base image differs"), () -> "source error: " + report.error());
        assertEquals(1, host.prepared.size(), "the source reconnected after the destination's ERROR");
        assertTrue(vm.resumed.get());
    }

    /** Fills the whole source disk with data, so that what a resume saves stands out against the socket buffers. */
    private void fillSource() throws IOException {
        Random random = new Random(99);
        byte[] chunk = new byte[1 << 20];
        for (long offset = 0; offset < DISK_SIZE; offset += chunk.length) {
            random.nextBytes(chunk);
            sourceRaw.write(offset, ByteBuffer.wrap(chunk));
        }
    }

    @Test
    void shouldReconnectOnItsOwnAfterACutAndSendOnlyWhatTheDestinationLacks() throws Exception {
        fillSource();
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            proxy.cutAfter(DISK_SIZE / 2);                 // mid bulk pass; the next connection passes
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource migration = migrate(proxy.port(), vm, FakeBlocks.of(source), 16L << 20);   // a 2 s bulk pass
            assertTrue(migration.await(60_000), "no end after the reconnect");
            MigrationReport report = migration.stats().report();
            assertEquals(MigrationStatus.COMPLETED, report.status(), () -> report.error().orElse(""));
            FakeQemu.Prepared prepared = host.last();
            prepared.close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
            // The disk is all data: an attempt that started over would receive all of it again; a resume receives
            // only what the destination had not confirmed before the cut.
            long received = destination.stats().report().diskTransferredBytes();
            assertTrue(received < DISK_SIZE, "the reconnected attempt received " + received + " bytes of a " + DISK_SIZE
                    + "-byte disk all of data: it started over");
            assertTrue(host.prepared.size() >= 2, "the destination saw one attempt only: was the link cut?");
            assertFalse(Files.exists(ResumeJournal.pathFor(prepared.paths.get(0))), "a completed migration leaves no journal");
        }
    }

    /**
     * A reconnect that takes QEMU's dirty bitmap and then loses its link before WELCOME (the proxy closes the first
     * reconnects at once) must not lose the guest's writes that bitmap held: the attempt that finally resumes sends them.
     */
    @Test
    void shouldKeepTheGuestsWritesThroughAReconnectThatFailsBeforeWelcome() throws Exception {
        fillSource();
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            proxy.cutAfter(DISK_SIZE / 2);
            proxy.refuseAfterCut(3_000);                    // reconnects 0.5 s and 1.5 s after the cut find no one
            FakeBlocks blocks = FakeBlocks.of(source);
            AtomicLong writes = new AtomicLong();
            blocks.whileSuspended = () -> {                // the guest writes over what the destination already holds
                if (writes.get() > 0) {
                    return;
                }
                ByteBuffer block = ByteBuffer.allocateDirect(4096);
                for (long offset = 0; offset < DISK_SIZE / 4; offset += 256L << 10) {
                    block.clear();
                    block.putLong(0, 0x5EED_0000L + offset);
                    block.clear();
                    try {
                        source.write(offset, block);
                    } catch (IOException e) {
                        throw new AssertionError(e);
                    }
                    writes.incrementAndGet();
                }
            };
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource migration = migrate(proxy.port(), vm, blocks, 16L << 20);
            assertTrue(migration.await(60_000), "no end after the reconnects");
            MigrationReport report = migration.stats().report();
            assertEquals(MigrationStatus.COMPLETED, report.status(), () -> report.error().orElse(""));
            assertTrue(proxy.refused() > 0, "no reconnect failed before WELCOME: the case did not happen");
            assertTrue(writes.get() > 0, "the guest did not write while the link was down");
            FakeQemu.Prepared prepared = host.last();
            prepared.close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)),
                    "the destination lacks what the guest wrote while the link was down");
        }
    }

    @Test
    void shouldNoticeASilentLinkAndTakeItsOldSessionOverWhenItReconnects() throws Exception {
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            // The proxy stops forwarding mid bulk pass and holds both ends open: no reset, no end of stream, as when
            // a cable is pulled. The source's writes block; the destination's session waits on its read timeout.
            proxy.stallAfter(3L << 20);
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource migration = migrate(proxy.port(), vm, FakeBlocks.of(source), 4L << 20);
            assertTrue(migration.await(SourceStream.LINK_SILENCE_MS + 60_000), "no end after a silent link");
            MigrationReport report = migration.stats().report();
            assertEquals(MigrationStatus.COMPLETED, report.status(), () -> report.error().orElse(""));
            FakeQemu.Prepared prepared = host.last();
            prepared.close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
            assertEquals(2, host.prepared.size(), "the reconnect resumed the first attempt's state, in a second prepared VM");
        }
    }

    /** Fails a migration mid bulk pass with automatic reconnects off; returns it (resumable). */
    private MigrationSource failMidBulk(FaultProxy proxy, FakeBlocks blocks) throws Exception {
        proxy.cutAfter(DISK_SIZE / 2);
        FakeQemu.Source vm = new FakeQemu.Source();
        MigrationSource first = migrate(proxy.port(), vm, blocks, MigrationParameters.defaults().withMaxBandwidth(16L << 20)
                .withRetryWindowMs(0), Optional.empty());
        assertTrue(first.await(60_000));
        MigrationReport report = first.stats().report();
        assertEquals(MigrationStatus.FAILED, report.status());
        assertTrue(vm.resumed.get(), "the source VM runs on");
        assertTrue(first.resumePoint().isPresent(), () -> "not resumable: " + report.error());
        assertTrue(report.resume().orElseThrow() instanceof ResumeInfo.Resumable, () -> "info migrate: " + report.resume());
        assertTrue(report.error().orElse("").contains("migrate -r"), () -> "the error must say how to go on: " + report.error());
        awaitAborted(host.last(), DISK_SIZE / 2);
        assertTrue(host.last().keptPartial, "the destination must keep its partial state");
        return first;
    }

    @Test
    void shouldResumeWithMigrateRFromWhereAFailedMigrationStopped() throws Exception {
        fillSource();
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            FakeBlocks blocks = FakeBlocks.of(source);
            ResumePoint point = failMidBulk(proxy, blocks).resumePoint().orElseThrow();
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource resumed = migrate(destination.port(), vm, blocks, MigrationParameters.defaults(), Optional.of(point));
            assertTrue(resumed.await(60_000));
            MigrationReport report = resumed.stats().report();
            assertEquals(MigrationStatus.COMPLETED, report.status(), () -> report.error().orElse(""));
            FakeQemu.Prepared prepared = host.last();
            prepared.close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.get(0)));
            long owed = point.info().owedBytes();
            assertTrue(owed < DISK_SIZE, "the destination confirmed nothing before the cut: " + owed + " bytes owed");
            // No guest writes here: the resume sends what the point owed, at most (the destination's journal may hold more).
            assertTrue(report.diskTransferredBytes() <= owed, "the resume sent " + report.diskTransferredBytes()
                    + " bytes; the point owed " + owed);
        }
    }

    @Test
    void shouldResumeFromTheJournalAfterTheDestinationRestarted() throws Exception {
        fillSource();
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            FakeBlocks blocks = FakeBlocks.of(source);
            ResumePoint point = failMidBulk(proxy, blocks).resumePoint().orElseThrow();
            destination.close();                           // a new process: nothing in memory, the files remain
            host = new FakeQemu.Destination(dstDir);
            destination = new MigrationDestination("127.0.0.1", 0, host);
            destination.start();
            MigrationSource resumed = migrate(destination.port(), new FakeQemu.Source(), blocks, MigrationParameters.defaults(),
                    Optional.of(point));
            assertTrue(resumed.await(60_000));
            assertEquals(MigrationStatus.COMPLETED, resumed.stats().report().status(), () -> resumed.stats().report().error().orElse(""));
            host.last().close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), host.last().paths.get(0)));
        }
    }

    @Test
    void shouldRefuseAResumeWhenTheDestinationDiskIsNotTheOneItLeft() throws Exception {
        fillSource();
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            FakeBlocks blocks = FakeBlocks.of(source);
            ResumePoint point = failMidBulk(proxy, blocks).resumePoint().orElseThrow();
            try (RawImage other = RawImage.open(host.last().paths.get(0), false)) {   // someone wrote over what was received
                byte[] chunk = new byte[1 << 20];
                new Random(5).nextBytes(chunk);
                for (long offset = 0; offset < DISK_SIZE / 2; offset += chunk.length) {
                    other.write(offset, ByteBuffer.wrap(chunk));
                }
            }
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource resumed = migrate(destination.port(), vm, blocks, MigrationParameters.defaults(), Optional.of(point));
            assertTrue(resumed.await(60_000));
            MigrationReport report = resumed.stats().report();
            assertEquals(MigrationStatus.FAILED, report.status());
            assertTrue(report.error().orElse("").contains("resume refused: disk disk0 differs from the source"), () -> report.error().orElse(""));
            assertTrue(!report.error().orElse("").contains("\n"), "one line");
            assertTrue(vm.resumed.get(), "the source VM runs on");
            assertTrue(resumed.resumePoint().isEmpty(), "a refused resume leaves nothing to resume");
            assertTrue(blocks.stopped, "QEMU's kept bitmap goes with the refused resume");
            assertTrue(destination.stats().report().error().orElse("").contains("resume refused"),
                    () -> "destination: " + destination.stats().report().error());
        }
    }

    @Test
    void shouldAbortSwitchoverWhenDigestsDiffer() throws Exception {
        System.setProperty("ferry.fault", "drop-block");
        try {
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource migration = migrate(destination.port(), vm);
            assertTrue(migration.await(60_000));
            MigrationReport report = migration.stats().report();
            assertEquals(MigrationStatus.FAILED, report.status());
            assertTrue(report.error().orElse("").contains("digest mismatch"), () -> "error: " + report.error());
            assertTrue(vm.resumed.get());
            assertFalse(host.last().resumed.get(), "destination VM must not run after a digest mismatch");
        } finally {
            System.clearProperty("ferry.fault");
        }
    }

    @Test
    void shouldCancelAndResume() throws Exception {
        FakeQemu.Source vm = new FakeQemu.Source();
        MigrationSource migration = migrate(destination.port(), vm, FakeBlocks.of(source), 2L << 20);   // a bulk pass of 3 s
        long deadline = System.currentTimeMillis() + 30_000;
        while (!(migration.stats().report().phase() == Phase.BULK_COPY && migration.stats().report().diskTransferredBytes() > 0)
                && System.currentTimeMillis() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(Phase.BULK_COPY, migration.stats().report().phase(), "cancel mid-bulk");
        migration.cancel("user asked");
        assertTrue(migration.await(30_000));
        assertEquals(MigrationStatus.CANCELLED, migration.stats().report().status());
        assertTrue(vm.resumed.get());
        awaitAborted(host.last(), -1);
    }

    @Test
    void shouldCancelWhileTheDestinationHasStoppedReading() throws Exception {
        try (FaultProxy proxy = new FaultProxy(destination.port())) {
            proxy.stallAfter(4L << 20);                 // mid bulk pass: the source's sends block on full buffers
            FakeQemu.Source vm = new FakeQemu.Source();
            MigrationSource migration = migrate(proxy.port(), vm);
            long deadline = System.currentTimeMillis() + 30_000;
            while (proxy.forwarded() < (4L << 20) && System.currentTimeMillis() < deadline) {
                Thread.sleep(10);
            }
            Thread.sleep(500);                          // let the send block
            migration.cancel("user asked");
            // The stalled destination would hold a send for its whole 120 s silence timeout: the cancel
            // must not wait for it.
            assertTrue(migration.await(10_000), "cancel did not stop a send blocked on a stalled destination");
            assertEquals(MigrationStatus.CANCELLED, migration.stats().report().status(), () -> migration.stats().report().toString());
            assertTrue(vm.resumed.get());
            assertTrue(vm.detached.get(), "QEMU event listeners were left attached");
        }
    }

    @Test
    void shouldDetachFromQemuAndCloseTheStreamAfterCompleting() throws Exception {
        FakeQemu.Source vm = new FakeQemu.Source();
        FakeBlocks blocks = FakeBlocks.of(source);
        MigrationSource migration = new MigrationSource("test-vm", blocks.disks(), vm, blocks,
                new MigrationRequest("127.0.0.1", destination.port(), true, false), MigrationParameters.defaults(), srcDir);
        migration.start();
        assertTrue(migration.await(60_000));
        assertEquals(MigrationStatus.COMPLETED, migration.stats().report().status(), () -> migration.stats().report().toString());
        assertTrue(vm.detached.get(), "QEMU event listeners were left attached");
        assertTrue(blocks.stopped, "bitmaps and exports were left in QEMU's block layer");
        assertEquals(SourceState.COMPLETED, migration.state());
        assertTrue(Files.notExists(srcDir.resolve("ram-out.sock")), "the RAM tunnel's listener socket is still there");
    }

    /** Every thread's stack, virtual threads included, for a test that timed out (a hang shows where it waits). */
    private String threadDump() {
        try {
            Path file = tmp.resolve("threads-" + System.nanoTime() + ".txt");
            java.lang.management.ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class)
                    .dumpThreads(file.toString(), com.sun.management.HotSpotDiagnosticMXBean.ThreadDumpFormat.TEXT_PLAIN);
            return Files.readString(file);
        } catch (IOException e) {
            return "thread dump failed: " + e;
        }
    }
}
