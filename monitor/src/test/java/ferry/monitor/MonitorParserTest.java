package ferry.monitor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.migration.MigrationParameters;
import ferry.monitor.MonitorCommand.Cont;
import ferry.monitor.MonitorCommand.Help;
import ferry.monitor.MonitorCommand.InfoBlock;
import ferry.monitor.MonitorCommand.InfoMigrate;
import ferry.monitor.MonitorCommand.InfoMigrateParameters;
import ferry.monitor.MonitorCommand.InfoStatus;
import ferry.monitor.MonitorCommand.InfoVersion;
import ferry.monitor.MonitorCommand.Migrate;
import ferry.monitor.MonitorCommand.MigrateCancel;
import ferry.monitor.MonitorCommand.MigrateIncoming;
import ferry.monitor.MonitorCommand.MigrateSetDowntime;
import ferry.monitor.MonitorCommand.MigrateSetParameter;
import ferry.monitor.MonitorCommand.MigrateSetSpeed;
import ferry.monitor.MonitorCommand.MigrateSetTextParameter;
import ferry.monitor.MonitorCommand.Passthrough;
import ferry.monitor.MonitorCommand.Quit;
import ferry.monitor.MonitorCommand.Stop;
import ferry.monitor.MonitorCommand.SystemPowerdown;
import ferry.monitor.MonitorCommand.SystemReset;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

class MonitorParserTest {
    private static final long MIB = 1 << 20;

    private static MonitorCommand parse(String line) throws MonitorException {
        return MonitorParser.parse(line);
    }

    private static MonitorException fails(String line) {
        return assertThrows(MonitorException.class, () -> MonitorParser.parse(line));
    }

    @Test
    void shouldParseCommandsWithoutArguments() throws Exception {
        assertEquals(new InfoStatus(), parse("info status"));
        assertEquals(new InfoBlock(), parse("info block"));
        assertEquals(new InfoBlock("disk0"), parse("info block disk0"));      // a -drive id reaches QEMU
        assertEquals(new InfoBlock("-v disk0"), parse("info block -v disk0"));
        assertEquals(new Passthrough("block_resize disk0 2G"), parse("block_resize disk0 2G"));
        assertEquals(new Passthrough("block_set_io_throttle disk0 0 0 0 0 0 0"), parse("block_set_io_throttle disk0 0 0 0 0 0 0"));
        assertEquals(new Passthrough("eject disk0"), parse("eject disk0"));
        assertEquals(new InfoVersion(), parse("info version"));
        assertEquals(new InfoMigrate(), parse("  info   migrate  "));
        assertEquals(new InfoMigrateParameters(), parse("info migrate_parameters"));
        assertEquals(new Stop(), parse("stop"));
        assertEquals(new Stop(), parse("s"));
        assertEquals(new Cont(false), parse("cont"));
        assertEquals(new Cont(false), parse("c"));
        assertEquals(new Cont(true), parse("cont --force"));
        assertEquals(new SystemReset(), parse("system_reset"));
        assertEquals(new SystemPowerdown(), parse("system_powerdown"));
        assertEquals(new Quit(), parse("quit"));
        assertEquals(new Quit(), parse("q\r"));
        assertEquals(new MigrateCancel(), parse("migrate_cancel"));
        assertEquals(new MonitorCommand.MigrateIncomingDiscard(), parse("migrate_incoming_discard"));
        assertEquals("migrate_incoming_discard: extraneous characters at the end of line: 'now'",
                fails("migrate_incoming_discard now").error());
    }

    @Test
    void shouldParseHelpWithAndWithoutTopic() throws Exception {
        assertEquals(new Help(Optional.empty()), parse("help"));
        assertEquals(new Help(Optional.empty()), parse("?"));
        assertEquals(new Help(Optional.of("migrate")), parse("help migrate"));
        assertEquals(new Help(Optional.of("info migrate")), parse("? info  migrate"));
        assertEquals(new Help(Optional.of("info")), parse("info"));
    }

    @Test
    void shouldPassOtherCommandsToQemu() throws Exception {
        assertEquals(new Passthrough("info registers"), parse(" info registers "));
        assertEquals(new Passthrough("info cpus"), parse("info cpus"));
        assertEquals(new Passthrough("x /4x 0x1000"), parse("x /4x 0x1000"));
        assertEquals(new Passthrough("nosuchcommand a b"), parse("nosuchcommand a b"));
    }

    @Test
    void shouldRefuseQemuMigrationCommandsThatBypassFerry() {
        MonitorException e = fails("migrate_continue pre-switchover");
        assertEquals(MonitorException.Kind.REFUSED, e.kind());
        assertTrue(e.getMessage().startsWith("Error: migrate_continue is not available"), e.getMessage());
        assertEquals(MonitorException.Kind.REFUSED, fails("migrate_continue pre-switchover").kind());
        assertEquals(MonitorException.Kind.REFUSED, fails("   ").kind());
    }

    @Test
    void shouldParseMigrateFlagsSeparateCombinedAndInAnyOrder() throws Exception {
        MigrationUri uri = new MigrationUri("10.0.0.2", 4444);
        assertEquals(new Migrate(false, false, false, uri), parse("migrate tcp:10.0.0.2:4444"));
        assertEquals(new Migrate(true, true, false, uri), parse("migrate -d -b tcp:10.0.0.2:4444"));
        assertEquals(new Migrate(true, true, false, uri), parse("migrate -b -d tcp://10.0.0.2:4444"));
        assertEquals(new Migrate(true, true, false, uri), parse("migrate -db tcp:10.0.0.2:4444"));
        assertEquals(new Migrate(true, true, true, uri), parse("migrate -d -b -i tcp:10.0.0.2:4444"));
        assertEquals(new Migrate(false, true, true, uri), parse("migrate -i tcp:10.0.0.2:4444"));   // -i implies -b
        assertEquals(new Migrate(true, true, false, new MigrationUri("0", 4444)), parse("migrate -d -b tcp://0:4444"));
        assertEquals(new Migrate(true, true, false, true, uri), parse("migrate -d -b -r tcp:10.0.0.2:4444"));   // QEMU's order
        assertEquals(new Migrate(true, true, false, true, uri), parse("migrate -dbr tcp:10.0.0.2:4444"));
        // -r without -b parses: capability block may give the -b, and the migration says when none does
        assertEquals(new Migrate(false, false, false, true, uri), parse("migrate -r tcp:10.0.0.2:4444"));
    }

    @Test
    void shouldParseMigrationUriForms() throws Exception {
        assertEquals(new MigrationUri("::1", 4444), ((Migrate) parse("migrate tcp:[::1]:4444")).uri());
        assertEquals(new MigrationUri("fe80::1", 1), ((Migrate) parse("migrate tcp://[fe80::1]:1")).uri());
        assertEquals(new MigrationUri("dest.example", 65535), ((Migrate) parse("migrate tcp:dest.example:65535")).uri());
        assertEquals("tcp:[::1]:4444", new MigrationUri("::1", 4444).toString());
        assertEquals("tcp:0:4444", new MigrationUri("0", 4444).toString());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "migrate|migrate: missing uri",
            "migrate -d -b|migrate: missing uri",
            "migrate -x tcp:h:1|migrate: unsupported option -x",
            "migrate -x tcp:h:1|migrate: unsupported option -x",
            "migrate tcp:h:1 extra|migrate: extraneous characters at the end of line: 'extra'",
            "migrate exec:cat|migrate: unsupported migration URI 'exec:cat': scheme 'exec' is not supported, use tcp:HOST:PORT",
            "migrate unix:/tmp/s|migrate: unsupported migration URI 'unix:/tmp/s': scheme 'unix' is not supported, use tcp:HOST:PORT",
            "migrate tcp:host|migrate: invalid migration URI 'tcp:host': no port, expected tcp:HOST:PORT",
            "migrate tcp::4444|migrate: invalid migration URI 'tcp::4444': no host",
            "migrate tcp:h:0|migrate: invalid migration URI 'tcp:h:0': port must be 1..65535, not 0",
            "migrate tcp:h:65536|migrate: invalid migration URI 'tcp:h:65536': port must be 1..65535, not 65536",
            "migrate tcp:h:-1|migrate: invalid migration URI 'tcp:h:-1': port '-1' is not a number",
            "migrate tcp:h:44a|migrate: invalid migration URI 'tcp:h:44a': port '44a' is not a number",
            "migrate tcp:::1:4444|migrate: invalid migration URI 'tcp:::1:4444': an IPv6 host goes in brackets, tcp:[::1]:4444",
            "migrate tcp:[::1:4444|migrate: invalid migration URI 'tcp:[::1:4444': expected tcp:[IPV6]:PORT",
    })
    void shouldRejectBadMigrateWithItsHelp(String line, String error) {
        MonitorException e = fails(line);
        assertEquals(MonitorException.Kind.USAGE, e.kind());
        assertEquals(error, e.error());
        assertEquals("Error: " + error + "\n"
                + "migrate [-d] [-b] [-i] [-r] uri -- migrate to URI (using -d to not wait for completion)\n"
                + "\t\t\t -b for migration without shared storage with full copy of disk\n"
                + "\t\t\t -i for migration without shared storage with incremental copy of disk"
                + " (base image shared between src and destination)\n"
                + "\t\t\t -r to resume an interrupted migration where it stopped (with -b)", e.getMessage());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "100M|104857600", "100|104857600", "100m|104857600", "1.5k|1536", "0.1k|102", "10b|10", "10B|10",
            "1K|1024", "1t|1099511627776", "2G|2147483648", "0x10|16777216", "0.5|524288",
    })
    void shouldReadSpeedSizesAsQemuDoes(String value, long bytesPerSec) throws Exception {
        assertEquals(new MigrateSetSpeed(bytesPerSec), parse("migrate_set_speed " + value));
        assertEquals(new MigrateSetParameter(MigrationParameter.MAX_BANDWIDTH, bytesPerSec),
                parse("migrate_set_parameter max-bandwidth " + value));
    }

    @ParameterizedTest
    @ValueSource(strings = {"-5", "1e3", "100MB", "10Q", "abc", "0", "0k", "1.5b", "99999999999T", "0x", "1..2"})
    void shouldRejectBadSpeedWithItsHelp(String value) {
        MonitorException e = fails("migrate_set_speed " + value);
        assertEquals(MonitorException.Kind.USAGE, e.kind());
        assertTrue(e.error().startsWith("migrate_set_speed: "), e.error());
        assertTrue(e.error().contains("'" + value + "'"), e.error());
        assertTrue(e.getMessage().endsWith("\nmigrate_set_speed value -- set maximum speed (in bytes) for migrations. "
                + "Defaults to MB if no size suffix is specified, ie. B/K/M/G/T"), e.getMessage());
        assertEquals(MonitorException.Kind.USAGE, fails("migrate_set_parameter max-bandwidth " + value).kind());
    }

    @Test
    void shouldReadDowntimeInSeconds() throws Exception {
        assertEquals(new MigrateSetDowntime(500), parse("migrate_set_downtime 0.5"));
        assertEquals(new MigrateSetDowntime(2000), parse("migrate_set_downtime 2"));
        assertEquals(new MigrateSetDowntime(1), parse("migrate_set_downtime 0.0005"));
        assertEquals(new MigrateSetDowntime(0), parse("migrate_set_downtime 0"));
        assertEquals(new MigrateSetDowntime(2_000_000), parse("migrate_set_downtime 2000"));
        for (String bad : new String[] {"-1", "1e3", "2000.001", "abc", "NaN", "Infinity", "0x1"}) {
            MonitorException e = fails("migrate_set_downtime " + bad);
            assertEquals("migrate_set_downtime: invalid downtime '" + bad + "': expected seconds from 0 to 2000, e.g. 0.3",
                    e.error());
        }
        assertEquals("migrate_set_downtime: missing value", fails("migrate_set_downtime").error());
        assertEquals("migrate_set_downtime: extraneous characters at the end of line: '2'",
                fails("migrate_set_downtime 1 2").error());
    }

    @Test
    void shouldValidateEachParameterByItsRules() throws Exception {
        assertEquals(new MigrateSetParameter(MigrationParameter.DOWNTIME_LIMIT, 300), parse("migrate_set_parameter downtime-limit 300"));
        assertEquals(new MigrateSetParameter(MigrationParameter.DOWNTIME_LIMIT, 2_000_000),
                parse("migrate_set_parameter downtime-limit 2000000"));
        assertEquals(new MigrateSetParameter(MigrationParameter.GRANULE_SIZE, 4096), parse("migrate_set_parameter granule-size 4k"));
        assertEquals(new MigrateSetParameter(MigrationParameter.GRANULE_SIZE, 65536), parse("migrate_set_parameter granule-size 65536"));
        assertEquals(new MigrateSetParameter(MigrationParameter.GRANULE_SIZE, 16 * MIB), parse("migrate_set_parameter granule-size 16M"));
        for (String bad : new String[] {"1.5", "-1", "2000001", "abc", "1s"}) {
            assertEquals("migrate_set_parameter: invalid downtime-limit '" + bad
                    + "': expected whole milliseconds from 0 to 2000000", fails("migrate_set_parameter downtime-limit " + bad).error());
        }
        for (String bad : new String[] {"2k", "32M", "65537", "96k", "0", "1.5"}) {
            assertTrue(fails("migrate_set_parameter granule-size " + bad).error()
                    .startsWith("migrate_set_parameter: invalid granule-size '" + bad + "': expected a power of two from 4K to 16M"));
        }
        assertEquals(new MigrateSetParameter(MigrationParameter.RETRY_WINDOW, 0), parse("migrate_set_parameter retry-window 0"));
        assertEquals(new MigrateSetParameter(MigrationParameter.RETRY_WINDOW, 604_800_000),
                parse("migrate_set_parameter retry-window 604800000"));
        assertEquals(new MigrateSetParameter(MigrationParameter.PARTIAL_TIMEOUT, 2_592_000_000L),
                parse("migrate_set_parameter partial-timeout 2592000000"));
        for (String bad : new String[] {"604800001", "1.5", "-1", "60s", "1m"}) {
            assertEquals("migrate_set_parameter: invalid retry-window '" + bad + "': expected whole milliseconds from 0 to 604800000",
                    fails("migrate_set_parameter retry-window " + bad).error());
        }
        assertEquals("migrate_set_parameter: invalid partial-timeout '2592000001': expected whole milliseconds from 0 to 2592000000",
                fails("migrate_set_parameter partial-timeout 2592000001").error());
    }

    @Test
    void shouldListKnownParametersForAnUnknownOne() {
        MonitorException e = fails("migrate_set_parameter xbzrle-cache-size 64M");
        assertEquals("migrate_set_parameter: unknown parameter 'xbzrle-cache-size': known parameters are "
                + "max-bandwidth, downtime-limit, granule-size, retry-window, partial-timeout, tls-creds, tls-hostname, tls-authz", e.error());
        assertEquals("Error: " + e.error() + "\nmigrate_set_parameter parameter value -- Set the parameter for migration"
                + " (max-bandwidth, downtime-limit, granule-size, retry-window, partial-timeout, tls-creds, tls-hostname, tls-authz)",
                e.getMessage());
        assertEquals("migrate_set_parameter: missing parameter name", fails("migrate_set_parameter").error());
        assertEquals("migrate_set_parameter: missing value for max-bandwidth", fails("migrate_set_parameter max-bandwidth").error());
        assertEquals("migrate_set_parameter: extraneous characters at the end of line: 'M'",
                fails("migrate_set_parameter max-bandwidth 100 M").error());
    }

    @Test
    void shouldApplyParameterCommandsToMigrationParameters() throws Exception {
        MigrationParameters defaults = MigrationParameters.defaults();
        assertEquals(100 * MIB, ((MigrateSetSpeed) parse("migrate_set_speed 100M")).applyTo(defaults).maxBandwidthBytesPerSec());
        assertEquals(500, ((MigrateSetDowntime) parse("migrate_set_downtime 0.5")).applyTo(defaults).downtimeLimitMs());
        assertEquals(1 << 20, ((MigrateSetParameter) parse("migrate_set_parameter granule-size 1M")).applyTo(defaults).granuleSize());
        assertEquals(7, ((MigrateSetParameter) parse("migrate_set_parameter downtime-limit 7")).applyTo(defaults).downtimeLimitMs());
        assertEquals(5_000, ((MigrateSetParameter) parse("migrate_set_parameter retry-window 5000")).applyTo(defaults).retryWindowMs());
        assertEquals(60_000, ((MigrateSetParameter) parse("migrate_set_parameter partial-timeout 60000")).applyTo(defaults)
                .partialTimeoutMs());
    }

    @Test
    void shouldParseTheTlsParametersAsQemuTakesThem() throws Exception {
        assertEquals(new MigrateSetTextParameter(MigrationParameter.TLS_CREDS, "tls0"), parse("migrate_set_parameter tls-creds tls0"));
        assertEquals(new MigrateSetTextParameter(MigrationParameter.TLS_HOSTNAME, "dst.example"),
                parse("migrate_set_parameter tls-hostname dst.example"));
        assertEquals(new MigrateSetTextParameter(MigrationParameter.TLS_HOSTNAME, "10.0.0.2"),
                parse("migrate_set_parameter tls-hostname 10.0.0.2"));
        assertEquals(new MigrateSetTextParameter(MigrationParameter.TLS_AUTHZ, "auth.src-1"),
                parse("migrate_set_parameter tls-authz auth.src-1"));
        assertEquals(new MigrateSetTextParameter(MigrationParameter.TLS_CREDS, ""), parse("migrate_set_parameter tls-creds \"\""),
                "QEMU's way to turn TLS off again");
        MigrationParameters set = ((MigrateSetTextParameter) parse("migrate_set_parameter tls-creds tls0"))
                .applyTo(MigrationParameters.defaults());
        assertEquals("tls0", set.tlsCreds());
        assertEquals("", ((MigrateSetTextParameter) parse("migrate_set_parameter tls-creds \"\"")).applyTo(set).tlsCreds());
        assertEquals("migrate_set_parameter: invalid tls-creds '0tls': expected the id of an -object, or \"\" to unset it",
                fails("migrate_set_parameter tls-creds 0tls").error());
        assertEquals("migrate_set_parameter: invalid tls-hostname 'a/b': expected a host name, or \"\" to unset it",
                fails("migrate_set_parameter tls-hostname a/b").error());
    }

    @Test
    void shouldParseMigrateIncomingForADeferredDestination() throws Exception {
        assertEquals(new MigrateIncoming(new MigrationUri("0", 4444)), parse("migrate_incoming tcp:0:4444"));
        assertEquals(new MigrateIncoming(new MigrationUri("::1", 4444)), parse("migrate_incoming tcp:[::1]:4444"));
        assertEquals("migrate_incoming: missing uri", fails("migrate_incoming").error());
        assertTrue(fails("migrate_incoming exec:cat").error().startsWith("migrate_incoming: unsupported migration URI"));
        assertEquals(MonitorException.Kind.USAGE, fails("migrate_incoming tcp:0:4444 x").kind());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '#', value = {
            "stop now#stop: extraneous characters at the end of line: 'now'#stop|s  -- stop emulation",
            "c x#cont: extraneous characters at the end of line: 'x'#cont|c  -- resume emulation",
            "q 1#quit: extraneous characters at the end of line: '1'#quit|q  -- quit the emulator",
            "system_reset hard#system_reset: extraneous characters at the end of line: 'hard'#system_reset  -- reset the system",
            "system_powerdown x#system_powerdown: extraneous characters at the end of line: 'x'#system_powerdown  -- send system power down event",
            "migrate_cancel now#migrate_cancel: extraneous characters at the end of line: 'now'#migrate_cancel  -- cancel the current VM migration",
            "info migrate x y#info migrate: extraneous characters at the end of line: 'x y'#info migrate  -- show migration status",
            "info status x#info status: extraneous characters at the end of line: 'x'#info status  -- show the current VM status (running|paused)",
            "info version x#info version: extraneous characters at the end of line: 'x'#info version  -- show the version of Ferry and QEMU",
            "info migrate_parameters x#info migrate_parameters: extraneous characters at the end of line: 'x'#info migrate_parameters  -- show current migration parameters",
    })
    void shouldRejectExtraArgumentsWithTheCommandsHelp(String line, String error, String help) {
        MonitorException e = fails(line);
        assertEquals(MonitorException.Kind.USAGE, e.kind());
        assertEquals("Error: " + error + "\n" + help, e.getMessage());
    }

    @Test
    void shouldGiveHelpInQemuShape() {
        String all = MonitorHelp.all();
        assertTrue(all.startsWith("help|? [cmd] -- show the help\ninfo [subcommand] -- "), all);
        assertTrue(all.contains("\nmigrate_set_downtime value -- set maximum tolerated downtime (in seconds) for migrations\n"), all);
        assertTrue(all.endsWith("\n" + MonitorHelp.PASSTHROUGH_NOTE), all);
        assertEquals(19, all.lines().count());   // 15 commands, migrate on 4 lines, the note
        assertEquals(Optional.of("migrate_incoming uri -- Continue an incoming migration from an -incoming defer"),
                MonitorHelp.topic("migrate_incoming"));                  // QEMU 7.2's words
        assertEquals(Optional.of("cont|c  -- resume emulation"), MonitorHelp.topic("c"));
        assertEquals(Optional.of("info migrate  -- show migration status"), MonitorHelp.topic("info migrate"));
        assertTrue(MonitorHelp.topic("info").orElseThrow().endsWith("Other info subcommands are passed to QEMU's monitor."));
        assertEquals(Optional.empty(), MonitorHelp.topic("info registers"));
        assertEquals(Optional.empty(), MonitorHelp.topic("nosuch"));
    }

    @Test
    void shouldParseFerrysMigrationCapabilitiesInsteadOfPassingThemToQemu() throws Exception {
        assertEquals(new MonitorCommand.InfoMigrateCapabilities(), parse("info migrate_capabilities"));
        assertEquals(new MonitorCommand.MigrateSetCapability("block", true), parse("migrate_set_capability block on"));
        assertEquals(new MonitorCommand.MigrateSetCapability("events", false), parse("migrate_set_capability events off"));
        assertEquals(MonitorException.Kind.USAGE, fails("migrate_set_capability block").kind());
        assertEquals(MonitorException.Kind.USAGE, fails("migrate_set_capability block yes").kind());
    }
}
