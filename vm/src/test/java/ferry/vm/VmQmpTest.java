package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.migration.MigrationParameters;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorException;
import ferry.qmp.Json;
import ferry.qmp.JsonDecoder;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpError;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpRequest;
import ferry.qmp.VersionInfo;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * Ferry's QMP face without QEMU (a VM waiting for an incoming migration has none yet): the migration
 * parameters Ferry owns, TLS included, set with {@code migrate-set-parameters} and read back with
 * {@code query-migrate-parameters} as QEMU 7.2 names and shows them.
 */
class VmQmpTest {

    /** A VM that has no QEMU yet, with one authz-simple object and no TLS credentials. */
    static final class WaitingVm implements Vm {
        final Migrations migrations = new Migrations(this, MigrationParameters.defaults());
        final TlsObjects tls;

        WaitingVm() throws Exception {
            tls = TlsObjects.load(List.of(new VmObject.AuthzSimple("auth0", "O=Example,CN=src")));
        }

        @Override public String name() { return "vm1"; }
        @Override public Optional<QmpClient> qmp() { return Optional.empty(); }
        @Override public Optional<VersionInfo> qemuVersion() { return Optional.empty(); }
        @Override public List<QemuSourceBlocks.Drive> migratedDrives(QmpClient qmp) { return List.of(); }
        @Override public RuntimeDir runtime() { throw new UnsupportedOperationException("no runtime dir in this test"); }
        @Override public Migrations migrations() { return migrations; }
        @Override public void listenForIncoming(MigrationUri uri) throws MonitorException {
            throw new MonitorException(MonitorException.Kind.REFUSED, "not in this test");
        }
        @Override public TlsObjects tls() { return tls; }
        @Override public void quit(String why) {
            quits.add(why);
        }
        final List<String> quits = new java.util.concurrent.CopyOnWriteArrayList<>();
        @Override public void addQemuListener(QmpEventListener listener) { }
    }

    private static Json execute(VmQmp qmp, String command, String arguments) throws Exception {
        return qmp.execute(QmpRequest.decode(command, JsonDecoder.parse(arguments).asObject()));
    }

    @Test
    void shouldSetAndShowTheTlsParametersAsHmpDoes() throws Exception {
        WaitingVm vm = new WaitingVm();
        VmQmp qmp = new VmQmp(vm, new VmMonitor(vm));
        assertEquals("{\"tls-creds\":\"\",\"tls-hostname\":\"\",\"tls-authz\":\"\",\"max-bandwidth\":134217728,"
                + "\"downtime-limit\":300,\"x-granule-size\":4096,\"x-retry-window\":60000,\"x-partial-timeout\":86400000}",
                execute(qmp, "query-migrate-parameters", "{}").toString());

        assertEquals("{}", execute(qmp, "migrate-set-parameters", "{\"tls-hostname\":\"dest.example\",\"tls-authz\":\"auth0\"}")
                .toString());
        assertEquals("dest.example", vm.migrations().parameters().tlsHostname());
        assertEquals("auth0", vm.migrations().parameters().tlsAuthz());
        Json.Obj shown = execute(qmp, "query-migrate-parameters", "{}").asObject();
        assertEquals("\"dest.example\"", shown.members().get("tls-hostname").toString());
        assertEquals("\"auth0\"", shown.members().get("tls-authz").toString());

        QmpError creds = assertThrows(QmpError.class, () -> execute(qmp, "migrate-set-parameters", "{\"tls-creds\":\"tls0\"}"));
        assertEquals("No TLS credentials with id 'tls0' (start with -object tls-creds-x509,id=tls0,dir=DIR,"
                + "endpoint=server|client)", creds.desc(), "the monitor's check, the monitor's words");
        QmpError authz = assertThrows(QmpError.class, () -> execute(qmp, "migrate-set-parameters",
                "{\"tls-authz\":\"nobody\",\"max-bandwidth\":1}"));
        assertEquals("No authorization object with id 'nobody' (start with -object authz-simple,id=nobody,identity=DN"
                + " or authz-list-file)", authz.desc());
        assertEquals(MigrationParameters.DEFAULT_MAX_BANDWIDTH, vm.migrations().parameters().maxBandwidthBytesPerSec(),
                "a refused command changes nothing");

        execute(qmp, "migrate-set-parameters", "{\"tls-authz\":null,\"tls-hostname\":\"\"}");
        assertEquals("", vm.migrations().parameters().tlsAuthz(), "null unsets, as in QEMU");
        assertEquals("", vm.migrations().parameters().tlsHostname());
    }

    @Test
    void shouldStillRefuseQemusOwnParametersByName() throws Exception {
        WaitingVm vm = new WaitingVm();
        VmQmp qmp = new VmQmp(vm, new VmMonitor(vm));
        QmpError e = assertThrows(QmpError.class, () -> execute(qmp, "migrate-set-parameters", "{\"compress-level\":1}"));
        assertEquals("Parameter 'compress-level' is not supported by Ferry (it takes max-bandwidth, downtime-limit,"
                + " x-granule-size, x-retry-window, x-partial-timeout, tls-creds, tls-hostname and tls-authz)", e.desc());
    }

    @Test
    void shouldSetAndShowTheResumeParametersOnBothFaces() throws Exception {
        WaitingVm vm = new WaitingVm();
        VmQmp qmp = new VmQmp(vm, new VmMonitor(vm));
        assertEquals("{}", execute(qmp, "migrate-set-parameters", "{\"x-retry-window\":5000,\"x-partial-timeout\":3600000}").toString());
        assertEquals(List.of(5000L, 3_600_000L), List.of(vm.migrations().parameters().retryWindowMs(),
                vm.migrations().parameters().partialTimeoutMs()));
        assertEquals("\"\"", execute(qmp, "human-monitor-command", "{\"command-line\":\"migrate_set_parameter retry-window 0\"}")
                .toString(), "no output, as QEMU's HMP");
        assertEquals(0, vm.migrations().parameters().retryWindowMs());
        String shown = execute(qmp, "human-monitor-command", "{\"command-line\":\"info migrate_parameters\"}").toString();
        assertTrue(shown.contains("retry-window: 0 ms\\r\\npartial-timeout: 3600000 ms\\r\\n"), shown);
        QmpError tooLong = assertThrows(QmpError.class, () -> execute(qmp, "migrate-set-parameters", "{\"x-retry-window\":604800001}"));
        assertEquals("retry-window must be 0..604800000 ms (a week): 604800001", tooLong.desc());
    }

    @Test
    void shouldSayThereIsNothingToResumeOnBothFaces() throws Exception {
        WaitingVm vm = new WaitingVm();
        VmQmp qmp = new VmQmp(vm, new VmMonitor(vm));
        String nothing = "nothing to resume: no interrupted migration of this VM (migrate without -r starts one)";
        QmpError e = assertThrows(QmpError.class, () -> execute(qmp, "migrate", "{\"uri\":\"tcp:10.0.0.2:4444\",\"blk\":true,"
                + "\"resume\":true}"));
        assertEquals(nothing, e.desc());
        assertEquals("\"Error: " + nothing + "\\r\\n\"",
                execute(qmp, "human-monitor-command", "{\"command-line\":\"migrate -d -b -r tcp:10.0.0.2:4444\"}").toString());
    }

    @Test
    void shouldShowAndDiscardTheKeptPartialStateBeforeAnySourceCame(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp)
            throws Exception {
        java.nio.file.Path image = tmp.resolve("disk0.raw");
        ferry.image.raw.RawImage.create(image, 1 << 20).close();
        java.util.UUID id = java.util.UUID.fromString("00000000-0000-4000-8000-000000000001");
        ferry.migration.PartialMigration.create(List.of(image), List.of(new ferry.migration.ResumeJournal.Identity(id, "disk0",
                1 << 20, 4096, "raw", true, java.time.Instant.now()))).close();
        WaitingVm vm = new WaitingVm();
        VmQmp qmp = new VmQmp(vm, new VmMonitor(vm));
        vm.migrations().partial().find(List.of(image));

        Json.Obj resume = execute(qmp, "query-migrate", "{}").asObject().object("x-ferry").object("resume");
        assertEquals(List.of("partial-held", id.toString(), 0L), List.of(resume.string("state"), resume.string("migration-id"),
                resume.number("held-bytes")));
        String info = execute(qmp, "human-monitor-command", "{\"command-line\":\"info migrate\"}").toString();
        assertTrue(info.startsWith("\"ferry resume: Partial state kept: migration " + id + ", 0 bytes held since "), info);

        assertEquals("{}", execute(qmp, "x-ferry-migrate-incoming-discard", "{}").toString());
        assertFalse(java.nio.file.Files.exists(image), "the image Ferry created for the migration went with it");
        assertEquals("{}", execute(qmp, "query-migrate", "{}").toString());
        assertEquals("\"nothing to discard: this host keeps no partial state of an incoming migration\\r\\n\"",
                execute(qmp, "human-monitor-command", "{\"command-line\":\"migrate_incoming_discard\"}").toString());
        vm.migrations().close();
    }

    @Test
    void shouldQuitAVmThatWaitsForItsIncomingMigrationItselfRatherThanAskAQemuItHasNot() throws Exception {
        WaitingVm vm = new WaitingVm();
        VmQmp qmp = new VmQmp(vm, new VmMonitor(vm));
        assertEquals("{}", execute(qmp, "quit", "{}").toString());
        assertEquals(List.of("quit from QMP"), vm.quits);
    }
}

