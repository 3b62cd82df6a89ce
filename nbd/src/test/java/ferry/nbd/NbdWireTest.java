package ferry.nbd;

import static ferry.nbd.NbdWire.*;
import static org.junit.jupiter.api.Assertions.*;

import ferry.image.ImageException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.util.HexFormat;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class NbdWireTest {
    private static final HexFormat HEX = HexFormat.of();

    // READ request: magic 25609513, flags 0004 (DF), type 0000 (READ), cookie 0102030405060708,
    // offset 0000000000100000 (1 MiB), length 00010000 (64 KiB)
    private static final String READ_REQUEST = "25609513" + "0004" + "0000" + "0102030405060708" + "0000000000100000" + "00010000";
    // simple reply: magic 67446698, error 00000001 (EPERM), cookie 0000000000000007
    private static final String SIMPLE_REPLY = "67446698" + "00000001" + "0000000000000007";
    // structured chunk: magic 668e33ef, flags 0001 (DONE), type 0001 (OFFSET_DATA), cookie 09, length 00001008
    private static final String CHUNK = "668e33ef" + "0001" + "0001" + "0000000000000009" + "00001008";
    // option: IHAVEOPT 49484156454f5054, option 00000007 (GO), length 00000008
    private static final String OPTION = "49484156454f5054" + "00000007" + "00000008";
    // option reply: magic 0003e889045565a9, option 00000007, type 80000001 (ERR_UNSUP), length 00000000
    private static final String OPTION_REPLY = "0003e889045565a9" + "00000007" + "80000001" + "00000000";

    @Test
    void shouldDecodeAndEncodeRequestHeader() {
        RequestHeader h = decodeRequest(ByteBuffer.wrap(HEX.parseHex(READ_REQUEST)));
        assertEquals(new RequestHeader(REQUEST_MAGIC, CMD_FLAG_DF, CMD_READ, 0x0102030405060708L, 1 << 20, 65536), h);
        ByteBuffer b = ByteBuffer.allocate(REQUEST_LENGTH);
        encodeRequest(b, CMD_FLAG_DF, CMD_READ, 0x0102030405060708L, 1 << 20, 65536);
        assertEquals(READ_REQUEST, HEX.formatHex(b.array()));
    }

    @Test
    void shouldDecodeUnsignedRequestFields() {
        // flags ffff, type ffff, offset ffffffffffffffff, length ffffffff: all unsigned on the wire
        String hex = "25609513" + "ffff" + "ffff" + "0000000000000001" + "ffffffffffffffff" + "ffffffff";
        RequestHeader h = decodeRequest(ByteBuffer.wrap(HEX.parseHex(hex)));
        assertEquals(0xffff, h.flags());
        assertEquals(0xffff, h.type());
        assertEquals(-1L, h.offset());
        assertEquals(0xffffffffL, h.length());
    }

    @Test
    void shouldEncodeAndDecodeReplies() {
        ByteBuffer b = ByteBuffer.allocate(SIMPLE_REPLY_LENGTH);
        encodeSimpleReply(b, EPERM, 7);
        assertEquals(SIMPLE_REPLY, HEX.formatHex(b.array()));
        assertEquals(new SimpleReply(SIMPLE_REPLY_MAGIC, EPERM, 7), decodeSimpleReply(b.flip()));

        b = ByteBuffer.allocate(STRUCTURED_HEADER_LENGTH);
        encodeChunkHeader(b, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 9, 4096 + 8);
        assertEquals(CHUNK, HEX.formatHex(b.array()));
        assertEquals(new ChunkHeader(STRUCTURED_REPLY_MAGIC, 1, 1, 9, 4104), decodeChunkHeader(b.flip()));
    }

    @Test
    void shouldEncodeAndDecodeOptions() {
        ByteBuffer b = ByteBuffer.allocate(OPTION_HEADER_LENGTH);
        encodeOptionHeader(b, OPT_GO, 8);
        assertEquals(OPTION, HEX.formatHex(b.array()));
        assertEquals(new OptionHeader(IHAVEOPT, OPT_GO, 8), decodeOptionHeader(b.flip()));

        b = ByteBuffer.allocate(OPTION_REPLY_HEADER_LENGTH);
        encodeOptionReplyHeader(b, OPT_GO, REP_ERR_UNSUP, 0);
        assertEquals(OPTION_REPLY, HEX.formatHex(b.array()));
        assertEquals(new OptionReplyHeader(REPLY_MAGIC, OPT_GO, REP_ERR_UNSUP, 0), decodeOptionReplyHeader(b.flip()));
    }

    @Test
    void shouldReadStringsAndRefuseOverlongOnes() {
        // 00000003 "abc", then a length 00001001 (4097) that is over the spec's limit
        ByteBuffer b = ByteBuffer.wrap(HEX.parseHex("00000003616263" + "00001001"));
        assertEquals("abc", getString(b));
        assertNull(getString(b));
        assertNull(getString(ByteBuffer.wrap(HEX.parseHex("00000009" + "6162"))), "length past the buffer");
    }

    @Test
    void shouldMapEveryImageErrorKind() {
        assertEquals(ENOSPC, errorOf(ImageException.Kind.NO_SPACE));
        assertEquals(EPERM, errorOf(ImageException.Kind.READ_ONLY));
        assertEquals(EINVAL, errorOf(ImageException.Kind.OUT_OF_BOUNDS));
        assertEquals(ENOTSUP, errorOf(ImageException.Kind.UNSUPPORTED));
        assertEquals(EIO, errorOf(ImageException.Kind.IO));
        assertEquals(EIO, errorOf(ImageException.Kind.CORRUPT));
        assertEquals(EIO, errorOf(ImageException.Kind.INVALID_FORMAT));
    }

    @Test
    void shouldNameCommands() {
        assertEquals("WRITE_ZEROES", nameOfCommand(CMD_WRITE_ZEROES));
        assertEquals("BLOCK_STATUS", nameOfCommand(CMD_BLOCK_STATUS));
        assertEquals("UNKNOWN(99)", nameOfCommand(99));
        assertEquals("GO", nameOfOption(OPT_GO));
    }

    /** The same fixtures, arriving in pieces of 1, 5 and 7 bytes, decode the same through WireIn. */
    @ParameterizedTest
    @ValueSource(ints = {1, 5, 7, 4096})
    void shouldDecodeFixturesDeliveredInPieces(int piece) throws IOException {
        byte[] payload = new byte[4096];
        for (int i = 0; i < payload.length; i++) {
            payload[i] = (byte) (i * 31);
        }
        byte[] all = concat(HEX.parseHex(READ_REQUEST), HEX.parseHex(CHUNK), HEX.parseHex("0000000000100000"), payload,
                HEX.parseHex(OPTION), HEX.parseHex(SIMPLE_REPLY));
        WireIn in = new WireIn(new PiecesChannel(all, piece), 64);
        assertEquals(CMD_READ, decodeRequest(in.need(REQUEST_LENGTH)).type());
        ChunkHeader c = decodeChunkHeader(in.need(STRUCTURED_HEADER_LENGTH));
        assertEquals(4104, c.length());
        assertEquals(1 << 20, in.need(8).getLong());
        ByteBuffer data = ByteBuffer.allocateDirect(4096);
        in.readFully(data);
        for (int i = 0; i < payload.length; i++) {
            assertEquals(payload[i], data.get(i), "payload byte " + i);
        }
        assertEquals(OPT_GO, decodeOptionHeader(in.need(OPTION_HEADER_LENGTH)).option());
        assertEquals(EPERM, decodeSimpleReply(in.need(SIMPLE_REPLY_LENGTH)).error());
        assertNull(in.need(1, true), "end of stream at a message boundary");
    }

    @Test
    void shouldReportEndOfStreamInsideAMessage() {
        WireIn in = new WireIn(new PiecesChannel(HEX.parseHex("2560951300"), 1), 64);
        NbdException e = assertThrows(NbdException.class, () -> in.need(REQUEST_LENGTH, true));
        assertEquals(NbdException.Kind.CLOSED, e.kind());
    }

    @Test
    void shouldSkipWithoutAllocating() throws IOException {
        byte[] all = new byte[10_000 + 4];
        all[10_000 + 3] = 42;
        WireIn in = new WireIn(new PiecesChannel(all, 7), 64);
        in.skip(10_000);
        assertEquals(42, in.need(4).getInt());
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n);
        for (byte[] p : parts) {
            b.put(p);
        }
        return b.array();
    }

    /** A channel that hands out at most {@code piece} bytes per read. */
    static final class PiecesChannel implements ReadableByteChannel {
        private final ByteBuffer data;
        private final int piece;

        PiecesChannel(byte[] bytes, int piece) {
            this.data = ByteBuffer.wrap(bytes);
            this.piece = piece;
        }

        @Override
        public int read(ByteBuffer dst) {
            if (!data.hasRemaining()) {
                return -1;
            }
            int n = Math.min(piece, Math.min(dst.remaining(), data.remaining()));
            dst.put(data.slice(data.position(), n));
            data.position(data.position() + n);
            return n;
        }

        @Override public boolean isOpen() { return true; }
        @Override public void close() {}
    }
}
