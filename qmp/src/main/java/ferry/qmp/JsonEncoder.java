package ferry.qmp;

import java.util.Iterator;
import java.util.Map;

/** Encodes {@link Json} values compactly on one line (no newline inside, as QMP messages are line-separated). */
public final class JsonEncoder {
    private JsonEncoder() {}

    public static String encode(Json value) {
        StringBuilder out = new StringBuilder();
        append(out, value);
        return out.toString();
    }

    private static void append(StringBuilder out, Json value) {
        switch (value) {
            case Json.Obj o -> {
                out.append('{');
                Iterator<Map.Entry<String, Json>> it = o.members().entrySet().iterator();
                while (it.hasNext()) {
                    Map.Entry<String, Json> e = it.next();
                    appendString(out, e.getKey());
                    out.append(':');
                    append(out, e.getValue());
                    if (it.hasNext()) {
                        out.append(',');
                    }
                }
                out.append('}');
            }
            case Json.Arr a -> {
                out.append('[');
                for (int i = 0; i < a.elements().size(); i++) {
                    if (i > 0) {
                        out.append(',');
                    }
                    append(out, a.elements().get(i));
                }
                out.append(']');
            }
            case Json.Str s -> appendString(out, s.value());
            case Json.Num n -> out.append(n.value().toString());
            case Json.Bool b -> out.append(b.value());
            case Json.Null ignored -> out.append("null");
        }
    }

    private static void appendString(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }
}
