package ferry.nbd.tls;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The few DER (ITU-T X.690) pieces that turning PKCS#1 and SEC1 private keys into PKCS#8 needs:
 * reading tag-length-value elements and writing a SEQUENCE of them. Not a general ASN.1 library:
 * only definite lengths (DER has no others), only single-byte tags. Stateless; any thread.
 * <pre>
 *  | tag u8 | length: 0..127 in one byte, or 0x80|n then n big-endian bytes | content (length bytes) |
 * </pre>
 */
final class Der {
    static final int INTEGER = 0x02;
    static final int BIT_STRING = 0x03;
    static final int OCTET_STRING = 0x04;
    static final int NULL = 0x05;
    static final int OID = 0x06;
    static final int SEQUENCE = 0x30;
    /** [0] EXPLICIT, constructed: SEC1's parameters field. */
    static final int CONTEXT_0 = 0xa0;

    // Object identifiers, DER content bytes (without tag and length).
    static final byte[] OID_RSA_ENCRYPTION = {0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01, 0x01};   // 1.2.840.113549.1.1.1
    static final byte[] OID_RSASSA_PSS = {0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01, 0x0a};      // 1.2.840.113549.1.1.10
    static final byte[] OID_EC_PUBLIC_KEY = {0x2a, (byte) 0x86, 0x48, (byte) 0xce, 0x3d, 0x02, 0x01};                        // 1.2.840.10045.2.1
    static final byte[] OID_ED25519 = {0x2b, 0x65, 0x70};                                                                   // 1.3.101.112
    static final byte[] OID_ED448 = {0x2b, 0x65, 0x71};                                                                     // 1.3.101.113

    /** One element: its tag and its content bytes. */
    record Element(int tag, byte[] content) {
        /** The elements inside a constructed element (a SEQUENCE, a [0]). */
        List<Element> children() throws MalformedException {
            return Der.readAll(content);
        }

        boolean is(int expectedTag) {
            return tag == expectedTag;
        }
    }

    /** Bytes that are not the DER a caller expected. */
    static final class MalformedException extends Exception {
        MalformedException(String message) {
            super(message);
        }
    }

    private Der() {}

    /** Exactly one element spanning all of {@code der}. */
    static Element readOne(byte[] der) throws MalformedException {
        List<Element> all = readAll(der);
        if (all.size() != 1) {
            throw new MalformedException("expected one DER element, found " + all.size());
        }
        return all.getFirst();
    }

    /** The consecutive elements that fill {@code der} exactly. */
    static List<Element> readAll(byte[] der) throws MalformedException {
        List<Element> out = new ArrayList<>();
        int at = 0;
        while (at < der.length) {
            if (der.length - at < 2) {
                throw new MalformedException("truncated DER header at offset " + at);
            }
            int tag = der[at++] & 0xff;
            if ((tag & 0x1f) == 0x1f) {
                throw new MalformedException("multi-byte DER tag at offset " + (at - 1));
            }
            int first = der[at++] & 0xff;
            long length;
            if (first < 0x80) {
                length = first;
            } else {
                int n = first & 0x7f;
                if (n == 0 || n > 4 || der.length - at < n) {
                    throw new MalformedException("bad DER length at offset " + (at - 1));
                }
                length = 0;
                for (int i = 0; i < n; i++) {
                    length = (length << 8) | (der[at++] & 0xff);
                }
            }
            if (length > der.length - at) {
                throw new MalformedException("DER element runs past its container: length=" + length + " left=" + (der.length - at));
            }
            out.add(new Element(tag, Arrays.copyOfRange(der, at, at + (int) length)));
            at += (int) length;
        }
        return out;
    }

    /** Tag, length and content: one encoded element. */
    static byte[] encode(int tag, byte[]... contents) {
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        for (byte[] c : contents) {
            body.writeBytes(c);
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(tag);
        int length = body.size();
        if (length < 0x80) {
            out.write(length);
        } else {
            int n = (32 - Integer.numberOfLeadingZeros(length) + 7) / 8;
            out.write(0x80 | n);
            for (int i = n - 1; i >= 0; i--) {
                out.write(length >>> (8 * i));
            }
        }
        out.writeBytes(body.toByteArray());
        return out.toByteArray();
    }

    /** An element re-encoded whole (tag, length, content). */
    static byte[] encode(Element e) {
        return encode(e.tag(), e.content());
    }

    /** Dotted form of an OID's content bytes, for messages: {@code 1.2.840.10045.2.1}. */
    static String dotted(byte[] oid) {
        if (oid.length == 0) {
            return "(empty)";
        }
        StringBuilder b = new StringBuilder();
        int first = oid[0] & 0xff;
        b.append(Math.min(first / 40, 2)).append('.').append(first - 40 * Math.min(first / 40, 2));
        long value = 0;
        for (int i = 1; i < oid.length; i++) {
            value = (value << 7) | (oid[i] & 0x7f);
            if ((oid[i] & 0x80) == 0) {
                b.append('.').append(value);
                value = 0;
            }
        }
        return b.toString();
    }
}
