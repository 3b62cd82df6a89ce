package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.monitor.MonitorClient;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code -incoming defer} and {@code migrate_incoming} through the monitor, without TLS (QEMU is only
 * started when a source arrives, so no QEMU is needed here): nothing listens before
 * {@code migrate_incoming}, the port listens after it, and a second one is refused in QEMU's words.
 */
class DeferredIncomingTest {
    @TempDir Path tmp;

    @Test
    void shouldListenOnlyAfterMigrateIncoming() throws Exception {
        int port;
        try (ServerSocket probe = new ServerSocket(0)) {
            port = probe.getLocalPort();
        }
        Path monitor = tmp.resolve("mon.sock");
        VmConfig config = VmConfigParser.parse(List.of("-name", "defer", "-drive", "file=" + tmp.resolve("disk.raw") + ",format=raw",
                "-incoming", "defer", "-monitor", "unix:" + monitor + ",server,nowait", "--runtime-dir", tmp.resolve("run").toString()));
        try (Supervisor supervisor = new Supervisor(config)) {
            supervisor.start();
            try (MonitorClient client = MonitorClient.connect(monitor, 10_000)) {
                assertEquals("VM status: paused (inmigrate)", client.command("info status"));
                assertTrue(!listens(port), "nothing listens before migrate_incoming");
                assertTrue(client.command("info migrate_parameters").startsWith("tls-creds: ''\ntls-hostname: ''\n"));
                assertEquals("", client.command("migrate_incoming tcp:127.0.0.1:" + port));
                assertTrue(listens(port), "migrate_incoming opened the port");
                assertEquals("Error: The incoming migration has already been started",
                        client.command("migrate_incoming tcp:127.0.0.1:" + port));
                assertEquals("Error: No TLS credentials with id 'tls0' (start with -object tls-creds-x509,id=tls0,dir=DIR,"
                        + "endpoint=server|client)", client.command("migrate_set_parameter tls-creds tls0"));
            }
        }
    }

    private static boolean listens(int port) {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 1000);
            return true;
        } catch (java.io.IOException e) {
            return false;
        }
    }
}
