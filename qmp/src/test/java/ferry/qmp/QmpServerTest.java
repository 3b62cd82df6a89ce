package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.OptionalLong;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Ferry's QMP server over a real unix socket, with the replies QEMU 7.2 gives to the same input
 * (checked by hand against qemu-system-x86_64 7.2.22; the VM-tier QmpFaceIT compares the two live).
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class QmpServerTest {
    private static final VersionInfo VERSION = new VersionInfo(7, 2, 22, "Debian 1:7.2+dfsg-7+deb12u18+b3");

    @TempDir Path tmp;

    /** Answers query-status and query-migrate; says CommandNotFound for anything forwarded, as QEMU would. */
    static final class Handler implements QmpHandler {
        final LinkedBlockingQueue<QmpRequest> executed = new LinkedBlockingQueue<>();

        @Override public VersionInfo version() {
            return VERSION;
        }

        @Override public Json execute(QmpRequest request) throws QmpError {
            executed.add(request);
            return switch (request) {
                case QmpRequest.QueryStatus s -> status();
                case QmpRequest.QueryMigrate q -> Json.Obj.of();
                case QmpRequest.Forwarded f -> throw new QmpError(QmpError.COMMAND_NOT_FOUND,
                        "The command " + f.name() + " has not been found");
                default -> Json.Obj.of();
            };
        }
    }

    private static Json status() {
        java.util.Map<String, Json> status = new java.util.LinkedHashMap<>();
        status.put("status", Json.of("running"));
        status.put("singlestep", Json.of(false));
        status.put("running", Json.of(true));
        return new Json.Obj(status);
    }

    private final Handler handler = new Handler();
    private QmpServer server;
    private Path socket;

    @BeforeEach
    void start() throws IOException {
        socket = tmp.resolve("qmp.sock");
        server = new QmpServer(handler, List.of(new QmpEndpoint.Unix(socket)));
        server.start();
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
        assertFalse(Files.exists(socket), "the socket file is removed on close");
    }

    /** A client that reads whole messages, however the bytes arrive. */
    private final class Client implements AutoCloseable {
        final SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        final JsonDecoder decoder = new JsonDecoder();
        final Deque<Json> pending = new ArrayDeque<>();

        Client() throws IOException {
            channel.connect(UnixDomainSocketAddress.of(socket));
        }

        void send(String text) throws IOException {
            ByteBuffer bytes = ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8));
            while (bytes.hasRemaining()) {
                channel.write(bytes);
            }
        }

        /** Sends in pieces of {@code piece} bytes, as a slow client or a fragmenting stream would. */
        void sendInPieces(String text, int piece) throws IOException, InterruptedException {
            for (int at = 0; at < text.length(); at += piece) {
                send(text.substring(at, Math.min(text.length(), at + piece)));
                Thread.sleep(2);
            }
        }

        String next() throws IOException, JsonException {
            ByteBuffer buffer = ByteBuffer.allocate(4096);
            while (pending.isEmpty()) {
                buffer.clear();
                if (channel.read(buffer) < 0) {
                    throw new IOException("server closed the connection");
                }
                pending.addAll(decoder.feed(buffer.flip()));
            }
            return pending.poll().toString();
        }

        String call(String command) throws IOException, JsonException {
            send(command + "\n");
            return next();
        }

        @Override public void close() throws IOException {
            channel.close();
        }
    }

    @Test
    void shouldGreetThenAcceptOnlyCapabilitiesUntilNegotiated() throws Exception {
        try (Client client = new Client()) {
            assertEquals("{\"QMP\":{\"version\":{\"qemu\":{\"micro\":22,\"minor\":2,\"major\":7},"
                    + "\"package\":\"Debian 1:7.2+dfsg-7+deb12u18+b3\"},\"capabilities\":[]}}", client.next());
            assertEquals("{\"id\":1,\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Expecting capabilities negotiation"
                    + " with 'qmp_capabilities'\"}}", client.call("{\"execute\":\"query-status\",\"id\":1}"));
            assertEquals("{\"id\":\"a\",\"error\":{\"class\":\"GenericError\",\"desc\":\"Capability 'oob' not available\"}}",
                    client.call("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]},\"id\":\"a\"}"));
            assertEquals("{\"return\":{},\"id\":\"a\"}", client.call("{\"execute\":\"qmp_capabilities\",\"id\":\"a\"}"));
            assertEquals("{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Capabilities negotiation is already complete,"
                    + " command ignored\"}}", client.call("{\"execute\":\"qmp_capabilities\"}"));
            assertTrue(handler.executed.isEmpty(), "nothing reached the handler before negotiation: " + handler.executed);
        }
    }

    @Test
    void shouldEchoAnyIdAndAnswerMalformedInputAsQemuDoes() throws Exception {
        try (Client client = new Client()) {
            client.next();
            client.call("{\"execute\":\"qmp_capabilities\"}");
            assertEquals("{\"return\":{\"status\":\"running\",\"singlestep\":false,\"running\":true},\"id\":{\"x\":[1,1.5,null]}}",
                    client.call("{\"execute\":\"query-status\",\"id\":{\"x\":[1,1.5,null]}}"));
            assertEquals("{\"id\":7,\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command frob has not been found\"}}",
                    client.call("{\"execute\":\"frob\",\"id\":7}"));
            assertEquals("{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input must be a JSON object\"}}", client.call("[1]"));
            assertEquals("{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'foo' is unexpected\"}}",
                    client.call("{\"foo\":1}"));
            assertEquals("{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input lacks member 'execute'\"}}",
                    client.call("{\"arguments\":{}}"));
            assertEquals("{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'execute' must be a string\"}}",
                    client.call("{\"execute\":1}"));
            assertEquals("{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'arguments' must be an object\"}}",
                    client.call("{\"execute\":\"query-status\",\"arguments\":[]}"));
            assertEquals("{\"id\":2,\"error\":{\"class\":\"GenericError\",\"desc\":\"Parameter 'a' is unexpected\"}}",
                    client.call("{\"execute\":\"query-status\",\"arguments\":{\"a\":1},\"id\":2}"));
            String parseError = client.call("{\"execute\" 1}");
            assertTrue(parseError.startsWith("{\"error\":{\"class\":\"GenericError\",\"desc\":\"JSON parse error, "), parseError);
            assertEquals("{\"return\":{},\"id\":3}", client.call("{\"execute\":\"query-migrate\",\"id\":3}"),
                    "the session goes on after a parse error");
        }
    }

    @Test
    void shouldDecodeCommandsSentInUnevenPieces() throws Exception {
        try (Client client = new Client()) {
            client.next();
            String commands = "{\"execute\":\"qmp_capabilities\"}\r\n{\"execute\":\"migrate\",\"arguments\":"
                    + "{\"uri\":\"tcp:10.0.0.2:4444\",\"blk\":true},\"id\":\"m\"}\n";
            for (int piece : new int[] {1, 5, 7}) {
                handler.executed.clear();
                try (Client again = new Client()) {
                    again.next();
                    again.sendInPieces(commands, piece);
                    assertEquals("{\"return\":{}}", again.next());
                    assertEquals("{\"return\":{},\"id\":\"m\"}", again.next());
                    assertEquals(new QmpRequest.Migrate("tcp:10.0.0.2:4444", true, false, false, false), handler.executed.take());
                }
            }
        }
    }

    @Test
    void shouldSendEventsOnlyToClientsPastNegotiation() throws Exception {
        try (Client negotiated = new Client(); Client waiting = new Client()) {
            negotiated.next();
            waiting.next();
            negotiated.call("{\"execute\":\"qmp_capabilities\"}");
            server.broadcast(new QmpEvent.MigrationEvent(MigrationState.ACTIVE));
            server.forward(JsonDecoder.parse("{\"timestamp\":{\"seconds\":1,\"microseconds\":2},\"event\":\"STOP\"}").asObject());
            String migration = negotiated.next();
            assertTrue(migration.matches("\\{\"timestamp\":\\{\"seconds\":\\d+,\"microseconds\":\\d+},\"event\":\"MIGRATION\","
                    + "\"data\":\\{\"status\":\"active\"}}"), migration);
            assertEquals("{\"timestamp\":{\"seconds\":1,\"microseconds\":2},\"event\":\"STOP\"}", negotiated.next());
            assertEquals("{\"id\":1,\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Expecting capabilities negotiation"
                    + " with 'qmp_capabilities'\"}}", waiting.call("{\"execute\":\"query-status\",\"id\":1}"),
                    "no event reached the client still negotiating");
        }
    }

    @Test
    void shouldDecodeTheMigrationCommandsWithQemusArgumentErrors() throws Exception {
        assertEquals(new QmpRequest.MigrateSetParameters(OptionalLong.of(1 << 20), OptionalLong.empty(), OptionalLong.of(65536),
                OptionalLong.empty(), OptionalLong.empty(), java.util.Optional.empty(), java.util.Optional.empty(), java.util.Optional.empty(), List.of("compress-level")), QmpRequest.decode("migrate-set-parameters", JsonDecoder.parse(
                "{\"max-bandwidth\":1048576,\"x-granule-size\":65536,\"compress-level\":1}").asObject()));
        assertEquals(new QmpRequest.MigrateSetParameters(OptionalLong.empty(), OptionalLong.empty(), OptionalLong.empty(),
                OptionalLong.empty(), OptionalLong.empty(), java.util.Optional.of("tls0"), java.util.Optional.of("dest.example"), java.util.Optional.of(""), List.of()),
                QmpRequest.decode("migrate-set-parameters", JsonDecoder.parse(
                "{\"tls-creds\":\"tls0\",\"tls-hostname\":\"dest.example\",\"tls-authz\":null}").asObject()),
                "QEMU's TLS parameters are Ferry's; null unsets, as QAPI's StrOrNull");
        assertRefused("Invalid parameter type for 'tls-creds', expected: StrOrNull", "migrate-set-parameters", "{\"tls-creds\":1}");
        QmpRequest caps = QmpRequest.decode("migrate-set-capabilities", JsonDecoder.parse(
                "{\"capabilities\":[{\"capability\":\"events\",\"state\":true},{\"capability\":\"block\",\"state\":false}]}").asObject());
        assertEquals(java.util.Map.of("events", true, "block", false), ((QmpRequest.MigrateSetCapabilities) caps).capabilities());
        assertInstanceOf(QmpRequest.Forwarded.class, QmpRequest.decode("query-block", Json.Obj.of()));
        assertInstanceOf(QmpRequest.MigrationStep.class, QmpRequest.decode("migrate-continue",
                JsonDecoder.parse("{\"state\":\"pre-switchover\"}").asObject()));
        assertRefused("Parameter 'uri' is missing", "migrate", "{}");
        assertRefused("Invalid parameter type for 'uri', expected: string", "migrate", "{\"uri\":1}");
        assertRefused("Invalid parameter type for 'blk', expected: boolean", "migrate", "{\"uri\":\"tcp:h:1\",\"blk\":\"yes\"}");
        assertRefused("Parameter 'granule-size' is unexpected", "migrate-set-parameters", "{\"granule-size\":1}");
        assertEquals(new QmpRequest.MigrateSetParameters(OptionalLong.empty(), OptionalLong.empty(), OptionalLong.empty(),
                OptionalLong.of(5000), OptionalLong.of(3_600_000), java.util.Optional.empty(), java.util.Optional.empty(),
                java.util.Optional.empty(), List.of()), QmpRequest.decode("migrate-set-parameters", JsonDecoder.parse(
                "{\"x-retry-window\":5000,\"x-partial-timeout\":3600000}").asObject()), "Ferry's own, with QAPI's x- prefix");
        assertRefused("Parameter 'retry-window' is unexpected", "migrate-set-parameters", "{\"retry-window\":1}");
        assertEquals(new QmpRequest.Migrate("tcp:h:1", true, false, false, true),
                QmpRequest.decode("migrate", JsonDecoder.parse("{\"uri\":\"tcp:h:1\",\"blk\":true,\"resume\":true}").asObject()));
        assertEquals(new QmpRequest.MigrateIncomingDiscard(), QmpRequest.decode("x-ferry-migrate-incoming-discard", Json.Obj.of()));
        assertRefused("Parameter 'now' is unexpected", "x-ferry-migrate-incoming-discard", "{\"now\":true}");
        assertEquals(new QmpRequest.Quit(), QmpRequest.decode("quit", Json.Obj.of()));
        assertRefused("Parameter 'capabilities[0].state' is missing", "migrate-set-capabilities",
                "{\"capabilities\":[{\"capability\":\"block\"}]}");
        assertRefused("Parameter 'capability' does not accept value 'frob'", "migrate-set-capabilities",
                "{\"capabilities\":[{\"capability\":\"frob\",\"state\":true}]}");
        assertRefused("Invalid parameter type for 'capabilities', expected: array", "migrate-set-capabilities",
                "{\"capabilities\":{}}");
    }

    private static void assertRefused(String desc, String command, String arguments) throws JsonException {
        QmpError e = assertThrows(QmpError.class, () -> QmpRequest.decode(command, JsonDecoder.parse(arguments).asObject()));
        assertEquals(QmpError.GENERIC_ERROR, e.errorClass());
        assertEquals(desc, e.desc());
    }
}
