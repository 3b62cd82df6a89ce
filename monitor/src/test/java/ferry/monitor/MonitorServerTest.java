package ferry.monitor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.migration.MigrationReport;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PipedInputStream;
import java.io.PipedOutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class MonitorServerTest {
    private static final String GREETING = MonitorServer.BANNER + "\n" + MonitorServer.PROMPT;

    @TempDir
    Path tmp;

    /**
     * A real handler, as the supervisor would be: it records each command and answers a few.
     * {@code migrate} without -d prints progress and waits until another client asks {@code info status},
     * which only works if the two clients are served at once.
     */
    static final class RecordingHandler implements MonitorHandler {
        final LinkedBlockingQueue<MonitorCommand> executed = new LinkedBlockingQueue<>();
        final CountDownLatch statusAsked = new CountDownLatch(1);
        final CountDownLatch stdioClosed = new CountDownLatch(1);

        @Override
        public void execute(MonitorCommand command, MonitorOutput out) throws MonitorException {
            executed.add(command);
            switch (command) {
                case MonitorCommand.Migrate migrate when !migrate.detach() -> {
                    out.println("migrating to " + migrate.uri());
                    try {
                        if (!statusAsked.await(10, TimeUnit.SECONDS)) {
                            throw new MonitorException(MonitorException.Kind.FAILED, "no status asked within 10 s");
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new MonitorException(MonitorException.Kind.FAILED, "interrupted", e);
                    }
                    out.println("Migration status: completed");
                }
                case MonitorCommand.InfoStatus status -> {
                    out.println("VM status: running");
                    statusAsked.countDown();
                }
                case MonitorCommand.InfoMigrate info -> out.println(InfoMigrateView.render(MigrationReport.idle()));
                case MonitorCommand.Help help -> out.println(help.topic().isEmpty()
                        ? MonitorHelp.all() : MonitorHelp.topic(help.topic().get()).orElse("unknown command"));
                case MonitorCommand.Passthrough passthrough when passthrough.line().equals("boom") ->
                        throw new IllegalStateException("handler bug: state=broken\nsecond line for the log only");
                case MonitorCommand.Stop stop -> throw new MonitorException(MonitorException.Kind.REFUSED, "VM is already paused");
                default -> out.println("ok " + command.getClass().getSimpleName());
            }
        }

        @Override
        public void stdioClosed() {
            stdioClosed.countDown();
        }
    }

    /** A monitor client on a socket: sends lines, reads until the next prompt. */
    static final class Client implements AutoCloseable {
        final SocketChannel channel;
        final InputStream in;

        Client(SocketChannel channel) {
            this.channel = channel;
            this.in = java.nio.channels.Channels.newInputStream(channel);
        }

        void send(String text) throws IOException {
            ByteBuffer bytes = ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8));
            while (bytes.hasRemaining()) {
                channel.write(bytes);
            }
        }

        /** Everything up to and including the next prompt (bounded by the class timeout and 1 MiB). */
        String untilPrompt() throws IOException {
            ByteArrayOutputStream got = new ByteArrayOutputStream();
            while (got.size() < (1 << 20)) {
                int b = in.read();
                if (b < 0) {
                    throw new IOException("EOF before prompt, got: " + got.toString(StandardCharsets.UTF_8));
                }
                got.write(b);
                if (got.toString(StandardCharsets.UTF_8).endsWith(MonitorServer.PROMPT)) {
                    return got.toString(StandardCharsets.UTF_8);
                }
            }
            throw new IOException("no prompt in 1 MiB");
        }

        String command(String line) throws IOException {
            send(line + "\n");
            return untilPrompt();
        }

        @Override
        public void close() throws IOException {
            channel.close();
        }
    }

    private static Client unixClient(Path socket) throws IOException {
        SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        channel.connect(UnixDomainSocketAddress.of(socket));
        return new Client(channel);
    }

    @Test
    void shouldServeTwoUnixClientsAtOnceAndSurviveOneDroppingMidLine() throws Exception {
        Path socket = tmp.resolve("monitor.sock");
        RecordingHandler handler = new RecordingHandler();
        try (MonitorServer server = new MonitorServer(handler, List.of(new MonitorEndpoint.Unix(socket)))) {
            server.start();
            try (Client a = unixClient(socket); Client b = unixClient(socket)) {
                assertEquals(GREETING, a.untilPrompt());
                assertEquals(GREETING, b.untilPrompt());

                a.send("migrate -b tcp://10.0.0.2:4444\n");   // blocks in the handler until b asks info status
                assertEquals("VM status: running\n" + MonitorServer.PROMPT, b.command("info status"));
                assertEquals("migrating to tcp:10.0.0.2:4444\nMigration status: completed\n" + MonitorServer.PROMPT,
                        a.untilPrompt());

                assertEquals(MonitorServer.PROMPT, a.command(""));   // empty lines: just the prompt again
                assertEquals(MonitorServer.PROMPT, a.command("   \r"));
                assertEquals(MonitorServer.PROMPT, a.command("info migrate"));   // NONE prints nothing, as QEMU

                String usage = b.command("migrate -x tcp:h:1");
                assertTrue(usage.startsWith("Error: migrate: unsupported option -x\nmigrate [-d] [-b] [-i] [-r] uri -- "), usage);
                assertEquals("Error: VM is already paused\n" + MonitorServer.PROMPT, b.command("stop"));
                assertEquals("Error: handler bug: state=broken\n" + MonitorServer.PROMPT, b.command("boom"));
                assertEquals("ok Passthrough\n" + MonitorServer.PROMPT, b.command("info registers"));

                a.send("quit");   // no newline: the client drops mid-line
                a.channel.close();
                assertEquals("ok Cont\n" + MonitorServer.PROMPT, b.command("c"));   // the other client is unaffected
                assertTrue(b.command("help").startsWith("help|? [cmd] -- show the help\n"));
            }
            try (Client c = unixClient(socket)) {   // the server still accepts after clients leave
                assertEquals(GREETING, c.untilPrompt());
                assertEquals("ok Quit\n" + MonitorServer.PROMPT, c.command("q"));
            }
            assertTrue(Files.exists(socket));
        }
        assertFalse(Files.exists(socket), "close() removes the socket file");
        List<String> executed = handler.executed.stream().map(c -> c.getClass().getSimpleName()).toList();
        // a's migrate and b's info status race to the handler; the rest is in order. The half-typed "quit"
        // never ran, and usage errors never reached the handler.
        assertEquals(java.util.Set.of("Migrate", "InfoStatus"), java.util.Set.copyOf(executed.subList(0, 2)));
        assertEquals(List.of("InfoMigrate", "Stop", "Passthrough", "Passthrough", "Cont", "Help", "Quit"),
                executed.subList(2, executed.size()));
    }

    @Test
    void shouldDisconnectClientsAndJoinOnClose() throws Exception {
        Path socket = tmp.resolve("m.sock");
        RecordingHandler handler = new RecordingHandler();
        MonitorServer server = new MonitorServer(handler, List.of(new MonitorEndpoint.Unix(socket),
                new MonitorEndpoint.Tcp(InetAddress.getLoopbackAddress().getHostAddress(), 0)));
        server.start();
        SocketChannel tcp = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), server.tcpPort()));
        try (Client t = new Client(tcp); Client u = unixClient(socket)) {
            assertEquals(GREETING, t.untilPrompt());
            assertEquals(GREETING, u.untilPrompt());
            assertEquals("ok InfoVersion\n" + MonitorServer.PROMPT, t.command("info version"));
            server.close();
            assertEquals(-1, t.in.read(), "client sees end-of-file once the server closes");
            assertEquals(-1, u.in.read());
        }
        assertFalse(Files.exists(socket));
        org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> SocketChannel.open(
                new InetSocketAddress(InetAddress.getLoopbackAddress(), server.tcpPort())).close(), "listener closed");
    }

    @Test
    void shouldReplaceAStaleSocketFileButNotOtherFiles() throws Exception {
        Path socket = tmp.resolve("stale.sock");
        try (var old = java.nio.channels.ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            old.bind(UnixDomainSocketAddress.of(socket));   // a socket file left by an earlier run
        }
        try (MonitorServer server = new MonitorServer(new RecordingHandler(), List.of(new MonitorEndpoint.Unix(socket)))) {
            server.start();
            try (Client c = unixClient(socket)) {
                assertEquals(GREETING, c.untilPrompt());
            }
        }
        Path regular = tmp.resolve("regular");
        Files.writeString(regular, "keep me");
        MonitorServer server = new MonitorServer(new RecordingHandler(), List.of(new MonitorEndpoint.Unix(regular)));
        IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, server::start);
        assertEquals("monitor listen failed: unix=" + regular + ": a file that is not a socket is in the way", e.getMessage());
        assertEquals("keep me", Files.readString(regular));
        server.close();
    }

    @Test
    void shouldServeStdioAndTellTheHandlerAtEndOfFile() throws Exception {
        PipedOutputStream keyboard = new PipedOutputStream();
        PipedInputStream stdin = new PipedInputStream(keyboard, 1 << 16);
        ByteArrayOutputStream stdout = new ByteArrayOutputStream();
        OutputStream synchronizedStdout = new OutputStream() {
            @Override
            public void write(int b) {
                synchronized (stdout) {
                    stdout.write(b);
                }
            }

            @Override
            public void write(byte[] b, int off, int len) {
                synchronized (stdout) {
                    stdout.write(b, off, len);
                }
            }
        };
        RecordingHandler handler = new RecordingHandler();
        try (MonitorServer server = new MonitorServer(handler, List.of(new MonitorEndpoint.Stdio(stdin, synchronizedStdout)))) {
            server.start();
            keyboard.write("info status\nmigrate_set_speed 10Q\n".getBytes(StandardCharsets.UTF_8));
            keyboard.close();
            assertTrue(handler.stdioClosed.await(10, TimeUnit.SECONDS), "handler told of stdin EOF");
        }
        String out;
        synchronized (stdout) {
            out = stdout.toString(StandardCharsets.UTF_8);
        }
        assertEquals(GREETING + "VM status: running\n" + MonitorServer.PROMPT
                + "Error: migrate_set_speed: invalid size '10Q': expected a number with an optional suffix B, K, M, G, T"
                + " (no suffix: MiB)\n" + MonitorHelp.topic("migrate_set_speed").orElseThrow() + "\n" + MonitorServer.PROMPT, out);
    }

    @Test
    void shouldListenOnLoopbackUnlessAHostIsGiven() throws Exception {
        assertEquals("127.0.0.1", new MonitorEndpoint.Tcp("", 0).host());
        try (MonitorServer server = new MonitorServer(new RecordingHandler(), List.of(new MonitorEndpoint.Tcp("", 0)))) {
            server.start();
            try (Client c = new Client(SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), server.tcpPort())))) {
                assertTrue(c.untilPrompt().startsWith(MonitorServer.BANNER));
            }
            for (InetAddress address : java.util.Collections.list(java.net.NetworkInterface.getNetworkInterfaces()).stream()
                    .flatMap(i -> java.util.Collections.list(i.getInetAddresses()).stream())
                    .filter(a -> !a.isLoopbackAddress() && a instanceof java.net.Inet4Address).toList()) {
                try (SocketChannel outside = SocketChannel.open()) {
                    assertThrows(IOException.class, () -> outside.connect(new InetSocketAddress(address, server.tcpPort())),
                            "the monitor answered on " + address);
                }
            }
        }
    }

    @Test
    void shouldGoOnAcceptingAfterRunningOutOfFileDescriptors() throws Exception {
        Path socket = tmp.resolve("m.sock");
        try (MonitorServer server = new MonitorServer(new RecordingHandler(), List.of(new MonitorEndpoint.Unix(socket)))) {
            server.start();
            try (Client warm = unixClient(socket)) {                 // loads the session's classes before descriptors run out
                assertTrue(warm.command("info status").contains("(ferry)"));
            }
            List<SocketChannel> held = new java.util.ArrayList<>();
            try {
                ferry.testkit.OpenFileLimit.withSpare(4, () -> {     // a few connections, then accept(2) fails with EMFILE
                    for (int i = 0; i < 20; i++) {
                        try {
                            SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                            held.add(ch);
                            ch.connect(UnixDomainSocketAddress.of(socket));
                        } catch (IOException emfile) {
                            break;                            // our own side ran out too
                        }
                    }
                    Thread.sleep(500);                        // the accept loop meets EMFILE, backs off, retries
                });
            } finally {
                for (SocketChannel ch : held) {
                    ch.close();
                }
            }
            try (Client c = unixClient(socket)) {
                assertTrue(c.untilPrompt().startsWith(MonitorServer.BANNER), "the monitor stopped accepting after EMFILE");
                assertTrue(c.command("info status").contains("(ferry)"));
            }
        }
    }
}
