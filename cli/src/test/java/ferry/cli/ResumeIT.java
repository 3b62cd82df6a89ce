package ferry.cli;

import static ferry.cli.VmHosts.assertSourceRuns;
import static ferry.cli.VmHosts.awaitEnd;
import static ferry.cli.VmHosts.awaitWritesBeyond;
import static ferry.cli.VmHosts.freePort;
import static ferry.cli.VmHosts.heartbeat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.raw.RawImage;
import ferry.testkit.FaultProxy;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * Resuming an interrupted migration (issue 11, DESIGN.md "Resume") between {@code ferry run} processes running
 * the demo guest under QEMU: a link cut at half of the bulk pass then {@code migrate -r}, a destination killed with
 * {@code -9} and restarted then {@code -r}, a link that returns within the retry window, and a resume refused for a
 * wrong disk. In each case the guest writes throughout, and at the end every record it wrote is where it belongs
 * on the disk of the host it ran to.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>One guest for the whole class, to stay within CI's time: each case migrates it from the host it runs on to
 *       a new one, which runs it for the next case (the guest runs on, its records carry over). A case that leaves it
 *       stopped or lost makes the next one boot a fresh guest ({@link #guest()}), so the cases stay independent in
 *       what they check.</li>
 *   <li>The disk holds {@link #PREFILL} (128 MiB of records written before the boot) so that a bulk pass has data
 *       to cut in half; 128 MiB of the 256 stay holes, which the bulk pass does not send.</li>
 *   <li>Where a case cuts the link, it first slows the stream to {@link #CUT_LINK}: the destination makes a
 *       checkpoint durable every second or 64 MiB, so at 32 MiB/s the first half of the data passes in about two
 *       seconds, with at least one checkpoint confirmed before the cut whatever the machine's speed. Only then does
 *       a resume have something to go on from.</li>
 *   <li>The guest writes 512 KiB/s (128 records a second), little next to the 128 MiB the resume must not send
 *       again, so the bound on what a resume sends is far below a full copy.</li>
 * </ul>
 */
@Tag("vm")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ResumeIT {
    private static final long DISK_SIZE = VmHosts.DISK_SIZE;
    private static final GuestWriter.Prefill PREFILL = new GuestWriter.Prefill(0x77, 0, 128L << 20);
    private static final String NAME = "resume";
    private static final String WORKLOAD = "write,rate=512k,seconds=1200";
    private static final String CUT_LINK = "32M";
    /** Bounds a migration's wait: only how long a broken test may hang. */
    private static final long MIGRATION_TIMEOUT_MS = 180_000;
    private static final Pattern HELD = Pattern.compile("(\\d+)(?: bytes)? held");
    private static final Pattern OWED = Pattern.compile("(\\d+)(?: bytes)? owed");

    /** Kept when a case fails: the hosts' ferry.log, serial.log and QEMU logs say what happened. */
    @TempDir(cleanup = CleanupMode.ON_SUCCESS) static Path tmp;

    /** The host the shared guest runs on now (null before the first boot), and the guest's boot id. */
    private LocalHost guestHost;
    private long bootId;
    private int boots;

    @BeforeAll
    void buildGuest() {
        VmHosts.buildGuest();
    }

    @AfterAll
    void stopGuest() throws Exception {
        if (guestHost != null) {
            guestHost.close();
        }
    }

    // ---- the four cases ------------------------------------------------------------------------------------------

    @Test
    @Order(1)
    void linkCutAtHalfTheBulkPassThenMigrateResumeSendsOnlyWhatTheDestinationLacks() throws Exception {
        LocalHost source = guest();
        noAutomaticRetry(source);
        int port = freePort();
        LocalHost destination = destination("a-dst", port);
        try (FaultProxy proxy = new FaultProxy(port)) {
            long seqBefore = heartbeat(source);
            Interrupted cut = cutAtHalfTheBulkPass(source, destination, proxy);

            source.monitor("migrate_set_speed 1G");
            assertEquals("", source.monitor("migrate -d -b -r tcp:127.0.0.1:" + proxy.port()));
            InfoMigrateText done = awaitEnd(source, MIGRATION_TIMEOUT_MS);
            assertEquals("completed", done.status(), done.fields().toString());
            handOver(source, destination);
            long resumedBytes = done.number("transferred disk") << 10;
            assertResumeSentOnlyWhatWasMissing(source, cut, seqBefore, resumedBytes);
            verifyRecords(source, destination);
        } finally {
            closeUnlessGuest(destination);
        }
    }

    @Test
    @Order(2)
    void destinationKilledWithSignal9AndRestartedThenMigrateResumeCompletes() throws Exception {
        LocalHost source = guest();
        noAutomaticRetry(source);
        source.monitor("migrate_set_speed " + CUT_LINK);
        int port = freePort();
        LocalHost first = destination("b-dst", port);
        long firstQemu = -1;
        LocalHost restarted = null;
        try {
            long seqBefore = heartbeat(source);
            assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
            awaitDiskTransferred(source, PREFILL.length() / 2);
            firstQemu = first.qemuPid();                                 // started on the source's HELLO
            first.kill();
            InfoMigrateText failed = awaitEnd(source, 60_000);
            assertEquals("failed", failed.status(), failed.fields().toString());
            assertSourceRuns(source, "the destination was killed");
            String resumable = awaitLine(source, "Resumable", 10_000);
            assertTrue(ProcessHandle.of(firstQemu).map(ProcessHandle::isAlive).orElse(false),
                    "the killed destination's QEMU died with it: nothing stale to clean up, the case tests less than it means to");

            restarted = destination("b-dst", port);                      // the same command line: same dirs, same port
            String held = awaitLine(restarted, "Partial state kept", 10_000);
            assertTrue(awaitGone(firstQemu, 30_000), "the restarted destination left the killed one's QEMU (pid " + firstQemu
                    + ") running; its log: " + Files.readString(restarted.ferryLog()));
            Interrupted interrupted = new Interrupted(number(OWED, resumable), number(HELD, held));
            assertTrue(interrupted.heldBytes() > 0, "the killed destination kept nothing a resume could go on from: " + held);

            source.monitor("migrate_set_speed 1G");
            assertEquals("", source.monitor("migrate -d -b -r tcp:127.0.0.1:" + port));
            InfoMigrateText done = awaitEnd(source, MIGRATION_TIMEOUT_MS);
            assertEquals("completed", done.status(), done.fields().toString());
            handOver(source, restarted);
            assertResumeSentOnlyWhatWasMissing(source, interrupted, seqBefore, done.number("transferred disk") << 10);
            verifyRecords(source, restarted);
        } finally {
            first.close();
            if (restarted != null) {
                closeUnlessGuest(restarted);
            }
            if (firstQemu > 0) {
                ProcessHandle.of(firstQemu).ifPresent(ProcessHandle::destroyForcibly);   // only if the test failed before the check
            }
        }
    }

    @Test
    @Order(3)
    void linkThatReturnsWithinTheRetryWindowNeedsNoOneAndInfoMigrateShowsTheRetrying() throws Exception {
        LocalHost source = guest();
        source.monitor("migrate_set_parameter retry-window 60000");      // the default, whatever an earlier case set
        source.monitor("migrate_set_speed " + CUT_LINK);
        int port = freePort();
        LocalHost destination = destination("c-dst", port);
        try (FaultProxy proxy = new FaultProxy(port)) {
            proxy.cutAfter(halfTheData(source));
            proxy.refuseAfterCut(3_000);             // the source's reconnects find no one for 3 s: long enough to see
            assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + proxy.port()));
            String retrying = null;
            long deadline = System.currentTimeMillis() + MIGRATION_TIMEOUT_MS;
            String text = source.monitor("info migrate");
            InfoMigrateText info = InfoMigrateText.parse(text);
            while (!List.of("completed", "failed", "cancelled").contains(info.status()) && System.currentTimeMillis() < deadline) {
                if (retrying == null && resumeLine(text, "Retrying") != null) {
                    retrying = resumeLine(text, "Retrying");
                    System.out.println("while the link was down: Retrying: " + retrying);
                }
                Thread.sleep(100);
                text = source.monitor("info migrate");
                info = InfoMigrateText.parse(text);
            }
            assertEquals("completed", info.status(), "the migration did not complete on its own after the link returned: "
                    + info.fields());
            handOver(source, destination);
            assertTrue(retrying != null, "info migrate never said Retrying while the link was down");
            assertTrue(proxy.refused() > 0, "the source did not try to reconnect while the link was down");
            verifyRecords(source, destination);
        } finally {
            closeUnlessGuest(destination);
        }
    }

    @Test
    @Order(4)
    void resumeOntoADestinationWhoseDiskChangedIsRefusedAndAFreshMigrationCompletes() throws Exception {
        LocalHost source = guest();
        noAutomaticRetry(source);
        int port = freePort();
        try (LocalHost wrong = destination("d-dst", port); FaultProxy proxy = new FaultProxy(port)) {
            cutAtHalfTheBulkPass(source, wrong, proxy);
            // Another disk of the same size: other data in every block, so each granule the source sent, and so each one
            // a resume samples, differs from the source's. Not other guest records: a record ends in the CRC32C of the
            // rest, so the CRC32C of any record is the same constant, and so is the digest Ferry compares.
            overwriteWithOtherData(tmp.resolve("d-dst/disk.raw"));
            source.monitor("migrate_set_speed 1G");
            assertEquals("", source.monitor("migrate -d -b -r tcp:127.0.0.1:" + proxy.port()));
            InfoMigrateText refused = awaitEnd(source, 60_000);
            assertEquals("failed", refused.status(), refused.fields().toString());
            assertOneLineSaying(refused.statusLine(), "resume refused", "the source's info migrate");
            assertSourceRuns(source, "a refused resume");
            // The destination's info migrate forgets a session once it ended (it waits for the next source): its log says.
            String log = Files.readString(wrong.ferryLog());
            assertTrue(log.lines().anyMatch(l -> l.contains("WARNING") && l.contains("resume refused: disk disk0 differs")),
                    "the destination's log has no line saying why it refused the resume:\n" + log);
            assertFalse(log.contains("\tat "), "a stack trace in the destination's log:\n" + log);
        }
        int fresh = freePort();
        LocalHost destination = destination("d-fresh", fresh);
        try {
            assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + fresh));
            InfoMigrateText done = awaitEnd(source, MIGRATION_TIMEOUT_MS);
            assertEquals("completed", done.status(), done.fields().toString());
            handOver(source, destination);
            verifyRecords(source, destination);
        } finally {
            closeUnlessGuest(destination);
        }
    }

    // ---- what the cases share ------------------------------------------------------------------------------------

    /** What an interrupted migration left: the source owes {@code owedBytes}, the destination holds {@code heldBytes}. */
    private record Interrupted(long owedBytes, long heldBytes) { }

    private static void noAutomaticRetry(LocalHost source) throws Exception {
        assertEquals("", source.monitor("migrate_set_parameter retry-window 0"));
    }

    /**
     * Migrates through {@code proxy}, which cuts the link after half of the disk's data; checks the failure, that the
     * source runs on and offers a resume, and that the destination keeps a partial state holding some of it.
     */
    private Interrupted cutAtHalfTheBulkPass(LocalHost source, LocalHost destination, FaultProxy proxy) throws Exception {
        source.monitor("migrate_set_speed " + CUT_LINK);
        long cutAfter = halfTheData(source);
        proxy.cutAfter(cutAfter);
        assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + proxy.port()));
        InfoMigrateText failed = awaitEnd(source, MIGRATION_TIMEOUT_MS);
        assertEquals("failed", failed.status(), failed.fields().toString());
        assertSourceRuns(source, "a cut link");
        String resumable = awaitLine(source, "Resumable", 10_000);
        String held = awaitLine(destination, "Partial state kept", 30_000);
        System.out.println("cut after " + cutAfter + " bytes: source: Resumable: " + resumable + "; destination: Partial state kept: "
                + held);
        Interrupted interrupted = new Interrupted(number(OWED, resumable), number(HELD, held));
        assertTrue(interrupted.heldBytes() > 0, "the destination confirmed nothing in the " + cutAfter + " bytes before the cut"
                + " (checkpoints come every second): " + held);
        assertTrue(interrupted.heldBytes() <= cutAfter, "the destination holds more than passed the link before the cut ("
                + cutAfter + " bytes): " + held);
        return interrupted;
    }

    /** Half of the data on the guest's disk now: the prefill and the records the guest wrote, at most one block each. */
    private static long halfTheData(LocalHost source) throws IOException {
        return (PREFILL.length() + Math.max(0, heartbeat(source)) * ferry.vm.guest.GuestRecord.SIZE) / 2;
    }

    /**
     * What the resumed migration sent ({@code resumedBytes} of disk data) is only what the destination lacked: at most
     * what the source owed plus a granule per guest write since the first attempt began, and at most the disk's data
     * less what the destination held, plus the same writes. A full copy would send all of the disk's data.
     */
    private void assertResumeSentOnlyWhatWasMissing(LocalHost source, Interrupted interrupted, long seqBefore, long resumedBytes)
            throws Exception {
        long granule = Long.parseLong(source.monitor("info migrate_parameters").replaceAll("(?s).*granule-size: (\\d+) bytes.*", "$1"));
        Path disk = diskOf(source);
        long dataBytes = dataBytes(disk, (int) granule);            // the source is paused since switchover: final
        long writes;
        try (RawImage image = RawImage.open(disk, true)) {
            writes = GuestWriter.replay(image, bootId, PREFILL).lastSeq() - seqBefore;
        }
        String figures = "resumed: " + resumedBytes + " bytes of disk data sent; source owed " + interrupted.owedBytes()
                + ", destination held " + interrupted.heldBytes() + ", the disk holds " + dataBytes + " bytes of data, the guest"
                + " wrote " + writes + " records (granule " + granule + ") since the first attempt began";
        System.out.println(figures);
        assertTrue(resumedBytes <= interrupted.owedBytes() + writes * granule, "the resume sent more than the source owed"
                + " and the guest wrote: " + figures);
        assertTrue(resumedBytes <= dataBytes - interrupted.heldBytes() + writes * granule, "the resume sent again what the"
                + " destination held: " + figures);
    }

    /**
     * The guest ran to {@code destination}: checks every record it wrote is there (the guest stopped for the read,
     * then running on), and that the source's disk held all it wrote until the switchover.
     */
    private void verifyRecords(LocalHost source, LocalHost destination) throws Exception {
        long seqAtSwitchover = heartbeat(source);                       // the source is paused since switchover
        awaitWritesBeyond(destination, seqAtSwitchover, 60_000, "the guest does not write on the destination");
        assertEquals("", destination.monitor("stop"));
        long lastReported = heartbeat(destination);
        try (RawImage image = RawImage.open(diskOf(destination), true)) {
            VerifyReport report = RecordVerifier.verify(image);
            assertTrue(report.ok(), "the destination's disk: " + report);
            System.out.println(destination.role() + ": " + GuestWriter.assertHoldsEveryWrite(image, bootId, lastReported, PREFILL));
        }
        try (RawImage image = RawImage.open(diskOf(source), true)) {
            GuestWriter.assertHoldsEveryWrite(image, bootId, seqAtSwitchover, PREFILL);
        }
        assertEquals("", destination.monitor("cont"));
        assertEquals("VM status: running", destination.monitor("info status"));
    }

    /**
     * What {@code info migrate} of {@code host} says after {@code kind: } ("Retrying", "Resumable", "Partial state kept";
     * docs/monitor.md), waiting for it at most {@code timeoutMs}.
     */
    private static String awaitLine(LocalHost host, String kind, long timeoutMs) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        String text = host.monitor("info migrate");
        while (resumeLine(text, kind) == null && System.currentTimeMillis() < deadline) {
            Thread.sleep(200);
            text = host.monitor("info migrate");
        }
        String found = resumeLine(text, kind);
        assertTrue(found != null, host.role() + ": info migrate has no '" + kind + ":' line within " + timeoutMs + " ms:\n" + text);
        return found;
    }

    /** The rest of the {@code info migrate} line that says {@code kind: ...}, or null. */
    private static String resumeLine(String infoMigrate, String kind) {
        for (String line : infoMigrate.split("\n")) {
            int at = line.indexOf(kind + ": ");
            if (at >= 0) {
                return line.substring(at + kind.length() + 2).strip();
            }
        }
        return null;
    }

    private static long number(Pattern pattern, String text) {
        Matcher m = pattern.matcher(text);
        assertTrue(m.find(), "no figure matching " + pattern + " in '" + text + "'");
        return Long.parseLong(m.group(1));
    }

    private static void assertOneLineSaying(String line, String words, String where) {
        assertTrue(line.contains(words) && !line.contains("\n"), where + " should say '" + words + "' in one line: " + line);
    }

    /** Waits until the source's {@code info migrate} counts {@code bytes} of disk data transferred. */
    private static void awaitDiskTransferred(LocalHost source, long bytes) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        InfoMigrateText info = InfoMigrateText.parse(source.monitor("info migrate"));
        while ((info.number("transferred disk") << 10) < bytes && System.currentTimeMillis() < deadline) {
            assertTrue(List.of("setup", "active").contains(info.status()), info.fields().toString());
            Thread.sleep(100);
            info = InfoMigrateText.parse(source.monitor("info migrate"));
        }
        assertTrue((info.number("transferred disk") << 10) >= bytes, "the bulk pass did not reach " + bytes + " bytes: "
                + info.fields());
        assertEquals("bulk", info.field("ferry phase"), "past the bulk pass already: " + info.fields());
    }

    /** Bytes in the granules of {@code raw} that hold anything but zeroes: what a full bulk pass sends. */
    private static long dataBytes(Path raw, int granule) throws IOException {
        long data = 0;
        ByteBuffer chunk = ByteBuffer.allocate(1 << 20);
        try (FileChannel channel = FileChannel.open(raw, StandardOpenOption.READ)) {
            for (long offset = 0; offset < channel.size(); offset += chunk.capacity()) {
                chunk.clear();
                while (chunk.hasRemaining() && channel.read(chunk, offset + chunk.position()) >= 0) {
                    // fill the chunk
                }
                byte[] bytes = chunk.array();
                for (int g = 0; g < chunk.position(); g += granule) {
                    for (int i = g; i < Math.min(g + granule, chunk.position()); i++) {
                        if (bytes[i] != 0) {
                            data += Math.min(granule, chunk.position() - g);
                            break;
                        }
                    }
                }
            }
        }
        return data;
    }

    /** Random bytes over the whole of {@code raw}, as a different disk of the same size would hold. */
    private static void overwriteWithOtherData(Path raw) throws IOException {
        java.util.Random random = new java.util.Random(11);
        byte[] chunk = new byte[1 << 20];
        try (RawImage image = RawImage.open(raw, false)) {
            for (long offset = 0; offset < image.size(); offset += chunk.length) {
                random.nextBytes(chunk);
                image.write(offset, ByteBuffer.wrap(chunk));
            }
        }
    }

    private static boolean awaitGone(long pid, long timeoutMs) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false) && System.currentTimeMillis() < deadline) {
            Thread.sleep(100);
        }
        return !ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }

    // ---- the shared guest ----------------------------------------------------------------------------------------

    /** The host the guest runs and writes on: the one the last case migrated it to, or a fresh boot. */
    private LocalHost guest() throws Exception {
        if (guestHost != null && guestHost.process().isAlive()) {
            try {
                if (guestHost.monitor("info status").equals("VM status: running")) {
                    return guestHost;
                }
            } catch (IOException e) {
                System.out.println("the guest's host " + guestHost.role() + " does not answer (" + e.getMessage() + "): booting a new one");
            }
        }
        if (guestHost != null) {
            guestHost.close();
        }
        String dir = "boot" + ++boots;
        Path disk = tmp.resolve(dir + "/disk.raw");
        Files.createDirectories(disk.getParent());
        try (RawImage image = RawImage.create(disk, DISK_SIZE)) {
            PREFILL.write(image);
        }
        guestHost = LocalHost.start(dir, VmHosts.ferry(), tmp.resolve(dir), vmArgs(disk));
        guestHost.awaitSerial("heartbeat seq=", VmHosts.BOOT_TIMEOUT_MS);
        bootId = GuestWriter.bootId(guestHost);
        return guestHost;
    }

    /** The guest left {@code source} for {@code destination}: the source (paused since switchover) goes after the checks. */
    private void handOver(LocalHost source, LocalHost destination) {
        guestHost = destination;
        retired.add(source);
    }

    /** Hosts the guest left, closed at the end (their disks are read by the checks after the hand-over). */
    private final List<LocalHost> retired = new java.util.ArrayList<>();

    private void closeUnlessGuest(LocalHost host) throws Exception {
        if (host != guestHost) {
            host.close();
        }
        for (LocalHost old : retired) {
            old.close();
        }
        retired.clear();
    }

    private LocalHost destination(String dir, int port) throws Exception {
        return VmHosts.destination(dir, tmp.resolve(dir), vmArgs(tmp.resolve(dir + "/disk.raw")), port);
    }

    private static List<String> vmArgs(Path disk) {
        return VmHosts.vmArgs(NAME, VmHosts.drive(disk, "raw"), WORKLOAD);
    }

    /** The disk of a host this class started: DIR/disk.raw. */
    private static Path diskOf(LocalHost host) {
        return host.dir().resolve("disk.raw");
    }
}
