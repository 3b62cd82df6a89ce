package ferry.qmp;

import java.math.BigDecimal;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * A JSON value, as QMP speaks it (RFC 8259). Decoding: {@link JsonDecoder}; encoding: {@link #toString()}.
 * Values are immutable; objects keep their member order.
 */
public sealed interface Json {

    record Obj(Map<String, Json> members) implements Json {
        public Obj {
            members = Collections.unmodifiableMap(new LinkedHashMap<>(members));
        }

        public static Obj of() {
            return new Obj(Map.of());
        }

        public Optional<Json> member(String name) {
            return Optional.ofNullable(members.get(name));
        }

        public boolean has(String name) {
            return members.containsKey(name);
        }

        /** The member, which must be present: otherwise a {@link JsonException} naming it. */
        public Json require(String name) throws JsonException {
            Json value = members.get(name);
            if (value == null) {
                throw new JsonException("missing member: name=" + name + " in " + this);
            }
            return value;
        }

        public String string(String name) throws JsonException {
            return require(name).asString();
        }

        public long number(String name) throws JsonException {
            return require(name).asLong();
        }

        public boolean bool(String name) throws JsonException {
            return require(name).asBool();
        }

        public Obj object(String name) throws JsonException {
            return require(name).asObject();
        }

        public List<Json> array(String name) throws JsonException {
            return require(name).asArray();
        }

        /** The member as a long, or empty when absent; a {@link JsonException} when present but not an integer. */
        public OptionalLong optionalNumber(String name) throws JsonException {
            Json value = members.get(name);
            return value == null ? OptionalLong.empty() : OptionalLong.of(value.asLong());
        }

        /** The member as a string, or empty when absent; a {@link JsonException} when present but not a string. */
        public Optional<String> optionalString(String name) throws JsonException {
            Json value = members.get(name);
            return value == null ? Optional.empty() : Optional.of(value.asString());
        }

        @Override public String toString() {
            return JsonEncoder.encode(this);
        }
    }

    record Arr(List<Json> elements) implements Json {
        public Arr {
            elements = List.copyOf(elements);
        }

        @Override public String toString() {
            return JsonEncoder.encode(this);
        }
    }

    record Str(String value) implements Json {
        public Str {
            Objects.requireNonNull(value, "value");
        }

        @Override public String toString() {
            return JsonEncoder.encode(this);
        }
    }

    /** A number, kept exactly as decoded. */
    record Num(BigDecimal value) implements Json {
        public Num {
            Objects.requireNonNull(value, "value");
        }

        public static Num of(long value) {
            return new Num(BigDecimal.valueOf(value));
        }

        @Override public String toString() {
            return JsonEncoder.encode(this);
        }
    }

    record Bool(boolean value) implements Json {
        @Override public String toString() {
            return JsonEncoder.encode(this);
        }
    }

    record Null() implements Json {
        @Override public String toString() {
            return "null";
        }
    }

    static Str of(String value) {
        return new Str(value);
    }

    static Num of(long value) {
        return Num.of(value);
    }

    static Bool of(boolean value) {
        return new Bool(value);
    }

    default Obj asObject() throws JsonException {
        if (this instanceof Obj o) {
            return o;
        }
        throw mismatch("object");
    }

    default List<Json> asArray() throws JsonException {
        if (this instanceof Arr a) {
            return a.elements();
        }
        throw mismatch("array");
    }

    default String asString() throws JsonException {
        if (this instanceof Str s) {
            return s.value();
        }
        throw mismatch("string");
    }

    default boolean asBool() throws JsonException {
        if (this instanceof Bool b) {
            return b.value();
        }
        throw mismatch("boolean");
    }

    /** The number as a long; a {@link JsonException} when it is not an integer in range. */
    default long asLong() throws JsonException {
        if (this instanceof Num n) {
            try {
                return n.value().longValueExact();
            } catch (ArithmeticException e) {
                throw new JsonException("not a 64-bit integer: value=" + n.value());
            }
        }
        throw mismatch("number");
    }

    private JsonException mismatch(String expected) {
        return new JsonException("expected " + expected + ": got " + this);
    }
}
