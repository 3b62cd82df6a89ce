package ferry.vm;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import ferry.monitor.PrometheusView;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/**
 * {@code --metrics HOST:PORT}: the migration's figures in Prometheus' text format on {@code GET /metrics}
 * ({@link PrometheusView}), from the JDK's own HTTP server. Loopback unless a host is given.
 *
 * <p>Threads: the JDK server's dispatcher thread answers each request inline (a few hundred bytes of text);
 * {@link #start} and {@link #close} on the owner's thread.
 */
final class MetricsServer implements AutoCloseable {
    static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
    private final HttpServer server;
    private final Vm vm;

    MetricsServer(InetSocketAddress address, Vm vm) throws IOException {
        this.vm = vm;
        this.server = HttpServer.create(address, 8);
        server.createContext("/metrics", this::metrics);
        server.setExecutor(null);                         // the dispatcher thread: no pool to close
    }

    void start() {
        server.start();
    }

    InetSocketAddress address() {
        return server.getAddress();
    }

    private void metrics(HttpExchange exchange) throws IOException {
        try (exchange) {
            if (!exchange.getRequestMethod().equals("GET") && !exchange.getRequestMethod().equals("HEAD")) {
                exchange.sendResponseHeaders(405, -1);
                return;
            }
            byte[] body = PrometheusView.render(vm.name(), vm.migrations().report()).getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", CONTENT_TYPE);
            exchange.sendResponseHeaders(200, exchange.getRequestMethod().equals("HEAD") ? -1 : body.length);
            if (!exchange.getRequestMethod().equals("HEAD")) {
                try (OutputStream out = exchange.getResponseBody()) {
                    out.write(body);
                }
            }
        }
    }

    /** {@code HOST:PORT}, {@code :PORT} or {@code PORT}; no host: loopback. */
    static InetSocketAddress parse(String spec) throws VmConfigParser.BadOptionException {
        int colon = spec.lastIndexOf(':');
        String host = colon < 0 ? "" : spec.substring(0, colon).replaceAll("^\\[|]$", "");
        try {
            int port = Integer.parseInt(spec.substring(colon + 1));
            if (port < 0 || port > 65535) {
                throw new NumberFormatException();
            }
            return new InetSocketAddress(host.isEmpty() ? "127.0.0.1" : host, port);
        } catch (NumberFormatException e) {
            throw new VmConfigParser.BadOptionException("--metrics " + spec + ": use HOST:PORT (e.g. 127.0.0.1:9464)");
        }
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
