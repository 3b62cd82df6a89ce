package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

class QmpCommandTest {
    @Test
    void shouldEncodeArgumentsAsQapiSpellsThem() {
        Map<String, Boolean> caps = new LinkedHashMap<>();
        caps.put("events", true);
        caps.put("pause-before-switchover", false);
        assertEquals("{\"capabilities\":[{\"capability\":\"events\",\"state\":true},{\"capability\":\"pause-before-switchover\",\"state\":false}]}",
                new QmpCommand.MigrateSetCapabilities(caps).arguments().toString());
        assertEquals("{\"max-bandwidth\":134217728,\"downtime-limit\":300}",
                new QmpCommand.MigrateSetParameters(OptionalLong.of(128 << 20), OptionalLong.of(300)).arguments().toString());
        assertEquals("{\"downtime-limit\":300}",
                new QmpCommand.MigrateSetParameters(OptionalLong.empty(), OptionalLong.of(300)).arguments().toString());
        assertEquals("{\"state\":\"pre-switchover\"}",
                new QmpCommand.MigrateContinue(MigrationState.PRE_SWITCHOVER).arguments().toString());
        assertEquals("{\"uri\":\"unix:/run/x.sock\"}", new QmpCommand.Migrate("unix:/run/x.sock").arguments().toString());
        assertEquals("{\"command-line\":\"info version\"}", new QmpCommand.HumanMonitorCommand("info version").arguments().toString());
        assertEquals("{}", new QmpCommand.Stop().arguments().toString());
        assertEquals("migrate_cancel", new QmpCommand.MigrateCancel().name());
    }

    @Test
    void shouldDecodeQueryMigrateDuringAndAfterAMigration() throws Exception {
        // query-migrate on QEMU 7.2 during an active migration (trimmed)
        Json active = JsonDecoder.parse("""
                {"expected-downtime": 300, "status": "active", "setup-time": 2, "total-time": 1520,
                 "ram": {"total": 268836864, "postcopy-requests": 0, "dirty-sync-count": 2, "multifd-bytes": 0,
                         "pages-per-second": 32000, "downtime-bytes": 0, "page-size": 4096, "remaining": 1048576,
                         "postcopy-bytes": 0, "mbps": 268.4, "transferred": 53000000, "dirty-sync-missed-zero-copy": 0,
                         "precopy-bytes": 53000000, "duplicate": 50000, "dirty-pages-rate": 120, "skipped": 0,
                         "normal-bytes": 52000000, "normal": 12695}}""");
        MigrationInfo info = new QmpCommand.QueryMigrate().decode(active);
        assertEquals(Optional.of(MigrationState.ACTIVE), info.status());
        assertEquals(new MigrationInfo.RamStats(53000000, 1048576, 268836864, 50000, 12695, 120, 2), info.ram().orElseThrow());
        assertEquals(OptionalLong.of(300), info.expectedDowntimeMs());
        assertEquals(OptionalLong.empty(), info.downtimeMs());

        MigrationInfo failed = new QmpCommand.QueryMigrate().decode(JsonDecoder.parse(
                "{\"status\": \"failed\", \"error-desc\": \"Unable to write to socket: Broken pipe\"}"));
        assertEquals(Optional.of("Unable to write to socket: Broken pipe"), failed.errorDesc());
        assertEquals(Optional.empty(), new QmpCommand.QueryMigrate().decode(JsonDecoder.parse("{}")).status());
    }

    @Test
    void shouldDecodeStatusAndRejectUnknownStates() throws Exception {
        assertEquals(new StatusInfo(false, RunState.PRELAUNCH), new QmpCommand.QueryStatus().decode(
                JsonDecoder.parse("{\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}")));
        assertThrows(JsonException.class, () -> new QmpCommand.QueryStatus().decode(
                JsonDecoder.parse("{\"status\": \"dancing\", \"running\": false}")));
    }

    @Test
    void shouldDecodeEventsAndKeepUnknownOnes() throws Exception {
        assertEquals(new QmpEvent.Shutdown(false, "host-qmp-quit"), QmpEvent.decode(JsonDecoder.parse(
                "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}").asObject()));
        assertEquals(new QmpEvent.MigrationEvent(MigrationState.PRE_SWITCHOVER), QmpEvent.decode(JsonDecoder.parse(
                "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"pre-switchover\"}}").asObject()));
        assertEquals(new QmpEvent.MigrationPass(3), QmpEvent.decode(JsonDecoder.parse(
                "{\"event\": \"MIGRATION_PASS\", \"data\": {\"pass\": 3}}").asObject()));
        assertEquals(new QmpEvent.Stop(), QmpEvent.decode(JsonDecoder.parse("{\"event\": \"STOP\"}").asObject()));
        Json.Obj nic = JsonDecoder.parse("{\"event\": \"NIC_RX_FILTER_CHANGED\", \"data\": {\"path\": \"/x\"}}").asObject();
        assertEquals(new QmpEvent.Unknown("NIC_RX_FILTER_CHANGED", nic), QmpEvent.decode(nic));
    }

    /**
     * query-block on QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18), verbatim: {@code -drive
     * file=disk.qcow2,format=qcow2,if=virtio,id=disk0} over a raw backing file, after
     * {@code block_set_io_throttle device=disk0 bps_wr=262144 iops_wr=200 bps_wr_max=1048576 bps_wr_max_length=3
     * iops_wr_max=400 iops_size=8192 group=ferry-g} (note iops_wr_max_length 1: QEMU's default, reported),
     * bitmaps b0 (granularity 4096) and b1 (disabled, default granularity: the 64 KiB cluster), and
     * HMP {@code qemu-io disk0 "write -P 0xab 1M 64k"} (b0 count 65536).
     */
    private static final String QUERY_BLOCK_7_2 = """
            [{"io-status": "ok", "device": "disk0", "locked": false, "removable": false, "inserted": {"iops_rd": 0, "detect_zeroes": "off", "image": {"backing-image": {"virtual-size": 67108864, "filename": "/tmp/qb/base.raw", "format": "raw", "actual-size": 4096, "dirty-flag": false}, "backing-filename-format": "raw", "virtual-size": 67108864, "filename": "/tmp/qb/disk.qcow2", "cluster-size": 65536, "format": "qcow2", "actual-size": 331776, "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib", "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false, "extended-l2": false}}, "full-backing-filename": "/tmp/qb/base.raw", "backing-filename": "/tmp/qb/base.raw", "dirty-flag": false}, "iops_wr": 200, "group": "ferry-g", "ro": false, "node-name": "#block160", "bps_wr_max_length": 3, "iops_size": 8192, "backing_file_depth": 1, "bps_wr_max": 1048576, "drv": "qcow2", "iops": 0, "bps_wr": 262144, "write_threshold": 0, "backing_file": "/tmp/qb/base.raw", "dirty-bitmaps": [{"name": "b1", "recording": false, "persistent": false, "busy": false, "granularity": 65536, "count": 0}, {"name": "b0", "recording": true, "persistent": false, "busy": false, "granularity": 4096, "count": 65536}], "encrypted": false, "bps": 0, "bps_rd": 0, "cache": {"no-flush": false, "direct": false, "writeback": true}, "file": "/tmp/qb/disk.qcow2", "iops_wr_max_length": 1, "iops_wr_max": 400}, "qdev": "/machine/peripheral-anon/device[0]/virtio-backend", "type": "unknown"}]
            """;

    private static final OptionalLong NO = OptionalLong.empty();

    @Test
    void shouldEncodeDirtyBitmapCommandsAsQapiSpellsThem() {
        assertEquals("{\"node\":\"#block160\",\"name\":\"b0\",\"granularity\":4096,\"persistent\":false,\"disabled\":false}",
                new QmpCommand.BlockDirtyBitmapAdd("#block160", "b0", 4096).arguments().toString());
        assertEquals("{\"node\":\"disk0\",\"name\":\"b1\",\"persistent\":true,\"disabled\":true}",
                new QmpCommand.BlockDirtyBitmapAdd("disk0", "b1", NO, true, true).arguments().toString());
        assertEquals("block-dirty-bitmap-add", new QmpCommand.BlockDirtyBitmapAdd("n", "b", 4096).name());
        assertEquals("{\"node\":\"n\",\"name\":\"b0\"}", new QmpCommand.BlockDirtyBitmapRemove("n", "b0").arguments().toString());
        assertEquals("block-dirty-bitmap-remove", new QmpCommand.BlockDirtyBitmapRemove("n", "b0").name());
        assertEquals("block-dirty-bitmap-disable", new QmpCommand.BlockDirtyBitmapDisable("n", "b0").name());
        assertEquals("block-dirty-bitmap-enable", new QmpCommand.BlockDirtyBitmapEnable("n", "b0").name());
        assertEquals("block-dirty-bitmap-clear", new QmpCommand.BlockDirtyBitmapClear("n", "b0").name());
        assertEquals("{\"node\":\"n\",\"name\":\"b0\"}", new QmpCommand.BlockDirtyBitmapClear("n", "b0").arguments().toString());
    }

    @Test
    void shouldEncodeATransactionWithTheStandaloneCommandsArguments() {
        QmpCommand.Transaction swap = new QmpCommand.Transaction(List.of(
                new QmpCommand.BlockDirtyBitmapAdd("#block160", "b1", 4096),
                new QmpCommand.BlockDirtyBitmapDisable("#block160", "b0"),
                new QmpCommand.BlockDirtyBitmapClear("#block160", "b2"),
                new QmpCommand.BlockDirtyBitmapEnable("#block160", "b3"),
                new QmpCommand.BlockDirtyBitmapRemove("#block160", "b4")));
        assertEquals("transaction", swap.name());
        assertEquals("{\"actions\":["
                + "{\"type\":\"block-dirty-bitmap-add\",\"data\":{\"node\":\"#block160\",\"name\":\"b1\",\"granularity\":4096,\"persistent\":false,\"disabled\":false}},"
                + "{\"type\":\"block-dirty-bitmap-disable\",\"data\":{\"node\":\"#block160\",\"name\":\"b0\"}},"
                + "{\"type\":\"block-dirty-bitmap-clear\",\"data\":{\"node\":\"#block160\",\"name\":\"b2\"}},"
                + "{\"type\":\"block-dirty-bitmap-enable\",\"data\":{\"node\":\"#block160\",\"name\":\"b3\"}},"
                + "{\"type\":\"block-dirty-bitmap-remove\",\"data\":{\"node\":\"#block160\",\"name\":\"b4\"}}]}",
                swap.arguments().toString());
        assertThrows(IllegalArgumentException.class, () -> new QmpCommand.Transaction(List.of()));
    }

    @Test
    void shouldEncodeNbdServerAndExportCommands() {
        assertEquals("{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"/run/ferry/nbd.sock\"}},\"max-connections\":4}",
                new QmpCommand.NbdServerStart(Path.of("/run/ferry/nbd.sock"), OptionalLong.of(4)).arguments().toString());
        assertEquals("{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"/run/ferry/nbd.sock\"}}}",
                new QmpCommand.NbdServerStart(Path.of("/run/ferry/nbd.sock"), NO).arguments().toString());
        assertEquals("{}", new QmpCommand.NbdServerStop().arguments().toString());
        assertEquals("nbd-server-stop", new QmpCommand.NbdServerStop().name());
        assertEquals("{\"type\":\"nbd\",\"id\":\"e0\",\"node-name\":\"#block160\",\"writable\":false,\"name\":\"pass0\","
                        + "\"description\":\"ferry pass 0\",\"bitmaps\":[\"b0\"],\"allocation-depth\":true}",
                new QmpCommand.BlockExportAdd("e0", "#block160", "pass0", false, List.of("b0"), true,
                        Optional.of("ferry pass 0")).arguments().toString());
        assertEquals("{\"type\":\"nbd\",\"id\":\"in0\",\"node-name\":\"n\",\"writable\":true,\"name\":\"disk0\",\"allocation-depth\":false}",
                new QmpCommand.BlockExportAdd("in0", "n", "disk0", true, List.of(), false, Optional.empty()).arguments().toString());
        assertEquals("{\"id\":\"e0\"}", new QmpCommand.BlockExportDel("e0").arguments().toString());
        assertEquals("{\"id\":\"e0\",\"mode\":\"hard\"}",
                new QmpCommand.BlockExportDel("e0", Optional.of(QmpCommand.BlockExportDel.Mode.HARD)).arguments().toString());
        assertEquals("block-export-del", new QmpCommand.BlockExportDel("e0").name());
    }

    @Test
    void shouldDecodeQueryBlockExportsAndTheDeletedEvent() throws Exception {
        // query-block-exports on QEMU 7.2 with one NBD export
        assertEquals(List.of(new BlockExportInfo("e0", BlockExportInfo.Type.NBD, "#block174", false)),
                new QmpCommand.QueryBlockExports().decode(JsonDecoder.parse(
                        "[{\"node-name\": \"#block174\", \"shutting-down\": false, \"type\": \"nbd\", \"id\": \"e0\"}]")));
        assertEquals(List.of(), new QmpCommand.QueryBlockExports().decode(JsonDecoder.parse("[]")));
        assertEquals(new QmpEvent.BlockExportDeleted("e0"), QmpEvent.decode(JsonDecoder.parse(
                "{\"timestamp\": {\"seconds\": 1795979726, \"microseconds\": 636517}, \"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"e0\"}}").asObject()));
    }

    @Test
    void shouldDecodeAQueryBlockReplyOfQemu72() throws Exception {
        List<BlockInfo> drives = new QmpCommand.QueryBlock().decode(JsonDecoder.parse(QUERY_BLOCK_7_2));
        assertEquals(1, drives.size());
        BlockInfo drive = drives.get(0);
        assertEquals("disk0", drive.device());
        assertEquals(Optional.of("/machine/peripheral-anon/device[0]/virtio-backend"), drive.qdev());
        assertEquals(new DriveRef.Qdev("/machine/peripheral-anon/device[0]/virtio-backend"), drive.driveRef());
        BlockInfo.Inserted inserted = drive.inserted().orElseThrow();
        assertEquals(Optional.of("#block160"), inserted.nodeName());
        assertEquals("/tmp/qb/disk.qcow2", inserted.file());
        assertEquals("qcow2", inserted.drv());
        assertEquals(false, inserted.ro());
        assertEquals(Optional.of("/tmp/qb/base.raw"), inserted.backingFile());
        assertEquals(1, inserted.backingFileDepth());
        assertEquals(64 << 20, inserted.virtualSize());
        assertEquals(new IoThrottle(0, 0, 262144, 0, 0, 200,
                NO, NO, OptionalLong.of(1048576), NO, NO, OptionalLong.of(400),
                NO, NO, OptionalLong.of(3), NO, NO, OptionalLong.of(1),
                OptionalLong.of(8192), Optional.of("ferry-g")), inserted.throttle());
        assertEquals(List.of(
                new BlockInfo.DirtyBitmapInfo(Optional.of("b1"), 0, 65536, false, false, false, false),
                new BlockInfo.DirtyBitmapInfo(Optional.of("b0"), 65536, 4096, true, false, false, false)),
                inserted.dirtyBitmaps());
        assertEquals(4096, inserted.dirtyBitmap("b0").orElseThrow().granularity());
        assertEquals(Optional.empty(), inserted.dirtyBitmap("b9"));
    }

    @Test
    void shouldDecodeAnUnthrottledDriveWithoutBitmapsAndTheOldTopLevelBitmaps() throws Exception {
        // query-block on 7.2 for a fresh raw drive: no group, no bursts, no dirty-bitmaps member;
        // the second element has its bitmaps at the top, as QEMU before 6.0 also reported them
        List<BlockInfo> drives = new QmpCommand.QueryBlock().decode(JsonDecoder.parse("""
                [{"io-status": "ok", "device": "disk0", "locked": false, "removable": false, "inserted": {"iops_rd": 0, "detect_zeroes": "off", "image": {"virtual-size": 67108864, "filename": "/tmp/d.raw", "format": "raw", "actual-size": 0, "dirty-flag": false}, "iops_wr": 0, "ro": false, "node-name": "#block135", "backing_file_depth": 0, "drv": "raw", "iops": 0, "bps_wr": 0, "write_threshold": 0, "encrypted": false, "bps": 0, "bps_rd": 0, "cache": {"no-flush": false, "direct": false, "writeback": true}, "file": "/tmp/d.raw"}, "qdev": "/machine/peripheral-anon/device[0]/virtio-backend", "type": "unknown"},
                 {"device": "old", "locked": false, "removable": false, "type": "unknown", "dirty-bitmaps": [{"name": "x", "recording": true, "persistent": false, "busy": false, "granularity": 65536, "count": 512}], "inserted": {"iops_rd": 0, "image": {"virtual-size": 512, "filename": "/tmp/o.raw", "format": "raw"}, "iops_wr": 0, "ro": true, "node-name": "n1", "backing_file_depth": 0, "drv": "raw", "iops": 0, "bps_wr": 0, "bps": 0, "bps_rd": 0, "file": "/tmp/o.raw"}},
                 {"device": "cd0", "locked": false, "removable": true, "type": "unknown", "tray_open": false}]"""));
        BlockInfo.Inserted raw = drives.get(0).inserted().orElseThrow();
        assertEquals(IoThrottle.NONE, raw.throttle());
        assertEquals(false, raw.throttle().limited());
        assertEquals(List.of(), raw.dirtyBitmaps());
        assertEquals(Optional.empty(), raw.backingFile());
        assertEquals(new DriveRef.Device("old"), drives.get(1).driveRef());
        assertEquals(512, drives.get(1).inserted().orElseThrow().dirtyBitmap("x").orElseThrow().dirtyBytes());
        assertEquals(Optional.empty(), drives.get(2).inserted());
    }

    @Test
    void shouldEncodeBlockSetIoThrottleSoThatWhatQueryBlockReportedGoesBackUnchanged() throws Exception {
        IoThrottle user = new QmpCommand.QueryBlock().decode(JsonDecoder.parse(QUERY_BLOCK_7_2))
                .get(0).inserted().orElseThrow().throttle();
        assertEquals("{\"device\":\"disk0\",\"bps\":0,\"bps_rd\":0,\"bps_wr\":262144,\"iops\":0,\"iops_rd\":0,\"iops_wr\":200,"
                        + "\"bps_wr_max\":1048576,\"iops_wr_max\":400,\"bps_wr_max_length\":3,\"iops_wr_max_length\":1,"
                        + "\"iops_size\":8192,\"group\":\"ferry-g\"}",
                new QmpCommand.BlockSetIoThrottle(new DriveRef.Device("disk0"), user).arguments().toString());
        assertEquals("{\"id\":\"vd0\",\"bps\":0,\"bps_rd\":0,\"bps_wr\":0,\"iops\":0,\"iops_rd\":0,\"iops_wr\":0}",
                new QmpCommand.BlockSetIoThrottle(new DriveRef.Qdev("vd0"), IoThrottle.NONE).arguments().toString());
        assertEquals("block_set_io_throttle", new QmpCommand.BlockSetIoThrottle(new DriveRef.Qdev("vd0"), IoThrottle.NONE).name());
    }

    @Test
    void shouldLimitWritesKeepingTheOtherLimits() {
        // none: only bps_wr
        assertEquals(new IoThrottle(0, 0, 262144, 0, 0, 0, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, Optional.empty()),
                IoThrottle.NONE.withWriteLimit(262144));
        // a lower user write limit stays; its burst goes; iops limits and the group stay
        IoThrottle user = new IoThrottle(0, 5000, 100_000, 0, 0, 200, NO, OptionalLong.of(9000), OptionalLong.of(500_000),
                NO, NO, OptionalLong.of(400), NO, OptionalLong.of(2), OptionalLong.of(3), NO, NO, OptionalLong.of(1),
                OptionalLong.of(8192), Optional.of("g"));
        assertEquals(new IoThrottle(0, 5000, 100_000, 0, 0, 200, NO, OptionalLong.of(9000), NO,
                NO, NO, OptionalLong.of(400), NO, OptionalLong.of(2), NO, NO, NO, OptionalLong.of(1),
                OptionalLong.of(8192), Optional.of("g")), user.withWriteLimit(262144));
        assertEquals(50_000, user.withWriteLimit(50_000).bpsWr());
        // a total limit, which QEMU does not allow beside bps_wr, becomes a read limit with its burst
        IoThrottle total = new IoThrottle(1_000_000, 0, 0, 0, 0, 0, OptionalLong.of(2_000_000), NO, NO, NO, NO, NO,
                OptionalLong.of(5), NO, NO, NO, NO, NO, NO, Optional.empty());
        assertEquals(new IoThrottle(0, 1_000_000, 262144, 0, 0, 0, NO, OptionalLong.of(2_000_000), NO, NO, NO, NO,
                NO, OptionalLong.of(5), NO, NO, NO, NO, NO, Optional.empty()), total.withWriteLimit(262144));
        assertEquals(1_000_000, total.withWriteLimit(5_000_000).bpsWr());
        assertThrows(IllegalArgumentException.class, () -> IoThrottle.NONE.withWriteLimit(0));
    }
}
