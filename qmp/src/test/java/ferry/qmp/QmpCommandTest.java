package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.LinkedHashMap;
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
}
