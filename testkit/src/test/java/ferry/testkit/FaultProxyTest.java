package ferry.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The proxy against a loopback sink that counts the bytes each connection brings. */
class FaultProxyTest {
    /** Bounds every wait: only how long a broken test may hang. */
    private static final long WAIT_MS = 10_000;

    private ServerSocketChannel sink;
    private final BlockingQueue<Long> bytesPerConnection = new LinkedBlockingQueue<>();
    private Thread sinkThread;

    @BeforeEach
    void startSink() throws IOException {
        sink = ServerSocketChannel.open().bind(new InetSocketAddress("127.0.0.1", 0));
        sinkThread = Thread.ofVirtual().name("fault-proxy-test-sink").start(() -> {
            try {
                while (true) {
                    SocketChannel connection = sink.accept();
                    Thread.ofVirtual().name("fault-proxy-test-sink-conn").start(() -> drain(connection));
                }
            } catch (IOException closed) {
                // the test closed the sink
            }
        });
    }

    private void drain(SocketChannel connection) {
        long bytes = 0;
        try (connection) {
            ByteBuffer buffer = ByteBuffer.allocate(4096);
            int n;
            while ((n = connection.read(buffer.clear())) >= 0) {
                bytes += n;
            }
        } catch (IOException e) {
            // a reset counts as an end
        }
        bytesPerConnection.add(bytes);
    }

    @AfterEach
    void stopSink() throws Exception {
        sink.close();
        sinkThread.join();
    }

    private int sinkPort() throws IOException {
        return ((InetSocketAddress) sink.getLocalAddress()).getPort();
    }

    /** Writes {@code bytes} (as far as the link lets it) and waits until the proxy closes the connection. */
    private static void sendUntilClosed(int port, int bytes) throws IOException {
        try (SocketChannel client = SocketChannel.open(new InetSocketAddress("127.0.0.1", port))) {
            try {
                client.write(ByteBuffer.allocate(bytes));
            } catch (IOException cut) {
                return;
            }
            client.socket().setSoTimeout((int) WAIT_MS);
            int n = client.socket().getInputStream().read();
            assertEquals(-1, n, "the proxy sent bytes back");
        } catch (IOException reset) {
            // the proxy closed it: what the test waits for
        }
    }

    @Test
    void shouldCloseConnectionsAcceptedRightAfterTheCutThenPassThemAgain() throws Exception {
        try (FaultProxy proxy = new FaultProxy(sinkPort())) {
            proxy.cutAfter(100);
            proxy.refuseAfterCut(2000);              // ample for the next connect, even on a loaded machine
            sendUntilClosed(proxy.port(), 1000);
            assertEquals(100L, bytesPerConnection.poll(WAIT_MS, TimeUnit.MILLISECONDS), "bytes through before the cut");

            // Within the window: closed by the proxy, nothing reaches the sink.
            sendUntilClosed(proxy.port(), 10);
            assertEquals(1, proxy.refused());

            // After the window (bounded wait): a connection passes whole again.
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
            Long passed = null;
            while (passed == null && System.nanoTime() < deadline) {
                try (SocketChannel client = SocketChannel.open(new InetSocketAddress("127.0.0.1", proxy.port()))) {
                    client.write(ByteBuffer.allocate(10));
                } catch (IOException refusedMeanwhile) {
                    // still within the window
                }
                passed = bytesPerConnection.poll(100, TimeUnit.MILLISECONDS);
            }
            assertEquals(10L, passed, "no connection passed after the refusal window");
            assertTrue(proxy.refused() >= 1);
        }
    }

    @Test
    void shouldRefuseNothingWithoutACut() throws Exception {
        try (FaultProxy proxy = new FaultProxy(sinkPort())) {
            proxy.refuseAfterCut(60_000);               // armed, but this connection is never cut
            try (SocketChannel client = SocketChannel.open(new InetSocketAddress("127.0.0.1", proxy.port()))) {
                client.write(ByteBuffer.allocate(10));
            }
            assertEquals(10L, bytesPerConnection.poll(WAIT_MS, TimeUnit.MILLISECONDS));
            try (SocketChannel client = SocketChannel.open(new InetSocketAddress("127.0.0.1", proxy.port()))) {
                client.write(ByteBuffer.allocate(20));
            }
            assertEquals(20L, bytesPerConnection.poll(WAIT_MS, TimeUnit.MILLISECONDS));
            assertEquals(0, proxy.refused());
        }
    }
}
