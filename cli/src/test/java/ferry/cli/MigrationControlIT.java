package ferry.cli;

import static ferry.cli.VmHosts.assertSourceRuns;
import static ferry.cli.VmHosts.awaitEnd;
import static ferry.cli.VmHosts.awaitPartialKept;
import static ferry.cli.VmHosts.awaitWritesBeyond;
import static ferry.cli.VmHosts.heartbeat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.raw.RawImage;
import ferry.monitor.MonitorClient;
import ferry.qmp.IoThrottle;
import ferry.testkit.FaultProxy;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The source's controls around a migration with disks, on real QEMU guests (issue 9: items 2, 7a, 7d,
 * 7e): what QEMU's block layer holds after each way a migration ends, two {@code migrate}s at once,
 * {@code cont} after the hand-over, {@code migrate_cancel} on a destination that stopped reading, and
 * {@code quit} in the middle of a bulk pass. Each test boots one guest and reuses its pair of hosts.
 */
@Tag("vm")
class MigrationControlIT {
    /** The user's own limits on the drive, which Ferry's write throttle must leave as they were. */
    private static final String USER_THROTTLE = "throttling.bps-read=209715200,throttling.iops-read=20000";
    private static final String DRIVE_ID = "disk0";
    private static final int PREFILL_MIB = 64;
    private static final long PREFILL_OFFSET = 64L << 20;
    /**
     * How long ferry may take to exit after {@code quit} during a bulk pass: its normal shutdown (QEMU is
     * given 10 s to stop). The bulk pass alone has a minute to go at 1 MiB/s, so an exit within this bound
     * means quit did not wait for the migration.
     */
    private static final long QUIT_TIMEOUT_MS = 30_000;

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuest() {
        VmHosts.buildGuest();
    }

    /**
     * One source migrates three times: cancelled while Ferry throttles the guest's writes, failed on a
     * cut link (with automatic reconnects off), then completed by one of two {@code migrate} commands typed
     * at once into two monitor clients. After the first two QEMU's block layer holds only the bitmap that
     * keeps the migration resumable, and the destination its partial state; after the completion nothing
     * of Ferry's; the drive's limits are the user's own again each time; after the completion {@code cont}
     * is refused.
     */
    @Test
    @Timeout(value = 400, unit = TimeUnit.SECONDS)
    void sourceKeepsNothingOfFerryAfterEachEndAndRefusesASecondMigrateAndCont() throws Exception {
        Path disk = Files.createDirectories(tmp.resolve("src")).resolve("disk.raw");
        RawImage.create(disk, VmHosts.DISK_SIZE).close();
        String drive = VmHosts.drive(disk, "raw") + "," + USER_THROTTLE;
        QemuBlockLayer qemu = new QemuBlockLayer(tmp.resolve("src/test-qmp.sock"), tmp.resolve("src/probe-nbd.sock"));
        List<String> sourceArgs = VmHosts.vmArgs("ctl-ends", drive, "write,rate=1M,seconds=600");
        sourceArgs.addAll(qemu.qemuArgs());
        List<String> destinationArgs = VmHosts.vmArgs("ctl-ends", VmHosts.drive(tmp.resolve("dst/disk.raw"), "raw") + ","
                + USER_THROTTLE, "write,rate=1M,seconds=600");
        try (LocalHost source = LocalHost.start("source", VmHosts.ferry(), tmp.resolve("src"), sourceArgs)) {
            source.awaitSerial("heartbeat seq=", VmHosts.BOOT_TIMEOUT_MS);
            long bootId = GuestWriter.bootId(source);
            IoThrottle own = qemu.look(DRIVE_ID).throttle();
            assertTrue(own.limited(), "the -drive's own limits did not reach QEMU: " + own);
            String ownLimitsLine = throttleLine(source);
            int port = VmHosts.freePort();
            try (LocalHost destination = VmHosts.destination("destination", tmp.resolve("dst"), destinationArgs, port)) {
                // 1. Cancelled while Ferry's bitmap, exports, NBD server and write throttle are all in QEMU.
                String link = VmHosts.linkSlowerThanTheGuest(source);
                source.monitor("migrate_set_speed " + link);
                assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
                VmHosts.awaitThrottled(source);
                QemuBlockLayer.Seen during = qemu.look(DRIVE_ID);
                System.out.println("link " + link + ", QEMU while migrating: " + during);
                assertTrue(!during.ferryBitmaps().isEmpty() && !during.ferryExports().isEmpty() && during.nbdServer()
                        && during.throttle().bpsWr() > 0, "while migrating, QEMU should show Ferry's state: " + during);
                assertEquals(own.bpsRd(), during.throttle().bpsRd(), "the user's read limit changed while throttling writes");
                assertEquals("", source.monitor("migrate_cancel"));
                InfoMigrateText cancelled = awaitEnd(source, 60_000);
                assertEquals("cancelled", cancelled.status(), cancelled.fields().toString());
                qemu.look(DRIVE_ID).assertOnlyTheResumeBitmap(own, "migrate_cancel");
                assertEquals(ownLimitsLine, throttleLine(source), "info block after migrate_cancel");
                assertSourceRuns(source, "migrate_cancel");
                awaitPartialKept(destination, tmp.resolve("dst/disk.raw"));

                // 2. Failed: the link is cut in the middle of the bulk pass (no reconnect: it would go through
                //    the proxy's next connection and complete). The fresh migrate drops step 1's resume point.
                source.monitor("migrate_set_speed 1G");
                source.monitor("migrate_set_parameter retry-window 0");
                try (FaultProxy proxy = new FaultProxy(port)) {
                    proxy.cutAfter(1L << 20);
                    assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + proxy.port()));
                    InfoMigrateText cut = awaitEnd(source, 120_000);
                    assertEquals("failed", cut.status(), cut.fields().toString());
                    System.out.println("cut link: " + cut.statusLine());
                }
                qemu.look(DRIVE_ID).assertOnlyTheResumeBitmap(own, "a cut link");
                assertEquals(ownLimitsLine, throttleLine(source), "info block after a cut link");
                assertSourceRuns(source, "a cut link");
                awaitPartialKept(destination, tmp.resolve("dst/disk.raw"));

                // 3. Two migrate commands at once from two monitor clients: one runs, the other is refused.
                List<String> replies = migrateTwiceAtOnce(source, "migrate -d -b tcp:127.0.0.1:" + port);
                System.out.println("two migrate commands at once: " + replies);
                assertTrue(replies.contains("") && replies.stream().anyMatch(r -> r.startsWith("Error: ")
                        && r.contains("migration process in progress")), "one migrate must run, the other be refused: " + replies);
                InfoMigrateText done = awaitEnd(source, 180_000);
                assertEquals("completed", done.status(), done.fields().toString());
                qemu.look(DRIVE_ID).assertNothingOfFerry(own, "a completed migration");
                assertEquals("VM status: running", destination.monitor("info status"));

                // 4. cont on the source would run the VM twice: refused in one line that names the way out.
                String cont = source.monitor("cont");
                assertEquals(1, cont.lines().count(), cont);
                assertTrue(cont.startsWith("Error: ") && cont.contains("cont --force"), cont);
                assertEquals("VM status: paused (postmigrate)", source.monitor("info status"));

                long seqAtSwitchover = heartbeat(source);
                awaitWritesBeyond(destination, seqAtSwitchover, 60_000, "the guest does not write on the destination");
                assertEquals("", destination.monitor("stop"));
                long lastReported = heartbeat(destination);
                try (RawImage image = RawImage.open(tmp.resolve("dst/disk.raw"), true)) {
                    System.out.println("records at the destination: " + GuestWriter.assertHoldsEveryWrite(image, bootId, lastReported));
                }
            }
        }
    }

    /**
     * {@code migrate_cancel} while the destination has stopped reading ends the migration at once, with
     * the source running; {@code quit} in the middle of a slow bulk pass ends ferry within its normal
     * shutdown, and the destination stops the QEMU it had prepared and keeps the disk for a resume.
     */
    @Test
    @Timeout(value = 300, unit = TimeUnit.SECONDS)
    void cancelOnAStalledDestinationAndQuitDuringABulkPassEndWithoutWaitingForTheLink() throws Exception {
        Path disk = Files.createDirectories(tmp.resolve("src")).resolve("disk.raw");
        try (RawImage image = RawImage.create(disk, VmHosts.DISK_SIZE)) {
            Random random = new Random(1);                   // 64 MiB that predate the guest: a bulk pass of a minute at 1 MiB/s
            byte[] chunk = new byte[1 << 20];
            for (int i = 0; i < PREFILL_MIB; i++) {
                random.nextBytes(chunk);
                image.write(PREFILL_OFFSET + ((long) i << 20), ByteBuffer.wrap(chunk));
            }
        }
        Path destinationDisk = tmp.resolve("dst/disk.raw");
        List<String> sourceArgs = VmHosts.vmArgs("ctl-stop", VmHosts.drive(disk, "raw"), "write,rate=256k,seconds=600");
        List<String> destinationArgs = VmHosts.vmArgs("ctl-stop", VmHosts.drive(destinationDisk, "raw"), "write,rate=256k,seconds=600");
        try (LocalHost source = LocalHost.start("source", VmHosts.ferry(), tmp.resolve("src"), sourceArgs)) {
            source.awaitSerial("heartbeat seq=", VmHosts.BOOT_TIMEOUT_MS);
            int port = VmHosts.freePort();
            try (LocalHost destination = VmHosts.destination("destination", tmp.resolve("dst"), destinationArgs, port)) {
                // 1. The destination stops reading 4 MiB into the bulk pass; the proxy holds the link open for
                //    a minute, so an end within 10 s is the cancel's doing, not a timeout's.
                try (FaultProxy proxy = new FaultProxy(port)) {
                    proxy.stallAfter(4L << 20);
                    assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + proxy.port()));
                    long deadline = System.currentTimeMillis() + 60_000;
                    while (proxy.forwarded() < (4L << 20) && System.currentTimeMillis() < deadline) {
                        Thread.sleep(50);
                    }
                    assertTrue(proxy.forwarded() >= (4L << 20), "the migration did not reach the stall: " + proxy.forwarded());
                    Thread.sleep(1000);                      // the source's socket buffers fill; its send blocks
                    assertEquals("active", InfoMigrateText.parse(source.monitor("info migrate")).status());
                    long cancelNs = System.nanoTime();
                    assertEquals("", source.monitor("migrate_cancel"));
                    InfoMigrateText cancelled = awaitEnd(source, 10_000);
                    System.out.println("migrate_cancel on a stalled destination ended the migration in "
                            + (System.nanoTime() - cancelNs) / 1_000_000 + " ms");
                    assertEquals("cancelled", cancelled.status(), cancelled.fields().toString());
                    assertSourceRuns(source, "migrate_cancel on a stalled destination");
                }                                             // closing the proxy drops the stalled link
                awaitPartialKept(destination, destinationDisk);

                // 2. quit while the bulk pass crawls at 1 MiB/s with a minute to go.
                source.monitor("migrate_set_speed 1m");
                assertEquals("", source.monitor("migrate -d -b tcp:127.0.0.1:" + port));
                long deadline = System.currentTimeMillis() + 60_000;
                InfoMigrateText info = InfoMigrateText.parse(source.monitor("info migrate"));
                while (!(info.field("ferry phase").equals("bulk") && info.number("transferred disk") > 0)
                        && System.currentTimeMillis() < deadline) {
                    assertTrue(List.of("setup", "active").contains(info.status()), info.fields().toString());
                    Thread.sleep(200);
                    info = InfoMigrateText.parse(source.monitor("info migrate"));
                }
                assertEquals("bulk", info.field("ferry phase"), info.fields().toString());
                ProcessHandle sourceQemu = qemuOf(source);
                qemuOf(destination);                          // what the destination prepared, and must stop
                assertTrue(Files.exists(destinationDisk), "the destination has not created its disk yet");
                long quitNs = System.nanoTime();
                quit(source);
                int code = source.awaitExit(QUIT_TIMEOUT_MS);
                System.out.println("quit during a bulk pass: ferry exited in " + (System.nanoTime() - quitNs) / 1_000_000 + " ms");
                String log = Files.readString(source.ferryLog());
                assertEquals(0, code, log);
                assertTrue(log.contains("quit from the monitor"), log);
                assertFalse(log.contains("\tat "), "no stack trace: " + log);
                assertFalse(sourceQemu.isAlive(), "the source QEMU outlived ferry's quit");

                awaitPartialKept(destination, destinationDisk);   // the disk stays for a resume; its QEMU goes
                assertEquals("VM status: paused (inmigrate)", destination.monitor("info status"));
                long until = System.currentTimeMillis() + 15_000;
                while (qemus(destination).findAny().isPresent() && System.currentTimeMillis() < until) {
                    Thread.sleep(100);
                }
                assertEquals(List.of(), qemus(destination).toList(), "the destination kept the QEMU it had prepared");
            }
        }
    }

    /** {@code quit}: the reply may be lost when ferry closes the monitor first. */
    private static void quit(LocalHost host) throws Exception {
        try {
            assertEquals("", host.monitor("quit"));
        } catch (java.io.IOException closed) {
            // the monitor went away with ferry
        }
    }

    private static java.util.stream.Stream<ProcessHandle> qemus(LocalHost host) {
        return host.process().toHandle().descendants()
                .filter(p -> p.isAlive() && p.info().command().map(c -> c.contains("qemu-system")).orElse(false));
    }

    private static ProcessHandle qemuOf(LocalHost host) {
        List<ProcessHandle> qemus = qemus(host).toList();
        assertEquals(1, qemus.size(), host.role() + ": one QEMU child: " + qemus);
        return qemus.getFirst();
    }

    /** The "I/O throttling:" line of QEMU's {@code info block} through Ferry's monitor (HMP passthrough). */
    private static String throttleLine(LocalHost host) throws Exception {
        String block = host.monitor("info block");
        return block.lines().filter(l -> l.strip().startsWith("I/O throttling:")).findFirst()
                .orElseThrow(() -> new AssertionError("no I/O throttling line in info block: " + block)).strip();
    }

    /** Types {@code line} into two monitor clients at the same moment; both replies. */
    private static List<String> migrateTwiceAtOnce(LocalHost host, String line) throws Exception {
        Path socket = host.dir().resolve("monitor.sock");
        try (MonitorClient first = MonitorClient.connect(socket, 10_000);
             MonitorClient second = MonitorClient.connect(socket, 10_000);
             ExecutorService clients = Executors.newFixedThreadPool(2)) {
            CountDownLatch go = new CountDownLatch(1);
            List<Future<String>> replies = new ArrayList<>();
            for (MonitorClient client : List.of(first, second)) {
                replies.add(clients.submit(() -> {
                    go.await();
                    return client.command(line);
                }));
            }
            go.countDown();
            List<String> out = new ArrayList<>();
            for (Future<String> reply : replies) {
                out.add(reply.get(60, TimeUnit.SECONDS));
            }
            return out;
        }
    }
}
