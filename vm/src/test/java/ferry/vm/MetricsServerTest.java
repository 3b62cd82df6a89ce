package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import org.junit.jupiter.api.Test;

/** {@code --metrics}: the same figures as info migrate, in Prometheus' text format, over real HTTP. */
class MetricsServerTest {

    @Test
    void shouldServeTheMigrationFiguresInPrometheusTextFormat() throws Exception {
        VmQmpTest.WaitingVm vm = new VmQmpTest.WaitingVm();
        try (MetricsServer server = new MetricsServer(new InetSocketAddress("127.0.0.1", 0), vm)) {
            server.start();
            HttpResponse<String> response = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + server.address().getPort() + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, response.statusCode());
            assertEquals(MetricsServer.CONTENT_TYPE, response.headers().firstValue("Content-Type").orElse(""));
            String body = response.body();
            assertTrue(body.contains("ferry_migration_status{vm=\"vm1\",status=\"none\"} 1\n"), body);
            assertTrue(body.contains("# TYPE ferry_migration_progress_ratio gauge\nferry_migration_progress_ratio{vm=\"vm1\"} 0\n"), body);
            assertTrue(body.contains("ferry_migration_wire_bytes{vm=\"vm1\"} 0\n"), body);
        }
    }

    @Test
    void shouldListenOnLoopbackUnlessTold() throws Exception {
        assertEquals(new InetSocketAddress("127.0.0.1", 9464), MetricsServer.parse(":9464"));
        assertEquals(new InetSocketAddress("0.0.0.0", 9464), MetricsServer.parse("0.0.0.0:9464"));
    }
}
