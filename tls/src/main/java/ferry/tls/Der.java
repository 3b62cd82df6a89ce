package ferry.tls;

import java.math.BigInteger;

/**
 * Reads the few DER shapes {@link PemFiles} needs to turn PKCS#1 and SEC1 keys into JDK key specs:
 * tag, definite length (short or long form), contents. Reading only; Ferry never writes ASN.1.
 * A malformed input is an {@link IllegalArgumentException} naming the offset.
 *
 * <p>Not thread-safe: one reader per parse.
 */
final class Der {
    static final int INTEGER = 0x02, OCTET_STRING = 0x04, OBJECT_IDENTIFIER = 0x06, SEQUENCE = 0x30;
    /** {@code [0]} constructed, as in SEC1's {@code parameters [0] ECParameters}. */
    static final int CONTEXT_0 = 0xa0;

    /** One element: its tag and where its contents lie in the input. */
    record Element(int tag, byte[] input, int contentOffset, int contentLength) {
        byte[] contents() {
            return java.util.Arrays.copyOfRange(input, contentOffset, contentOffset + contentLength);
        }

        /** A reader over this element's contents (for SEQUENCE and context-tagged elements). */
        Der open() {
            return new Der(input, contentOffset, contentOffset + contentLength);
        }

        BigInteger integer() {
            expect(INTEGER);
            return new BigInteger(contents());
        }

        /** The dotted form of an OBJECT IDENTIFIER, e.g. {@code 1.2.840.10045.3.1.7}. */
        String oid() {
            expect(OBJECT_IDENTIFIER);
            StringBuilder out = new StringBuilder();
            long value = 0;
            boolean first = true;
            for (int i = contentOffset; i < contentOffset + contentLength; i++) {
                int b = input[i] & 0xff;
                value = (value << 7) | (b & 0x7f);
                if (value > Integer.MAX_VALUE) {
                    throw new IllegalArgumentException("object identifier arc too large at offset " + i);
                }
                if ((b & 0x80) == 0) {
                    if (first) {
                        out.append(value < 80 ? value / 40 : 2).append('.').append(value < 80 ? value % 40 : value - 80);
                        first = false;
                    } else {
                        out.append('.').append(value);
                    }
                    value = 0;
                }
            }
            return out.toString();
        }

        void expect(int wanted) {
            if (tag != wanted) {
                throw new IllegalArgumentException(String.format("expected DER tag 0x%02x, found 0x%02x at offset %d",
                        wanted, tag, contentOffset));
            }
        }
    }

    private final byte[] input;
    private final int end;
    private int at;

    Der(byte[] input) {
        this(input, 0, input.length);
    }

    private Der(byte[] input, int from, int to) {
        this.input = input;
        this.at = from;
        this.end = to;
    }

    boolean more() {
        return at < end;
    }

    Element next() {
        if (at + 2 > end) {
            throw new IllegalArgumentException("truncated DER element at offset " + at);
        }
        int tag = input[at++] & 0xff;
        if ((tag & 0x1f) == 0x1f) {
            throw new IllegalArgumentException("multi-byte DER tag at offset " + (at - 1));
        }
        int first = input[at++] & 0xff;
        long length;
        if (first < 0x80) {
            length = first;
        } else {
            int count = first & 0x7f;
            if (count == 0 || count > 4 || at + count > end) {
                throw new IllegalArgumentException("bad DER length at offset " + (at - 1));
            }
            length = 0;
            for (int i = 0; i < count; i++) {
                length = (length << 8) | (input[at++] & 0xff);
            }
        }
        if (length > end - at) {
            throw new IllegalArgumentException("DER element of " + length + " bytes overruns its container at offset " + at);
        }
        Element element = new Element(tag, input, at, (int) length);
        at += (int) length;
        return element;
    }

    /** The single element that must make up the whole input. */
    static Element only(byte[] input) {
        Der der = new Der(input);
        Element element = der.next();
        if (der.more()) {
            throw new IllegalArgumentException("trailing bytes after the DER element");
        }
        return element;
    }
}
