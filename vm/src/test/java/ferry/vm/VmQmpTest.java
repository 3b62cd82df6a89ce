package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
        @Override public void quit(String why) { }
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
                + "\"downtime-limit\":300,\"x-granule-size\":4096}", execute(qmp, "query-migrate-parameters", "{}").toString());

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
                + " x-granule-size, tls-creds, tls-hostname and tls-authz)", e.desc());
    }
}
