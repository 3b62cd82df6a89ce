package ferry.cli;

import static ferry.cli.VmHosts.assertSourceRuns;
import static ferry.cli.VmHosts.awaitEnd;
import static ferry.cli.VmHosts.awaitPartialKept;
import static ferry.cli.VmHosts.awaitWritesBeyond;
import static ferry.cli.VmHosts.freePort;
import static ferry.cli.VmHosts.heartbeat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.BlockImage;
import ferry.image.raw.RawImage;
import ferry.testkit.FaultProxy;
import ferry.testkit.Tools;
import ferry.vm.guest.GuestRecord;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Live migration with disks between two {@code ferry run} processes running the demo guest under
 * QEMU (TCG here): the seed's workflow typed into the source's monitor, then checks of the data.
 * Each test boots one source guest and migrates it several times where it can, to stay within
 * CI's time.
 */
@Tag("vm")
class MigrationIT {
    private static final long DISK_SIZE = 256L << 20;
    /** The incremental test's base: 2048 guest records (8 MiB) at 192 MiB, written with this boot id. */
    private static final long BASE_DATA_OFFSET = 192L << 20, BASE_DATA_LENGTH = 8L << 20, BASE_BOOT_ID = 77;
    /**
     * The incremental test's guest. Its 4 KiB writes land uniformly on 4096 clusters of 64 KiB, so after N writes
     * about 128 * exp(-N / 4096) of the base's 128 clusters are untouched, and only those let check 1 judge.
     * At 512 KiB/s (128 writes/s) that is 19 after a minute of writing and still 1 after three; the VM tests'
     * guests write less under TCG. The rate is a cap: a slower guest only leaves more to judge.
     */
    private static final String INCREMENTAL_WORKLOAD = "write,rate=512k,seconds=600";

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuest() {
        VmHosts.buildGuest();
    }

    private static List<String> vmArgs(String name, Path disk, String workload) {
        return VmHosts.vmArgs(name, VmHosts.drive(disk, "raw"), workload);
    }

    /** The source host; with {@code preexistingData}, 8 MiB of random bytes at 64 MiB (not guest records). */
    private LocalHost source(String name, String workload, boolean preexistingData) throws Exception {
        Path disk = tmp.resolve("src/disk.raw");
        Files.createDirectories(disk.getParent());
        try (RawImage image = RawImage.create(disk, DISK_SIZE)) {
            if (!preexistingData) {
                return LocalHost.start("source", VmHosts.ferry(), tmp.resolve("src"), vmArgs(name, disk, workload));
            }
            Random random = new Random(1);                  // some data that predates the guest: 8 MiB at 64 MiB
            byte[] chunk = new byte[1 << 20];
            for (int i = 0; i < 8; i++) {
                random.nextBytes(chunk);
                image.write((64L << 20) + ((long) i << 20), ByteBuffer.wrap(chunk));
            }
        }
        return LocalHost.start("source", VmHosts.ferry(), tmp.resolve("src"), vmArgs(name, disk, workload));
    }

    private LocalHost destination(String dir, String name, String workload, int port, String... jvmOptions) throws Exception {
        return VmHosts.destination(dir, tmp.resolve(dir), vmArgs(name, tmp.resolve(dir + "/disk.raw"), workload), port, jvmOptions);
    }

    @Test
    void idleGuestArrivesByteIdenticalAndRunsOnTheDestination() throws Exception {
        int port = freePort();
        try (LocalHost source = source("mig-idle", "idle", true);
             LocalHost destination = destination("dst", "mig-idle", "idle", port)) {
            source.awaitSerial("heartbeat idle=", 120_000);
            assertEquals("", source.monitor("migrate -d -b tcp://127.0.0.1:" + port));
            InfoMigrateText info = awaitEnd(source, 120_000);
            assertEquals("completed", info.status(), info.fields().toString());
            assertEquals("VM status: running", destination.monitor("info status"));
            assertEquals("VM status: paused (postmigrate)", source.monitor("info status"));
            long idleBefore = Long.parseLong(destination.awaitSerial("heartbeat idle=", 30_000)
                    .replaceAll(".*idle=(\\d+).*", "$1"));
            destination.awaitSerial("heartbeat idle=" + (idleBefore + 2), 30_000);   // the guest lives on
            // Byte-identical: the source is paused since switchover, the idle guest does not write.
            destination.monitor("stop");
            assertEquals(-1, Files.mismatch(tmp.resolve("src/disk.raw"), tmp.resolve("dst/disk.raw")));
            assertTrue(info.number("transferred disk") < 16 * 1024, "holes were sent: " + info.field("transferred disk"));
            assertTrue(info.number("downtime") >= 0);
        }
    }

    @Test
    void writingGuestSurvivesEveryFaultThenMigratesAndItsRecordsVerify() throws Exception {
        try (LocalHost source = source("mig-faults", "write,rate=2M,seconds=600", false)) {
            source.awaitSerial("heartbeat seq=", 120_000);
            long bootId = GuestWriter.bootId(source);
            int port = freePort();
            // Each fault ends the migration here: the source does not reconnect on its own (that is ResumeIT's).
            source.monitor("migrate_set_parameter retry-window 0");
            try (LocalHost destination = destination("dst1", "mig-faults", "write,rate=2M,seconds=600", port)) {
                // migrate_cancel while the RAM crawls at 4 MiB/s
                source.monitor("migrate_set_speed 4M");
                assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
                Thread.sleep(4000);
                assertEquals("", source.monitor("migrate_cancel"));
                InfoMigrateText cancelled = awaitEnd(source, 60_000);
                assertEquals("cancelled", cancelled.status(), cancelled.fields().toString());
                assertSourceRuns(source, "migrate_cancel");
                awaitPartialKept(destination, tmp.resolve("dst1/disk.raw"));

                source.monitor("migrate_set_speed 1G");
                try (FaultProxy proxy = new FaultProxy(port)) {
                    // a flipped byte: the destination refuses the corrupt frame
                    proxy.flipAt(3L << 20);
                    source.monitor("migrate -d -b tcp:127.0.0.1:" + proxy.port());
                    InfoMigrateText corrupt = awaitEnd(source, 120_000);
                    assertEquals("failed", corrupt.status());
                    assertTrue(corrupt.field("ferry error").contains("checksum mismatch"), corrupt.fields().toString());
                    assertSourceRuns(source, "a corrupt stream");
                    awaitPartialKept(destination, tmp.resolve("dst1/disk.raw"));

                    // the link cut in the middle
                    proxy.cutAfter(20L << 20);
                    source.monitor("migrate -d -b tcp:127.0.0.1:" + proxy.port());
                    InfoMigrateText cut = awaitEnd(source, 120_000);
                    assertEquals("failed", cut.status());
                    assertSourceRuns(source, "a cut link");
                    awaitPartialKept(destination, tmp.resolve("dst1/disk.raw"));
                }
                // the destination dies (kill -9) in the middle
                source.monitor("migrate_set_speed 4M");
                source.monitor("migrate -d -b tcp:127.0.0.1:" + port);
                Thread.sleep(3000);
                destination.process().destroyForcibly().waitFor();
                ProcessHandle.allProcesses().filter(p -> p.info().commandLine().orElse("").contains("-name mig-faults")
                        && p.info().commandLine().orElse("").contains("dst1")).forEach(ProcessHandle::destroyForcibly);
                InfoMigrateText killed = awaitEnd(source, 60_000);
                assertEquals("failed", killed.status());
                assertSourceRuns(source, "the destination died");
            }
            source.monitor("migrate_set_speed 1G");
            int port2 = freePort();
            try (LocalHost bad = destination("dst2", "mig-faults", "write,rate=2M,seconds=600", port2, "-Dferry.fault=drop-block")) {
                source.monitor("migrate -d -b tcp:127.0.0.1:" + port2);
                InfoMigrateText mismatch = awaitEnd(source, 120_000);
                assertEquals("failed", mismatch.status());
                assertTrue(mismatch.field("ferry error").contains("digest mismatch"), mismatch.fields().toString());
                assertSourceRuns(source, "a digest mismatch");
                assertEquals("VM status: paused (inmigrate)", bad.monitor("info status"));
            }
            int port3 = freePort();
            try (LocalHost destination = destination("dst3", "mig-faults", "write,rate=2M,seconds=600", port3)) {
                source.monitor("migrate -d -b tcp://127.0.0.1:" + port3);
                InfoMigrateText done = awaitEnd(source, 180_000);
                assertEquals("completed", done.status(), done.fields().toString());
                long seqAtSwitchover = heartbeat(source);                     // the source is paused since switchover
                awaitWritesBeyond(destination, seqAtSwitchover, 60_000, "the guest stopped writing after switchover");
                assertEquals("", destination.monitor("stop"));
                long lastReported = heartbeat(destination);
                // Every record the guest wrote, before, during and after the migration, is where it belongs.
                try (RawImage image = RawImage.open(tmp.resolve("dst3/disk.raw"), true)) {
                    GuestWriter.assertHoldsEveryWrite(image, bootId, lastReported);
                }
                try (RawImage image = RawImage.open(tmp.resolve("src/disk.raw"), true)) {
                    GuestWriter.assertHoldsEveryWrite(image, bootId, seqAtSwitchover);
                }
            }
        }
    }

    @Test
    void guestWritesAreThrottledWhenTheyOutrunTheLinkAndTheMigrationConverges() throws Exception {
        try (LocalHost source = source("mig-throttle", "write,rate=max,seconds=600", false)) {
            source.awaitSerial("heartbeat seq=", 120_000);
            int port = freePort();
            long bootId = GuestWriter.bootId(source);
            try (LocalHost destination = destination("dst", "mig-throttle", "write,rate=max,seconds=600", port)) {
                // A link an eighth of the guest's measured write rate: the guest outruns it on any machine.
                source.monitor("migrate_set_speed " + VmHosts.linkSlowerThanTheGuest(source));
                assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
                VmHosts.awaitThrottled(source);
                awaitWritesBeyond(source, heartbeat(source), 60_000, "throttling must slow the guest's writes, not stop them");
                source.monitor("migrate_set_speed 1G");              // the link recovers: the migration must end
                InfoMigrateText done = awaitEnd(source, 180_000);
                assertEquals("completed", done.status(), done.fields().toString());
                assertEquals("VM status: running", destination.monitor("info status"));
                awaitWritesBeyond(destination, heartbeat(source), 60_000, "the guest does not write on the destination");
                assertEquals("", destination.monitor("stop"));
                try (RawImage image = RawImage.open(tmp.resolve("dst/disk.raw"), true)) {
                    GuestWriter.assertHoldsEveryWrite(image, bootId, heartbeat(destination));
                }
            }
        }
    }

    /** A raw base holding 2048 valid guest records (8 MiB) at 192 MiB, so the overlay's records verify on top of it. */
    private static void writeBase(Path base, long bootId) throws Exception {
        Files.createDirectories(base.getParent());
        try (RawImage image = RawImage.create(base, DISK_SIZE)) {
            ByteBuffer block = ByteBuffer.allocateDirect(ferry.vm.guest.GuestRecord.SIZE);
            for (int i = 0; i < BASE_DATA_LENGTH / ferry.vm.guest.GuestRecord.SIZE; i++) {
                long offset = BASE_DATA_OFFSET + (long) i * ferry.vm.guest.GuestRecord.SIZE;
                block.clear();
                ferry.vm.guest.GuestRecord.encode(block, i + 1, offset, bootId, 0);
                block.clear();                                   // encode writes in place: send the whole record
                image.write(offset, block);
            }
        }
    }

    @Test
    void incrementalMigrationMovesOnlyTheOverlayOntoTheSameBase() throws Exception {
        // What "only the overlay" means, independent of how much the guest wrote before the migration (which grows
        // with the machine's speed; "transferred disk < 8 MiB" failed at 15228 and 16896 kbytes on slower hosts):
        //  1. the destination overlay holds no base data of its own: each of its own clusters holds a record the
        //     guest wrote (a cluster is allocated only by a guest write: at the source, then sent, or after switchover);
        //  2. the base's 2048 records all show through the destination overlay (or were overwritten by the guest's);
        //  3. the sender sent at most the source overlay's own clusters plus one granule per guest write during the
        //     migration (the dirty passes).
        Tools.require("qemu-img");
        Path sourceOverlay = tmp.resolve("src/overlay.qcow2");
        Path destinationOverlay = tmp.resolve("dst/overlay.qcow2");
        writeBase(tmp.resolve("src/base.raw"), BASE_BOOT_ID);
        Tools.run(60, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", sourceOverlay.toString()).orFail();
        long sourceClusterSize = clusterSize(sourceOverlay);
        writeBase(tmp.resolve("bad/base.raw"), BASE_BOOT_ID + 1);          // same size, other content
        Files.createDirectories(tmp.resolve("dst"));
        Files.copy(tmp.resolve("src/base.raw"), tmp.resolve("dst/base.raw"));
        List<String> args = vmArgs("mig-incr", sourceOverlay, INCREMENTAL_WORKLOAD);
        args.set(args.size() - 1, "file=" + sourceOverlay + ",format=qcow2,if=virtio,id=disk0");
        long transferredBytes;
        long seqBeforeMigrate;
        long granuleSize;
        try (LocalHost source = LocalHost.start("source", VmHosts.ferry(), tmp.resolve("src"), args)) {
            source.awaitSerial("heartbeat seq=", 120_000);
            int badPort = freePort();
            try (LocalHost bad = incomingOverlay("bad", badPort)) {
                source.monitor("migrate -d -b -i tcp:127.0.0.1:" + badPort);
                InfoMigrateText refused = awaitEnd(source, 60_000);
                assertEquals("failed", refused.status());
                assertTrue(refused.field("ferry error").contains("differs from the source"), refused.fields().toString());
                assertFalse(Files.exists(tmp.resolve("bad/overlay.qcow2")), "the refused destination kept its overlay");
            }
            assertSourceRuns(source, "a refused base");
            granuleSize = Long.parseLong(source.monitor("info migrate_parameters")
                    .replaceAll("(?s).*granule-size: (\\d+) bytes.*", "$1"));
            int port = freePort();
            try (LocalHost destination = incomingOverlay("dst", port)) {
                seqBeforeMigrate = heartbeat(source);                     // at most the seq when the migration starts
                source.monitor("migrate -d -b -i tcp://127.0.0.1:" + port);
                InfoMigrateText done = awaitEnd(source, 180_000);
                assertEquals("completed", done.status(), done.fields().toString());
                transferredBytes = done.number("transferred disk") << 10;
                long seqAtSwitchover = heartbeat(source);
                long deadline = System.currentTimeMillis() + 60_000;
                while (heartbeat(destination) < seqAtSwitchover + 100 && System.currentTimeMillis() < deadline) {
                    Thread.sleep(250);
                }
                destination.monitor("quit");
                assertEquals(0, destination.awaitExit(60_000));
            }
            Tools.run(60, "qemu-img", "check", destinationOverlay.toString()).orFail();
            long window = Math.max(sourceClusterSize, clusterSize(destinationOverlay));
            List<long[]> own = ownDataRanges(destinationOverlay);
            try (var overlay = ferry.image.qcow2.Qcow2Image.open(destinationOverlay, true)) {
                VerifyReport report = RecordVerifier.verify(overlay);
                assertTrue(report.ok(), report.toString());
                List<Long> travelled = ownWindowsWithoutAGuestRecord(overlay, own, window);
                long baseWindows = BASE_DATA_LENGTH / window;
                long judged = baseWindows - windowsIn(own, window, BASE_DATA_OFFSET, BASE_DATA_LENGTH);
                assertEquals(List.of(), travelled, "clusters of the destination overlay (" + window + " bytes each, offsets"
                        + " listed) hold data but no guest record: base data travelled; " + judged + " of the base's "
                        + baseWindows + " clusters were left to the base");
                assertEquals(List.of(), blocksNotRecords(overlay, BASE_DATA_OFFSET, BASE_DATA_LENGTH),
                        "the base's records do not show through the destination overlay at these offsets");
            }
            source.monitor("quit");                                    // the source overlay, final and flushed
            source.awaitExit(60_000);
        }
        Tools.run(60, "qemu-img", "check", sourceOverlay.toString()).orFail();
        long sourceOwnBytes = ownDataRanges(sourceOverlay).stream().mapToLong(r -> r[1]).sum();
        long lastSeqAtSource;                     // records are never replaced by older ones: the last write's seq
        try (var overlay = ferry.image.qcow2.Qcow2Image.open(sourceOverlay, true)) {
            lastSeqAtSource = RecordVerifier.verify(overlay).highestSeq();
        }
        long writesDuringMigration = lastSeqAtSource - seqBeforeMigrate;
        assertTrue(transferredBytes <= sourceOwnBytes + writesDuringMigration * granuleSize, "sent " + transferredBytes
                + " bytes, but the source overlay holds " + sourceOwnBytes + " bytes of its own and the guest wrote "
                + writesDuringMigration + " records of at most one " + granuleSize + "-byte granule during the migration:"
                + " base data travelled");
    }

    /** {@code qemu-img info}'s cluster size of a qcow2 image. */
    private static long clusterSize(Path qcow2) {
        String json = Tools.run(60, "qemu-img", "info", "-U", "--output=json", qcow2.toString()).orFail().stdout();
        return Long.parseLong(json.replaceAll("(?s).*\"cluster-size\": (\\d+).*", "$1"));
    }

    /** The ranges {start, length} that {@code qemu-img map} shows as data of the image itself (depth 0), not of its base. */
    private static List<long[]> ownDataRanges(Path qcow2) {
        String json = Tools.run(60, "qemu-img", "map", "-U", "--output=json", "-f", "qcow2", qcow2.toString()).orFail().stdout();
        List<long[]> own = new ArrayList<>();
        java.util.regex.Matcher entry = java.util.regex.Pattern.compile("\\{[^}]*}").matcher(json);
        while (entry.find()) {
            String e = entry.group();
            if (mapNumber(e, "depth") == 0 && e.contains("\"data\": true")) {
                own.add(new long[] {mapNumber(e, "start"), mapNumber(e, "length")});
            }
        }
        return own;
    }

    private static long mapNumber(String entry, String key) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"" + key + "\": (\\d+)").matcher(entry);
        assertTrue(m.find(), "no " + key + " in qemu-img map entry " + entry);
        return Long.parseLong(m.group(1));
    }

    /** The {@code window}-aligned windows touched by {@code ranges}, in order. */
    private static java.util.SortedSet<Long> windows(List<long[]> ranges, long window) {
        java.util.SortedSet<Long> out = new java.util.TreeSet<>();
        for (long[] r : ranges) {
            for (long w = r[0] / window * window; w < r[0] + r[1]; w += window) {
                out.add(w);
            }
        }
        return out;
    }

    private static long windowsIn(List<long[]> ranges, long window, long offset, long length) {
        return windows(ranges, window).subSet(offset, offset + length).size();
    }

    /**
     * The windows of {@code ranges} in which no 4 KiB block is a record the guest wrote (a valid record whose
     * boot id is not the base's). A window is the larger of the two overlays' clusters: the sender sends a
     * source cluster whole, so each window a migration filled holds the guest write that allocated it.
     */
    private static List<Long> ownWindowsWithoutAGuestRecord(BlockImage image, List<long[]> ranges, long window) throws IOException {
        ByteBuffer block = ByteBuffer.allocateDirect(GuestRecord.SIZE);
        List<Long> without = new ArrayList<>();
        for (long w : windows(ranges, window)) {
            boolean guestWrote = false;
            for (long offset = w; offset < w + window && !guestWrote; offset += GuestRecord.SIZE) {
                image.read(offset, block.clear());
                guestWrote = GuestRecord.check(block.clear(), offset) instanceof GuestRecord.Block.Valid v
                        && v.bootId() != BASE_BOOT_ID;
            }
            if (!guestWrote) {
                without.add(w);
            }
        }
        return without;
    }

    /** Offsets of the 4 KiB blocks in [offset, offset + length) that are not valid records. */
    private static List<Long> blocksNotRecords(BlockImage image, long offset, long length) throws IOException {
        ByteBuffer block = ByteBuffer.allocateDirect(GuestRecord.SIZE);
        List<Long> out = new ArrayList<>();
        for (long at = offset; at < offset + length; at += GuestRecord.SIZE) {
            image.read(at, block.clear());
            if (!(GuestRecord.check(block.clear(), at) instanceof GuestRecord.Block.Valid)) {
                out.add(at);
            }
        }
        return out;
    }

    private LocalHost incomingOverlay(String dir, int port) throws Exception {
        List<String> args = vmArgs("mig-incr", tmp.resolve(dir + "/overlay.qcow2"), INCREMENTAL_WORKLOAD);
        args.set(args.size() - 1, "file=" + tmp.resolve(dir + "/overlay.qcow2") + ",format=qcow2,if=virtio,id=disk0");
        args.addAll(List.of("-incoming", "tcp:127.0.0.1:" + port));
        LocalHost host = LocalHost.start(dir, VmHosts.ferry(), tmp.resolve(dir), args);
        assertEquals("VM status: paused (inmigrate)", host.monitor("info status"));
        return host;
    }

}
