package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class JsonDecoderTest {
    /** A QMP session as QEMU 7.2 sends it: greeting, a reply, an event, a reply with an HMP string. */
    private static final String STREAM = """
            {"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}
            {"return": {}, "id": "ferry-1"}
            {"timestamp": {"seconds": 1795652581, "microseconds": 478273}, "event": "STOP"}
            {"return": "QEMU emulator version 7.2.22\\r\\n\\u00e9 {not a brace} [x]\\"", "id": "ferry-2"}
            {"return": [{"a": -1.5e3, "b": null, "c": true, "d": false, "e": []}], "id": "ferry-3"}
            """;

    @ParameterizedTest
    @ValueSource(ints = {1, 5, 7, 4096})
    void shouldDecodeTheSameMessagesWhateverThePieceSize(int pieceSize) throws Exception {
        byte[] bytes = STREAM.getBytes(StandardCharsets.UTF_8);
        JsonDecoder decoder = new JsonDecoder();
        List<Json> values = new ArrayList<>();
        for (int at = 0; at < bytes.length; at += pieceSize) {
            values.addAll(decoder.feed(bytes, at, Math.min(pieceSize, bytes.length - at)));
        }
        assertTrue(decoder.idle());
        assertEquals(5, values.size());
        Json.Obj greeting = values.get(0).asObject();
        assertEquals(7, greeting.object("QMP").object("version").object("qemu").number("major"));
        assertEquals("ferry-1", values.get(1).asObject().string("id"));
        assertEquals("STOP", values.get(2).asObject().string("event"));
        assertEquals("QEMU emulator version 7.2.22\r\n\u00e9 {not a brace} [x]\"", values.get(3).asObject().string("return"));
        Json.Obj element = values.get(4).asObject().require("return").asArray().get(0).asObject();
        assertEquals(new Json.Num(new BigDecimal("-1.5e3")), element.require("a"));
        assertEquals(new Json.Null(), element.require("b"));
        assertEquals(true, element.bool("c"));
        assertEquals(List.of(), element.require("e").asArray());
    }

    @Test
    void shouldDecodeMessagesWithoutNewlinesBetweenThem() throws Exception {
        byte[] bytes = "{\"a\":1}{\"b\":[2]}[3]".getBytes(StandardCharsets.UTF_8);
        List<Json> values = new JsonDecoder().feed(bytes, 0, bytes.length);
        assertEquals(3, values.size());
        assertEquals(1, values.get(0).asObject().number("a"));
    }

    @Test
    void shouldKeepAPartialMessageUntilItEnds() throws Exception {
        JsonDecoder decoder = new JsonDecoder();
        byte[] first = "{\"return\": {\"x\": \"}".getBytes(StandardCharsets.UTF_8);
        assertEquals(List.of(), decoder.feed(first, 0, first.length));
        assertTrue(!decoder.idle());
        byte[] rest = "\"}}\n".getBytes(StandardCharsets.UTF_8);
        List<Json> values = decoder.feed(rest, 0, rest.length);
        assertEquals("}", values.get(0).asObject().object("return").string("x"));
    }

    @Test
    void shouldEncodeWhatItDecodes() throws Exception {
        String text = "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info \\\"x\\\"\\n\\u0001\"},\"id\":\"ferry-7\",\"n\":[1,-2,3.25,true,null]}";
        Json value = JsonDecoder.parse(text);
        assertEquals(text, value.toString());
        assertEquals(value, JsonDecoder.parse(value.toString()));
    }

    @ParameterizedTest
    @ValueSource(strings = {
        "{\"a\":1,}", "{'a':1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":NaN}", "{\"a\" 1}", "{\"a\":tru}",
        "[1 2]", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":1,\"a\":2}", "{\"a\":-}", "[1,]", "{\"a\":\"tab\there\"}"
    })
    void shouldRejectMalformedJsonWithItsPosition(String text) {
        JsonException e = assertThrows(JsonException.class, () -> new JsonDecoder().feed(
                text.getBytes(StandardCharsets.UTF_8), 0, text.getBytes(StandardCharsets.UTF_8).length));
        assertTrue(e.getMessage().startsWith("malformed JSON: ") && e.getMessage().contains("position="), e.getMessage());
    }

    @Test
    void shouldRejectScalarsAtTopLevelOfAStream() {
        byte[] bytes = "{}\n42\n".getBytes(StandardCharsets.UTF_8);
        JsonException e = assertThrows(JsonException.class, () -> new JsonDecoder().feed(bytes, 0, bytes.length));
        assertTrue(e.getMessage().contains("expected '{' or '[' at top level, got '4' at stream offset=3"), e.getMessage());
    }

    @Test
    void shouldRejectInvalidUtf8() {
        byte[] bytes = {'{', '"', 'a', '"', ':', '"', (byte) 0xC3, (byte) 0x28, '"', '}'};
        JsonException e = assertThrows(JsonException.class, () -> new JsonDecoder().feed(bytes, 0, bytes.length));
        assertTrue(e.getMessage().contains("invalid UTF-8"), e.getMessage());
    }

    @Test
    void shouldNameTheMissingMember() throws Exception {
        Json.Obj obj = JsonDecoder.parse("{\"a\":1}").asObject();
        JsonException e = assertThrows(JsonException.class, () -> obj.string("status"));
        assertTrue(e.getMessage().contains("missing member: name=status"), e.getMessage());
        assertThrows(JsonException.class, () -> obj.string("a"));
        assertEquals(new Json.Obj(Map.of("a", Json.of(1))), obj);
    }

    /** {@code {"return": "<limit + 1 KiB of x>", "id": "ferry-7"}}, then a small reply: as xp /1000000xg 0 would send. */
    private static byte[] oversizedThenSmall(String payloadOpen, String payloadClose) {
        StringBuilder sb = new StringBuilder(JsonDecoder.MAX_MESSAGE_BYTES + 4096);
        sb.append("{\"return\": ").append(payloadOpen);
        sb.append("x\\\"{[".repeat((JsonDecoder.MAX_MESSAGE_BYTES + 1024) / 5));   // escapes and brackets inside the string
        sb.append(payloadClose).append(", \"id\": \"ferry-7\"}\r\n{\"return\": {}, \"id\": \"ferry-8\"}\r\n");
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    @ParameterizedTest
    @ValueSource(ints = {7, 65536})
    void shouldSkipAnOversizedMessageKeepItsIdAndDecodeTheNextOne(int pieceSize) throws Exception {
        for (String[] payload : new String[][] {{"\"", "\""}, {"[\"", "\"]"}}) {   // a huge string, a huge array
            byte[] bytes = oversizedThenSmall(payload[0], payload[1]);
            JsonDecoder decoder = new JsonDecoder();
            List<JsonDecoder.Decoded> out = new ArrayList<>();
            for (int at = 0; at < bytes.length; at += pieceSize) {
                out.addAll(decoder.decode(java.nio.ByteBuffer.wrap(bytes, at, Math.min(pieceSize, bytes.length - at))));
            }
            assertTrue(decoder.idle());
            assertEquals(2, out.size());
            JsonDecoder.Oversized big = (JsonDecoder.Oversized) out.get(0);
            assertTrue(big.length() > JsonDecoder.MAX_MESSAGE_BYTES);
            Json.Obj skeleton = big.skeleton().orElseThrow();
            assertEquals("ferry-7", skeleton.string("id"));
            assertEquals(new Json.Null(), skeleton.require("return"));
            assertEquals("ferry-8", ((JsonDecoder.Value) out.get(1)).json().asObject().string("id"));
        }
    }

    @Test
    void shouldStillRefuseAnOversizedMessageThroughFeed() {
        byte[] bytes = oversizedThenSmall("\"", "\"");
        assertThrows(JsonException.class, () -> new JsonDecoder().feed(bytes, 0, bytes.length));
    }
}
