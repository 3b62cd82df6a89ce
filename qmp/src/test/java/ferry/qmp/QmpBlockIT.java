package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.qemu.QemuProcess;
import ferry.testkit.Tools;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The block-layer commands against a real QEMU 7.2 (TCG, no guest, {@code -S}) with one qcow2 drive:
 * dirty bitmaps, a transaction, QEMU's NBD server read by nbdinfo, export deletion, and I/O throttling.
 * Guest writes are stood in for by HMP {@code qemu-io}, which writes through the drive's BlockBackend.
 */
@Tag("vm")
class QmpBlockIT {
    private static final long WAIT_MS = 5_000;
    private static final long MiB = 1 << 20;

    @TempDir Path tmp;
    private QemuProcess qemu;
    private QmpClient qmp;
    private String node;
    private final BlockingQueue<QmpEvent> events = new LinkedBlockingQueue<>();

    @BeforeEach
    void startQemu() throws Exception {
        Tools.require("qemu-system-x86_64");
        Tools.require("qemu-img");
        Path disk = tmp.resolve("disk.qcow2");
        Tools.run(30, "qemu-img", "create", "-q", "-f", "qcow2", disk.toString(), "64M").orFail();
        Path socket = tmp.resolve("qmp.sock");
        qemu = new QemuProcess("qmp-block-it", List.of("qemu-system-x86_64", "-accel", "tcg", "-machine", "pc",
                "-nodefaults", "-display", "none", "-S",
                "-drive", "file=" + disk + ",format=qcow2,if=virtio,id=disk0",
                "-chardev", "socket,id=ferry-qmp,path=" + socket + ",server=on,wait=off",
                "-mon", "chardev=ferry-qmp,mode=control"), socket, tmp.resolve("qemu.log"));
        qemu.addListener(events::add);
        qemu.start(20_000);
        qmp = qemu.qmp();
        node = drive().inserted().orElseThrow().nodeName().orElseThrow();
    }

    @AfterEach
    void stopQemu() throws Exception {
        if (qemu != null) {
            qemu.close();
        }
    }

    private BlockInfo drive() throws QmpException {
        List<BlockInfo> drives = qmp.execute(new QmpCommand.QueryBlock());
        assertEquals(1, drives.size(), drives.toString());
        return drives.get(0);
    }

    private BlockInfo.DirtyBitmapInfo bitmap(String name) throws QmpException {
        return drive().inserted().orElseThrow().dirtyBitmap(name).orElseThrow(() -> new AssertionError("no bitmap " + name));
    }

    private void guestWrite(long offset, long length) throws QmpException {
        String out = qmp.execute(new QmpCommand.HumanMonitorCommand(
                "qemu-io disk0 \"write -P 0xab " + offset + " " + length + "\""));
        assertEquals("", out);
    }

    private QmpException refused(QmpCommand<?> command, String descPart) {
        QmpException e = assertThrows(QmpException.class, () -> qmp.execute(command));
        assertEquals(QmpException.Kind.ERROR_REPLY, e.kind(), e.getMessage());
        assertTrue(e.desc().orElseThrow().contains(descPart), e.getMessage());
        return e;
    }

    /** Waits, at most WAIT_MS, for BLOCK_EXPORT_DELETED with {@code id}; other events are skipped. */
    private void awaitExportDeletedEvent(String id) throws InterruptedException {
        long deadlineNs = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
        while (true) {
            QmpEvent event = events.poll(Math.max(0, deadlineNs - System.nanoTime()), TimeUnit.NANOSECONDS);
            assertTrue(event != null, "no BLOCK_EXPORT_DELETED for export " + id + " within " + WAIT_MS + " ms");
            if (event.equals(new QmpEvent.BlockExportDeleted(id))) {
                return;
            }
        }
    }

    /** Polls query-block-exports, at most WAIT_MS, until {@code id} is no longer listed. */
    private void awaitExportGone(String id) throws Exception {
        long deadlineNs = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
        while (qmp.execute(new QmpCommand.QueryBlockExports()).stream().anyMatch(e -> e.id().equals(id))) {
            assertTrue(System.nanoTime() < deadlineNs, "export " + id + " still listed after " + WAIT_MS + " ms");
            Thread.sleep(50);
        }
    }

    @Test
    void shouldExportADisabledBitmapOverNbdAndCleanUpAfterwards() throws Exception {
        Tools.require("nbdinfo");
        qmp.execute(new QmpCommand.BlockDirtyBitmapAdd(node, "b0", 4096));
        guestWrite(MiB, 64 * 1024);
        assertEquals(new BlockInfo.DirtyBitmapInfo(Optional.of("b0"), 64 * 1024, 4096, true, false, false, false), bitmap("b0"));

        // the pass boundary: a new bitmap starts recording as the old one stops, atomically
        qmp.execute(new QmpCommand.Transaction(List.of(
                new QmpCommand.BlockDirtyBitmapAdd(node, "b1", 4096),
                new QmpCommand.BlockDirtyBitmapDisable(node, "b0"))));
        guestWrite(8 * MiB, 4096);
        assertEquals(new BlockInfo.DirtyBitmapInfo(Optional.of("b0"), 64 * 1024, 4096, false, false, false, false), bitmap("b0"));
        assertEquals(new BlockInfo.DirtyBitmapInfo(Optional.of("b1"), 4096, 4096, true, false, false, false), bitmap("b1"));

        Path nbdSocket = tmp.resolve("nbd.sock");
        qmp.execute(new QmpCommand.NbdServerStart(nbdSocket, OptionalLong.of(4)));
        // 7.2 refuses to export a bitmap that still records on a read-only export
        refused(new QmpCommand.BlockExportAdd("e1", node, "live", false, List.of("b1"), false, Optional.empty()),
                "Enabled bitmap 'b1' incompatible with readonly export");
        qmp.execute(new QmpCommand.BlockExportAdd("e0", node, "pass0", false, List.of("b0"), true,
                Optional.of("ferry pass 0")));
        assertEquals(List.of(new BlockExportInfo("e0", BlockExportInfo.Type.NBD, node, false)),
                qmp.execute(new QmpCommand.QueryBlockExports()));
        assertTrue(bitmap("b0").busy());

        String uri = "nbd+unix:///pass0?socket=" + nbdSocket;
        String map = Tools.run(30, "nbdinfo", "--map=qemu:dirty-bitmap:b0", uri).orFail().stdout();
        assertEquals(List.of("0 1048576 0 clean", "1048576 65536 1 dirty", "1114112 65994752 0 clean"),
                map.lines().map(l -> l.trim().replaceAll("\\s+", " ")).toList(), map);
        String depth = Tools.run(30, "nbdinfo", "--map=qemu:allocation-depth", uri).orFail().stdout();
        assertTrue(depth.lines().anyMatch(l -> l.trim().matches("1048576\\s+65536\\s+1\\s+local")), depth);

        // an exported bitmap is busy: it cannot go before its export
        refused(new QmpCommand.BlockDirtyBitmapRemove(node, "b0"), "in use");
        events.clear();
        qmp.execute(new QmpCommand.BlockExportDel("e0"));
        awaitExportDeletedEvent("e0");
        awaitExportGone("e0");
        qmp.execute(new QmpCommand.BlockDirtyBitmapRemove(node, "b0"));
        qmp.execute(new QmpCommand.BlockDirtyBitmapRemove(node, "b1"));
        qmp.execute(new QmpCommand.NbdServerStop());
        assertEquals(List.of(), drive().inserted().orElseThrow().dirtyBitmaps());
        refused(new QmpCommand.NbdServerStop(), "NBD server not running");
    }

    @Test
    void shouldClearAndReEnableABitmap() throws Exception {
        qmp.execute(new QmpCommand.BlockDirtyBitmapAdd(node, "b0", OptionalLong.empty(), false, true));
        assertEquals(new BlockInfo.DirtyBitmapInfo(Optional.of("b0"), 0, 64 * 1024, false, false, false, false), bitmap("b0"));
        guestWrite(0, 4096);
        assertEquals(0, bitmap("b0").dirtyBytes());
        qmp.execute(new QmpCommand.BlockDirtyBitmapEnable(node, "b0"));
        guestWrite(0, 4096);
        assertEquals(64 * 1024, bitmap("b0").dirtyBytes());
        qmp.execute(new QmpCommand.Transaction(List.of(new QmpCommand.BlockDirtyBitmapClear(node, "b0"))));
        assertEquals(0, bitmap("b0").dirtyBytes());
        refused(new QmpCommand.BlockDirtyBitmapAdd(node, "b0", 4096), "Bitmap already exists: b0");
    }

    @Test
    void shouldSetAWriteLimitAndRestoreTheUsersThrottleExactly() throws Exception {
        BlockInfo drive = drive();
        assertEquals(IoThrottle.NONE, drive.inserted().orElseThrow().throttle());
        // the user's own limits: a write burst, an iops limit, a request size and a named group
        IoThrottle user = new IoThrottle(0, 0, 1_048_576, 0, 0, 200,
                OptionalLong.empty(), OptionalLong.empty(), OptionalLong.of(4_194_304),
                OptionalLong.empty(), OptionalLong.empty(), OptionalLong.of(400),
                OptionalLong.empty(), OptionalLong.empty(), OptionalLong.of(3),
                OptionalLong.empty(), OptionalLong.empty(), OptionalLong.of(1),
                OptionalLong.of(8192), Optional.of("ferry-g"));
        qmp.execute(new QmpCommand.BlockSetIoThrottle(new DriveRef.Device("disk0"), user));
        IoThrottle read = drive().inserted().orElseThrow().throttle();
        assertEquals(user, read);

        // the QOM path from query-block's qdev addresses the drive as well as the -drive id does
        qmp.execute(new QmpCommand.BlockSetIoThrottle(drive.driveRef(), read.withWriteLimit(262_144)));
        IoThrottle limited = drive().inserted().orElseThrow().throttle();
        assertEquals(262_144, limited.bpsWr());
        assertEquals(OptionalLong.empty(), limited.bpsWrMax());
        assertEquals(read.withWriteLimit(262_144), limited);

        qmp.execute(new QmpCommand.BlockSetIoThrottle(drive.driveRef(), read));
        assertEquals(user, drive().inserted().orElseThrow().throttle());

        // and a drive that had no limits goes back to none, group and all; without a group, QEMU names
        // one after the reference it was given (here the QOM path)
        qmp.execute(new QmpCommand.BlockSetIoThrottle(drive.driveRef(), IoThrottle.NONE));
        assertEquals(IoThrottle.NONE, drive().inserted().orElseThrow().throttle());
        qmp.execute(new QmpCommand.BlockSetIoThrottle(drive.driveRef(), IoThrottle.NONE.withWriteLimit(262_144)));
        assertEquals(Optional.of(drive.driveRef().value()), drive().inserted().orElseThrow().throttle().group());
        qmp.execute(new QmpCommand.BlockSetIoThrottle(drive.driveRef(), IoThrottle.NONE));
        assertEquals(IoThrottle.NONE, drive().inserted().orElseThrow().throttle());
    }

    @Test
    void shouldSwapBitmapsAndExportAtPreSwitchover() throws Exception {
        Tools.require("nbdinfo");
        qmp.execute(new QmpCommand.BlockDirtyBitmapAdd(node, "m0", 4096));
        guestWrite(2 * MiB, 4096);
        qmp.execute(new QmpCommand.MigrateSetCapabilities(Map.of("pause-before-switchover", true)));
        qmp.execute(new QmpCommand.Migrate("exec:cat > /dev/null"));
        long deadlineNs = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (qmp.execute(new QmpCommand.QueryMigrate()).status().orElseThrow() != MigrationState.PRE_SWITCHOVER) {
            assertTrue(System.nanoTime() < deadlineNs, "no pre-switchover within 30 s");
            Thread.sleep(50);
        }
        qmp.execute(new QmpCommand.Transaction(List.of(
                new QmpCommand.BlockDirtyBitmapAdd(node, "m1", 4096),
                new QmpCommand.BlockDirtyBitmapDisable(node, "m0"))));
        Path nbdSocket = tmp.resolve("nbd.sock");
        qmp.execute(new QmpCommand.NbdServerStart(nbdSocket, OptionalLong.empty()));
        qmp.execute(new QmpCommand.BlockExportAdd("last", node, "last", false, List.of("m0"), false, Optional.empty()));
        String map = Tools.run(30, "nbdinfo", "--map=qemu:dirty-bitmap:m0", "nbd+unix:///last?socket=" + nbdSocket)
                .orFail().stdout();
        assertTrue(map.lines().anyMatch(l -> l.trim().matches("2097152\\s+4096\\s+1\\s+dirty")), map);
        qmp.execute(new QmpCommand.NbdServerStop());
        awaitExportGone("last");
        qmp.execute(new QmpCommand.MigrateContinue(MigrationState.PRE_SWITCHOVER));
        while (qmp.execute(new QmpCommand.QueryMigrate()).status().orElseThrow() != MigrationState.COMPLETED) {
            assertTrue(System.nanoTime() < deadlineNs, "migration not completed within 30 s");
            Thread.sleep(50);
        }
    }

    @Test
    void shouldRefuseASafeExportDeletionWhileAClientIsConnectedButNotAHardOne() throws Exception {
        Tools.require("qemu-io");
        Path nbdSocket = tmp.resolve("nbd.sock");
        qmp.execute(new QmpCommand.NbdServerStart(nbdSocket, OptionalLong.empty()));
        qmp.execute(new QmpCommand.BlockExportAdd("e0", node, "pass0", false, List.of(), false, Optional.empty()));
        // an interactive qemu-io holds its NBD connection open as long as its stdin is
        Process client = new ProcessBuilder("qemu-io", "-r", "-f", "raw", "nbd+unix:///pass0?socket=" + nbdSocket)
                .redirectOutput(tmp.resolve("qemu-io.out").toFile()).redirectErrorStream(true).start();
        try {
            long deadlineNs = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
            while (!Files.readString(tmp.resolve("qemu-io.out")).contains("qemu-io>")) {
                assertTrue(client.isAlive() && System.nanoTime() < deadlineNs,
                        "qemu-io did not connect: " + Files.readString(tmp.resolve("qemu-io.out")));
                Thread.sleep(50);
            }
            refused(new QmpCommand.BlockExportDel("e0"), "export 'e0' still in use");
            refused(new QmpCommand.BlockExportDel("e0", Optional.of(QmpCommand.BlockExportDel.Mode.SAFE)), "still in use");
            qmp.execute(new QmpCommand.BlockExportDel("e0", Optional.of(QmpCommand.BlockExportDel.Mode.HARD)));
            // on 7.2 the export leaves query-block-exports at once; no BLOCK_EXPORT_DELETED was seen in
            // this case (checked by hand, also after the client exited), so poll rather than wait for it
            awaitExportGone("e0");
        } finally {
            client.getOutputStream().close();
            if (!client.waitFor(WAIT_MS, TimeUnit.MILLISECONDS)) {
                client.destroyForcibly().waitFor();
            }
        }
        qmp.execute(new QmpCommand.NbdServerStop());
    }
}
