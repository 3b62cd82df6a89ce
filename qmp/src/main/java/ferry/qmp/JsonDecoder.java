package ferry.qmp;

import java.io.ByteArrayOutputStream;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Decodes a stream of JSON texts (QMP's wire format) delivered in arbitrary pieces.
 *
 * <p>Design notes: QMP separates messages with newlines, but a read may end anywhere, so the
 * decoder does not rely on them. It runs in two steps. A byte scanner (an explicit state machine:
 * between values, inside a value at some depth, inside a string, after a backslash) finds where a
 * top-level object or array ends, buffering its bytes across calls; the complete text is then
 * decoded as strict UTF-8 and parsed by a recursive-descent parser that rejects anything RFC 8259
 * does not allow (trailing commas, single quotes, leading zeroes, bare control characters, NaN, ...).
 * Top-level values must be objects or arrays: a bare number has no end in a stream.
 *
 * <p>A message longer than {@link #MAX_MESSAGE_BYTES} is not kept, and does not end the stream: the
 * scanner runs on to its end without buffering it, keeping only its {@link Skeleton} (the top-level
 * members, with nested values and long strings replaced by null), and {@link #decode} hands that over as
 * {@link Oversized}. A QMP reply's {@code id} comes after its payload, so it is found there; the next
 * message then decodes as usual. {@link #feed} keeps the old contract and refuses such a message.
 *
 * <p>Not thread-safe: one reader thread feeds it.
 */
public final class JsonDecoder {
    /** Largest accepted message; QEMU's largest replies (query-qmp-schema) are about 200 KiB. */
    public static final int MAX_MESSAGE_BYTES = 16 << 20;
    private static final int MAX_DEPTH = 128;

    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();
    private int depth;
    private boolean inString;
    private boolean escaped;
    private long streamOffset;
    /** Non-null while skipping an oversized message: what is kept of it. */
    private Skeleton skipped;
    private long skippedBytes;

    /** One message out of {@link #decode}: a value, or what is left of one too large to keep. */
    public sealed interface Decoded permits Value, Oversized {}

    public record Value(Json json) implements Decoded {}

    /**
     * A message of {@code length} bytes, over {@link #MAX_MESSAGE_BYTES}, that was dropped. {@code skeleton}
     * has its top-level members, nested values and strings over {@value Skeleton#MAX_STRING_BYTES} bytes
     * as null; empty if the message was no object or its skeleton was itself too large.
     */
    public record Oversized(long length, Optional<Json.Obj> skeleton) implements Decoded {}

    /** Consumes {@code bytes} from position to limit; returns the values completed by them, in order. An oversized message fails. */
    public List<Json> feed(ByteBuffer bytes) throws JsonException {
        List<Json> values = new ArrayList<>(1);
        for (Decoded d : decode(bytes)) {
            switch (d) {
                case Value v -> values.add(v.json());
                case Oversized o -> throw new JsonException("JSON message too large: limit=" + MAX_MESSAGE_BYTES + " bytes");
            }
        }
        return values;
    }

    /** Consumes {@code bytes} from position to limit; returns the messages completed by them, oversized ones included. */
    public List<Decoded> decode(ByteBuffer bytes) throws JsonException {
        List<Decoded> done = new ArrayList<>(1);
        while (bytes.hasRemaining()) {
            byte b = bytes.get();
            streamOffset++;
            if (depth == 0) {
                if (b == ' ' || b == '\t' || b == '\r' || b == '\n') {
                    continue;
                }
                if (b != '{' && b != '[') {
                    throw new JsonException("malformed JSON stream: expected '{' or '[' at top level, got "
                            + describe(b) + " at stream offset=" + (streamOffset - 1));
                }
            }
            if (skipped == null && pending.size() >= MAX_MESSAGE_BYTES) {
                skipped = new Skeleton();          // from here on keep only the skeleton
                skipped.accept(pending.toByteArray());
                skippedBytes = pending.size();
                pending.reset();
            }
            if (skipped != null) {
                skipped.accept(b);
                skippedBytes++;
            } else {
                pending.write(b);
            }
            if (inString) {
                if (escaped) {
                    escaped = false;
                } else if (b == '\\') {
                    escaped = true;
                } else if (b == '"') {
                    inString = false;
                }
            } else if (b == '"') {
                inString = true;
            } else if (b == '{' || b == '[') {
                depth++;
            } else if (b == '}' || b == ']') {
                depth--;
                if (depth == 0 && skipped != null) {
                    done.add(new Oversized(skippedBytes, skipped.json()));
                    skipped = null;
                    skippedBytes = 0;
                } else if (depth == 0) {
                    byte[] text = pending.toByteArray();
                    pending.reset();
                    done.add(new Value(parse(text)));
                }
            }
        }
        return done;
    }

    public List<Json> feed(byte[] bytes, int offset, int length) throws JsonException {
        return feed(ByteBuffer.wrap(bytes, offset, length));
    }

    /** True when no partial value is buffered (the stream may end here cleanly). */
    public boolean idle() {
        return depth == 0 && pending.size() == 0 && skipped == null;
    }

    /**
     * The top level of a message, kept while the rest is dropped: bytes at depth 1 are copied, a nested
     * value becomes {@code null}, and so does a string over {@link #MAX_STRING_BYTES} bytes. So
     * {@code {"return": "<100 MiB>", "id": "ferry-7"}} keeps as {@code {"return": null, "id": "ferry-7"}}.
     * Its own scanner state mirrors the decoder's. Past {@link #MAX_BYTES} it gives up (no skeleton).
     */
    static final class Skeleton {
        static final int MAX_STRING_BYTES = 256;
        static final int MAX_BYTES = 64 * 1024;
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();
        private int depth;
        private boolean inString;
        private boolean escaped;
        private int stringStart = -1;   // where the current depth-1 string starts in out, -1 once replaced
        private boolean overflow;

        void accept(byte[] bytes) {
            for (byte b : bytes) {
                accept(b);
            }
        }

        void accept(byte b) {
            if (inString) {
                if (escaped) {
                    escaped = false;
                } else if (b == '\\') {
                    escaped = true;
                } else if (b == '"') {
                    inString = false;
                }
                if (depth == 1) {
                    if (stringStart >= 0) {
                        out.write(b);
                        if (out.size() - stringStart > MAX_STRING_BYTES) {
                            truncateTo(stringStart);
                            out.writeBytes("null".getBytes(StandardCharsets.US_ASCII));
                            stringStart = -1;
                        }
                    }
                }
            } else if (b == '"') {
                inString = true;
                if (depth == 1) {
                    stringStart = out.size();
                    out.write(b);
                }
            } else if (b == '{' || b == '[') {
                depth++;
                if (depth == 1) {
                    out.write(b);
                } else if (depth == 2) {
                    out.writeBytes("null".getBytes(StandardCharsets.US_ASCII));
                }
            } else if (b == '}' || b == ']') {
                if (depth == 1) {
                    out.write(b);
                }
                depth--;
            } else if (depth == 1) {
                out.write(b);
            }
            if (out.size() > MAX_BYTES) {
                overflow = true;
                out.reset();
            }
        }

        private void truncateTo(int length) {
            byte[] kept = java.util.Arrays.copyOf(out.toByteArray(), length);
            out.reset();
            out.writeBytes(kept);
        }

        Optional<Json.Obj> json() {
            if (overflow) {
                return Optional.empty();
            }
            try {
                return parse(out.toByteArray()) instanceof Json.Obj o ? Optional.of(o) : Optional.empty();
            } catch (JsonException e) {
                return Optional.empty();
            }
        }
    }

    /** Parses one complete JSON text (any value at top level). */
    public static Json parse(byte[] utf8) throws JsonException {
        String text;
        try {
            CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(utf8));
            text = chars.toString();
        } catch (CharacterCodingException e) {
            throw new JsonException("malformed JSON: invalid UTF-8: " + e.getMessage());
        }
        return parse(text);
    }

    public static Json parse(String text) throws JsonException {
        Parser p = new Parser(text);
        p.skipWhitespace();
        Json value = p.value(0);
        p.skipWhitespace();
        if (p.pos != text.length()) {
            throw p.error("unexpected data after the value");
        }
        return value;
    }

    private static String describe(byte b) {
        return b >= 0x20 && b < 0x7f ? "'" + (char) b + "'" : String.format("byte 0x%02x", b & 0xff);
    }

    private static final class Parser {
        private final String text;
        private int pos;

        Parser(String text) {
            this.text = text;
        }

        Json value(int depth) throws JsonException {
            if (depth > MAX_DEPTH) {
                throw error("nesting deeper than " + MAX_DEPTH);
            }
            if (pos >= text.length()) {
                throw error("unexpected end of input");
            }
            char c = text.charAt(pos);
            return switch (c) {
                case '{' -> object(depth);
                case '[' -> array(depth);
                case '"' -> new Json.Str(string());
                case 't' -> literal("true", new Json.Bool(true));
                case 'f' -> literal("false", new Json.Bool(false));
                case 'n' -> literal("null", new Json.Null());
                default -> {
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        yield number();
                    }
                    throw error("unexpected character");
                }
            };
        }

        private Json object(int depth) throws JsonException {
            pos++; // '{'
            Map<String, Json> members = new LinkedHashMap<>();
            skipWhitespace();
            if (peek() == '}') {
                pos++;
                return new Json.Obj(members);
            }
            while (true) {
                skipWhitespace();
                if (peek() != '"') {
                    throw error("expected a member name");
                }
                int at = pos;
                String name = string();
                skipWhitespace();
                expect(':');
                skipWhitespace();
                Json value = value(depth + 1);
                if (members.putIfAbsent(name, value) != null) {
                    pos = at;
                    throw error("duplicate member name=" + name);
                }
                skipWhitespace();
                char c = peek();
                pos++;
                if (c == '}') {
                    return new Json.Obj(members);
                }
                if (c != ',') {
                    pos--;
                    throw error("expected ',' or '}'");
                }
            }
        }

        private Json array(int depth) throws JsonException {
            pos++; // '['
            List<Json> elements = new ArrayList<>();
            skipWhitespace();
            if (peek() == ']') {
                pos++;
                return new Json.Arr(elements);
            }
            while (true) {
                skipWhitespace();
                elements.add(value(depth + 1));
                skipWhitespace();
                char c = peek();
                pos++;
                if (c == ']') {
                    return new Json.Arr(elements);
                }
                if (c != ',') {
                    pos--;
                    throw error("expected ',' or ']'");
                }
            }
        }

        private String string() throws JsonException {
            pos++; // opening quote
            StringBuilder out = new StringBuilder();
            while (true) {
                if (pos >= text.length()) {
                    throw error("unterminated string");
                }
                char c = text.charAt(pos++);
                if (c == '"') {
                    return out.toString();
                }
                if (c < 0x20) {
                    pos--;
                    throw error("control character in string");
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                if (pos >= text.length()) {
                    throw error("unterminated escape");
                }
                char e = text.charAt(pos++);
                switch (e) {
                    case '"' -> out.append('"');
                    case '\\' -> out.append('\\');
                    case '/' -> out.append('/');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'u' -> {
                        if (pos + 4 > text.length()) {
                            throw error("truncated \\u escape");
                        }
                        int code = 0;
                        for (int i = 0; i < 4; i++) {
                            int digit = Character.digit(text.charAt(pos + i), 16);
                            if (digit < 0) {
                                throw error("bad \\u escape");
                            }
                            code = code * 16 + digit;
                        }
                        pos += 4;
                        out.append((char) code);
                    }
                    default -> {
                        pos--;
                        throw error("bad escape");
                    }
                }
            }
        }

        private Json number() throws JsonException {
            int start = pos;
            if (peek() == '-') {
                pos++;
            }
            if (peek() == '0') {
                pos++;
                if (Character.isDigit(peek())) {
                    throw error("leading zero in number");
                }
            } else {
                digits();
            }
            if (peek() == '.') {
                pos++;
                digits();
            }
            if (peek() == 'e' || peek() == 'E') {
                pos++;
                if (peek() == '+' || peek() == '-') {
                    pos++;
                }
                digits();
            }
            return new Json.Num(new BigDecimal(text.substring(start, pos)));
        }

        private void digits() throws JsonException {
            int start = pos;
            while (pos < text.length() && text.charAt(pos) >= '0' && text.charAt(pos) <= '9') {
                pos++;
            }
            if (pos == start) {
                throw error("expected a digit");
            }
        }

        private Json literal(String word, Json value) throws JsonException {
            if (!text.startsWith(word, pos)) {
                throw error("unexpected character");
            }
            pos += word.length();
            return value;
        }

        private void expect(char c) throws JsonException {
            if (peek() != c) {
                throw error("expected '" + c + "'");
            }
            pos++;
        }

        private char peek() {
            return pos < text.length() ? text.charAt(pos) : '\0';
        }

        void skipWhitespace() {
            while (pos < text.length()) {
                char c = text.charAt(pos);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                pos++;
            }
        }

        JsonException error(String what) {
            int from = Math.max(0, pos - 20);
            int to = Math.min(text.length(), pos + 20);
            String near = text.substring(from, to).replace("\n", "\\n");
            return new JsonException("malformed JSON: " + what + " at position=" + pos + " near '" + near + "'");
        }
    }
}
