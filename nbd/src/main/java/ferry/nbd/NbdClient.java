package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A small blocking NBD client for tests and tools: fixed newstyle, OPT_GO, optionally structured
 * replies with {@code base:allocation}, one request at a time. Not thread-safe: one thread uses it.
 * A request the server refuses throws {@link NbdException} of kind REFUSED with the NBD error.
 */
public final class NbdClient implements AutoCloseable {
    /** One base:allocation descriptor: {@code flags} is a mix of STATE_HOLE and STATE_ZERO. */
    public record StatusExtent(long length, int flags) {}

    private final SocketChannel channel;
    private final WireIn in;
    private final ByteBuffer out = ByteBuffer.allocateDirect(64 << 10);
    private final String export;
    private long size;
    private int transmissionFlags;
    private boolean structured;
    private int metaContextId = -1;
    private long nextCookie = 1;

    private NbdClient(SocketChannel channel, String export) {
        this.channel = channel;
        this.in = new WireIn(channel, 64 << 10);
        this.export = export;
    }

    public static NbdClient unix(Path socket, String export, boolean structured) throws NbdException {
        return connect(UnixDomainSocketAddress.of(socket), export, structured);
    }

    public static NbdClient tcp(String host, int port, String export, boolean structured) throws NbdException {
        return connect(new InetSocketAddress(host, port), export, structured);
    }

    public static NbdClient connect(SocketAddress address, String export, boolean structured) throws NbdException {
        SocketChannel channel = null;
        try {
            channel = address instanceof UnixDomainSocketAddress
                    ? SocketChannel.open(StandardProtocolFamily.UNIX) : SocketChannel.open();
            channel.connect(address);
            NbdClient client = new NbdClient(channel, export);
            client.handshake(structured);
            return client;
        } catch (IOException e) {
            if (channel != null) {
                try {
                    channel.close();
                } catch (IOException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e instanceof NbdException n ? n : new NbdException(NbdException.Kind.IO,
                    "nbd connect failed: address=" + address + " export=" + export + ": " + e.getMessage(), e);
        }
    }

    public long size() {
        return size;
    }

    public int transmissionFlags() {
        return transmissionFlags;
    }

    public boolean structured() {
        return structured;
    }

    /** True when base:allocation was negotiated and {@link #blockStatus} may be used. */
    public boolean canBlockStatus() {
        return metaContextId >= 0;
    }

    private void handshake(boolean wantStructured) throws IOException {
        ByteBuffer b = in.need(18);
        long magic = b.getLong();
        long opt = b.getLong();
        int flags = Short.toUnsignedInt(b.getShort());
        if (magic != NBDMAGIC || opt != IHAVEOPT || (flags & FLAG_FIXED_NEWSTYLE) == 0) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "not a fixed newstyle NBD server: magic=0x" + Long.toHexString(magic));
        }
        out.clear().putInt(FLAG_C_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES));
        send();
        if (wantStructured) {
            out.clear();
            encodeOptionHeader(out, OPT_STRUCTURED_REPLY, 0);
            send();
            structured = expectAck(OPT_STRUCTURED_REPLY, false);
        }
        if (structured) {
            byte[] name = export.getBytes(StandardCharsets.UTF_8);
            out.clear();
            encodeOptionHeader(out, OPT_SET_META_CONTEXT, 4 + name.length + 4 + stringLength(META_BASE_ALLOCATION));
            out.putInt(name.length).put(name).putInt(1);
            putString(out, META_BASE_ALLOCATION);
            send();
            while (true) {
                OptionReplyHeader r = optionReply(OPT_SET_META_CONTEXT);
                if (r.replyType() == REP_ACK) {
                    break;
                }
                ByteBuffer data = in.need((int) r.length());
                if (r.replyType() == REP_META_CONTEXT) {
                    metaContextId = data.getInt();
                    data.position(data.position() + (int) r.length() - 4);
                } else {
                    data.position(data.position() + (int) r.length());
                }
            }
        }
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        out.clear();
        encodeOptionHeader(out, OPT_GO, 4 + name.length + 2 + 2);
        out.putInt(name.length).put(name).putShort((short) 1).putShort((short) INFO_BLOCK_SIZE);
        send();
        while (true) {
            OptionReplyHeader r = optionReply(OPT_GO);
            if (r.replyType() == REP_ACK) {
                return;
            }
            if ((r.replyType() & REP_FLAG_ERROR) != 0) {
                String message = getBytes(in.need((int) r.length()), (int) r.length());
                throw new NbdException(NbdException.Kind.REFUSED, r.replyType(),
                        "nbd server refused GO: export=" + export + ": " + message, null);
            }
            ByteBuffer data = in.need((int) r.length());
            int end = data.position() + (int) r.length();
            if (r.replyType() == REP_INFO && data.getShort() == INFO_EXPORT) {
                size = data.getLong();
                transmissionFlags = Short.toUnsignedInt(data.getShort());
            }
            data.position(end);
        }
    }

    /** Reads the reply to a data-less option; true on ACK, false (or a throw) on an error reply. */
    private boolean expectAck(int option, boolean required) throws IOException {
        OptionReplyHeader r = optionReply(option);
        in.skip(r.length());
        if (r.replyType() == REP_ACK) {
            return true;
        }
        if (required) {
            throw new NbdException(NbdException.Kind.REFUSED, r.replyType(), "nbd server refused option: option=" + nameOfOption(option), null);
        }
        return false;
    }

    private OptionReplyHeader optionReply(int option) throws IOException {
        OptionReplyHeader r = decodeOptionReplyHeader(in.need(OPTION_REPLY_HEADER_LENGTH));
        if (r.magic() != REPLY_MAGIC || r.option() != option || r.length() > MAX_OPTION_LENGTH) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "bad option reply: option=" + nameOfOption(option)
                    + " magic=0x" + Long.toHexString(r.magic()) + " length=" + r.length());
        }
        return r;
    }

    /** Fills {@code dst} from position to limit with the export's bytes at {@code offset}. */
    public void read(long offset, ByteBuffer dst) throws NbdException {
        int length = dst.remaining();
        long cookie = request(0, CMD_READ, offset, length, null);
        try {
            if (!structured) {
                simpleReply(cookie, CMD_READ);
                in.readFully(dst);
                return;
            }
            int base = dst.position();
            int error = 0;
            boolean done = false;
            while (!done) {
                ChunkHeader c = chunk(cookie);
                done = (c.flags() & REPLY_FLAG_DONE) != 0;
                switch (c.type()) {
                    case REPLY_TYPE_NONE -> { }
                    case REPLY_TYPE_OFFSET_DATA -> {
                        long at = in.need(8).getLong() - offset;
                        int n = (int) (c.length() - 8);
                        checkInside(at, n, length);
                        in.readFully(dst.duplicate().position(base + (int) at).limit(base + (int) at + n));
                    }
                    case REPLY_TYPE_OFFSET_HOLE -> {
                        ByteBuffer b = in.need(12);
                        long at = b.getLong() - offset;
                        int n = b.getInt();
                        checkInside(at, n, length);
                        for (int i = 0; i < n; i++) {
                            dst.put(base + (int) at + i, (byte) 0);
                        }
                    }
                    default -> error = errorChunk(c);
                }
            }
            if (error != 0) {
                throw refused(CMD_READ, error);
            }
            dst.position(dst.limit());
        } catch (NbdException e) {
            throw e;
        } catch (IOException e) {
            throw new NbdException(NbdException.Kind.IO, "nbd read failed: offset=" + offset + ": " + e.getMessage(), e);
        }
    }

    public void write(long offset, ByteBuffer src, int flags) throws NbdException {
        long cookie = request(flags, CMD_WRITE, offset, src.remaining(), src);
        simpleReply(cookie, CMD_WRITE);
    }

    public void flush() throws NbdException {
        simpleReply(request(0, CMD_FLUSH, 0, 0, null), CMD_FLUSH);
    }

    public void trim(long offset, long length, int flags) throws NbdException {
        simpleReply(request(flags, CMD_TRIM, offset, length, null), CMD_TRIM);
    }

    public void writeZeroes(long offset, long length, int flags) throws NbdException {
        simpleReply(request(flags, CMD_WRITE_ZEROES, offset, length, null), CMD_WRITE_ZEROES);
    }

    /** The base:allocation descriptors of {@code [offset, offset + length)} (the server may stop early). */
    public List<StatusExtent> blockStatus(long offset, long length, int flags) throws NbdException {
        long cookie = request(flags, CMD_BLOCK_STATUS, offset, length, null);
        List<StatusExtent> extents = new ArrayList<>();
        int error = 0;
        try {
            ByteBuffer peek = in.need(4);
            if (peek.getInt(peek.position()) == SIMPLE_REPLY_MAGIC) {   // a refusal without structured replies
                simpleReply(cookie, CMD_BLOCK_STATUS);
                throw new NbdException(NbdException.Kind.PROTOCOL, "simple reply to BLOCK_STATUS without an error");
            }
            boolean done = false;
            while (!done) {
                ChunkHeader c = chunk(cookie);
                done = (c.flags() & REPLY_FLAG_DONE) != 0;
                if (c.type() == REPLY_TYPE_BLOCK_STATUS) {
                    in.need(4).getInt();
                    for (long i = 0; i < (c.length() - 4) / 8; i++) {
                        ByteBuffer b = in.need(8);
                        extents.add(new StatusExtent(Integer.toUnsignedLong(b.getInt()), b.getInt()));
                    }
                } else if (c.type() == REPLY_TYPE_NONE) {
                    in.skip(c.length());
                } else {
                    error = errorChunk(c);
                }
            }
        } catch (NbdException e) {
            throw e;
        } catch (IOException e) {
            throw new NbdException(NbdException.Kind.IO, "nbd block status failed: offset=" + offset + ": " + e.getMessage(), e);
        }
        if (error != 0) {
            throw refused(CMD_BLOCK_STATUS, error);
        }
        return extents;
    }

    private long request(int flags, int type, long offset, long length, ByteBuffer payload) throws NbdException {
        long cookie = nextCookie++;
        try {
            out.clear();
            encodeRequest(out, flags, type, cookie, offset, length);
            out.flip();
            if (payload == null) {
                while (out.hasRemaining()) {
                    channel.write(out);
                }
            } else {
                ByteBuffer[] both = {out, payload};
                while (out.hasRemaining() || payload.hasRemaining()) {
                    channel.write(both);
                }
            }
            return cookie;
        } catch (IOException e) {
            throw new NbdException(NbdException.Kind.IO, "nbd request failed: command=" + nameOfCommand(type)
                    + " offset=" + offset + " length=" + length + ": " + e.getMessage(), e);
        }
    }

    /** Reads the reply header of a command without reply data; throws on an error reply. */
    private void simpleReply(long cookie, int type) throws NbdException {
        try {
            ByteBuffer b = in.need(4);
            int magic = b.getInt(b.position());
            if (magic == STRUCTURED_REPLY_MAGIC) {
                int error = 0;
                boolean done = false;
                while (!done) {
                    ChunkHeader c = chunk(cookie);
                    done = (c.flags() & REPLY_FLAG_DONE) != 0;
                    error = c.type() == REPLY_TYPE_NONE ? error : errorChunk(c);
                }
                if (error != 0) {
                    throw refused(type, error);
                }
                return;
            }
            SimpleReply r = decodeSimpleReply(in.need(SIMPLE_REPLY_LENGTH));
            if (r.magic() != SIMPLE_REPLY_MAGIC || r.cookie() != cookie) {
                throw new NbdException(NbdException.Kind.PROTOCOL, "bad reply: magic=0x" + Integer.toHexString(r.magic())
                        + " cookie=" + r.cookie() + " expected=" + cookie);
            }
            if (r.error() != 0) {
                throw refused(type, r.error());
            }
        } catch (NbdException e) {
            throw e;
        } catch (IOException e) {
            throw new NbdException(NbdException.Kind.IO, "nbd reply failed: command=" + nameOfCommand(type) + ": " + e.getMessage(), e);
        }
    }

    private ChunkHeader chunk(long cookie) throws IOException {
        ChunkHeader c = decodeChunkHeader(in.need(STRUCTURED_HEADER_LENGTH));
        if (c.magic() != STRUCTURED_REPLY_MAGIC || c.cookie() != cookie) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "bad structured reply: magic=0x"
                    + Integer.toHexString(c.magic()) + " cookie=" + c.cookie() + " expected=" + cookie);
        }
        return c;
    }

    /** Consumes an error chunk and returns its NBD error. */
    private int errorChunk(ChunkHeader c) throws IOException {
        if ((c.type() & (1 << 15)) == 0 || c.length() < 6) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "unexpected chunk: type=" + c.type() + " length=" + c.length());
        }
        int error = in.need(4).getInt();
        in.skip(c.length() - 4);
        return error;
    }

    private static void checkInside(long at, long n, int length) throws NbdException {
        if (at < 0 || n < 0 || at + n > length) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "chunk outside the request: at=" + at + " length=" + n);
        }
    }

    private static NbdException refused(int type, int error) {
        return new NbdException(NbdException.Kind.REFUSED, error,
                "nbd " + nameOfCommand(type) + " refused: " + nameOfError(error), null);
    }

    private void send() throws IOException {
        out.flip();
        while (out.hasRemaining()) {
            channel.write(out);
        }
    }

    /** Sends DISC and closes the socket. */
    @Override
    public void close() throws NbdException {
        try (channel) {
            if (channel.isOpen()) {
                request(0, CMD_DISC, 0, 0, null);
            }
        } catch (IOException e) {
            throw new NbdException(NbdException.Kind.IO, "nbd close failed: export=" + export + ": " + e.getMessage(), e);
        }
    }
}
