package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** QmpClient against a scripted QEMU on a unix socket: the replies are what QEMU 7.2 would write. */
class QmpClientTest {
    @TempDir Path tmp;

    /** Answers every command; {@code xp} gets a reply one MiB over the decoder's limit, with or without its id. */
    private static void fakeQemu(ServerSocketChannel server, boolean idOnHugeReply) {
        try (SocketChannel ch = server.accept()) {
            write(ch, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n");
            BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
            for (String line = in.readLine(); line != null; line = in.readLine()) {
                Json.Obj command = JsonDecoder.parse(line).asObject();
                String id = command.string("id");
                String hmp = command.has("arguments") ? command.object("arguments").string("command-line") : "";
                if (hmp.startsWith("xp")) {
                    StringBuilder huge = new StringBuilder(JsonDecoder.MAX_MESSAGE_BYTES + (2 << 20));
                    huge.append("{\"return\": \"");
                    String row = "0000000000000000: 0x0000000000000000 0x0000000000000000\\r\\n";
                    while (huge.length() < JsonDecoder.MAX_MESSAGE_BYTES + (1 << 20)) {
                        huge.append(row);
                    }
                    huge.append('"').append(idOnHugeReply ? ", \"id\": \"" + id + "\"" : "").append("}\r\n");
                    write(ch, huge.toString());
                } else {
                    write(ch, "{\"return\": " + (hmp.isEmpty() ? "{}" : "\"ok: " + hmp + "\"") + ", \"id\": \"" + id + "\"}\r\n");
                }
            }
        } catch (IOException e) {   // JsonException too
            // the client closed (or sent what this script does not know): the script ends
        }
    }

    private static void write(SocketChannel ch, String text) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8));
        while (bytes.hasRemaining()) {
            ch.write(bytes);
        }
    }

    private void shouldRefuseTheHugeReplyAndKeepTheConnection(boolean idOnHugeReply) throws Exception {
        Path socket = tmp.resolve("qmp.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            Thread qemu = Thread.ofVirtual().start(() -> fakeQemu(server, idOnHugeReply));
            try (QmpClient client = new QmpClient(socket, 30_000)) {
                client.start(5_000);
                QmpException e = assertThrows(QmpException.class,
                        () -> client.execute(new QmpCommand.HumanMonitorCommand("xp /1000000xg 0")));
                assertEquals(QmpException.Kind.REPLY_TOO_LARGE, e.kind(), e.getMessage());
                assertTrue(e.getMessage().contains("qmp reply too large: command=human-monitor-command"), e.getMessage());
                assertEquals("ok: info status", client.execute(new QmpCommand.HumanMonitorCommand("info status")));
                assertFalse(client.closed().isDone(), "the connection stays up");
            }
            qemu.join();
        }
    }

    @Test
    void shouldFailOnlyTheCallWhoseReplyIsTooLargeByItsId() throws Exception {
        shouldRefuseTheHugeReplyAndKeepTheConnection(true);
    }

    @Test
    void shouldFailTheOldestPendingCallWhenTheTooLargeReplyHasNoReadableId() throws Exception {
        shouldRefuseTheHugeReplyAndKeepTheConnection(false);
    }
}
