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
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A small blocking NBD client: fixed newstyle, OPT_GO, optionally structured replies with one or
 * several meta contexts ({@code base:allocation}, QEMU's {@code qemu:allocation-depth} and
 * {@code qemu:dirty-bitmap:NAME}), one request at a time. Not thread-safe: one thread uses it at a
 * time ({@link NbdExportImage} serializes its callers). A request the server refuses throws
 * {@link NbdException} of kind REFUSED with the NBD error; after any other NbdException the
 * connection is out of step and only {@link #close()} is left.
 */
public final class NbdClient implements AutoCloseable {
    /**
     * One block status descriptor: its length and the 32-bit value of its context (for
     * base:allocation a mix of STATE_HOLE and STATE_ZERO; for qemu:allocation-depth the depth; for a
     * dirty bitmap STATE_DIRTY).
     */
    public record StatusExtent(long length, int flags) {}

    /** Default maximum READ/WRITE length when the server sends no INFO_BLOCK_SIZE (the spec's 32 MiB). */
    public static final int DEFAULT_MAXIMUM_BLOCK_SIZE = 32 << 20;

    private final SocketChannel channel;
    private final WireIn in;
    private final ByteBuffer out = ByteBuffer.allocateDirect(64 << 10);
    private final String export;
    private long size;
    private int transmissionFlags;
    private boolean structured;
    private final Map<String, Integer> contextIds = new LinkedHashMap<>();   // negotiated, in the server's order
    private final Map<Integer, String> contextNames = new HashMap<>();
    private int minimumBlockSize = 1;
    private int preferredBlockSize = PREFERRED_BLOCK_SIZE;
    private int maximumBlockSize = DEFAULT_MAXIMUM_BLOCK_SIZE;
    private long nextCookie = 1;

    private NbdClient(SocketChannel channel, String export) {
        this.channel = channel;
        this.in = new WireIn(channel, 64 << 10);
        this.export = export;
    }

    /** Connects; with {@code structured}, negotiates structured replies and {@code base:allocation}. */
    public static NbdClient unix(Path socket, String export, boolean structured) throws NbdException {
        return connect(UnixDomainSocketAddress.of(socket), export, structured);
    }

    /**
     * Connects with structured replies and asks for every context in {@code metaContexts} in one
     * SET_META_CONTEXT; {@link #metaContexts()} says which the server accepted (it omits unknown ones).
     */
    public static NbdClient unix(Path socket, String export, List<String> metaContexts) throws NbdException {
        return connect(UnixDomainSocketAddress.of(socket), export, true, metaContexts);
    }

    public static NbdClient tcp(String host, int port, String export, boolean structured) throws NbdException {
        return connect(new InetSocketAddress(host, port), export, structured);
    }

    public static NbdClient connect(SocketAddress address, String export, boolean structured) throws NbdException {
        return connect(address, export, structured, List.of(META_BASE_ALLOCATION));
    }

    /** Connects; meta contexts are asked for only when {@code structured} (they need structured replies). */
    public static NbdClient connect(SocketAddress address, String export, boolean structured, List<String> metaContexts)
            throws NbdException {
        SocketChannel channel = null;
        try {
            channel = address instanceof UnixDomainSocketAddress
                    ? SocketChannel.open(StandardProtocolFamily.UNIX) : SocketChannel.open();
            channel.connect(address);
            NbdClient client = new NbdClient(channel, export);
            client.handshake(structured, List.copyOf(metaContexts));
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

    /** True when at least one meta context was negotiated and {@link #blockStatus} may be used. */
    public boolean canBlockStatus() {
        return !contextIds.isEmpty();
    }

    /** The meta contexts the server accepted, in the order it listed them. */
    public Set<String> metaContexts() {
        return Collections.unmodifiableSet(contextIds.keySet());
    }

    /** The server's INFO_BLOCK_SIZE minimum (1 when it sent none): requests should be aligned to it. */
    public int minimumBlockSize() {
        return minimumBlockSize;
    }

    public int preferredBlockSize() {
        return preferredBlockSize;
    }

    /** The longest READ or WRITE the server takes ({@value #DEFAULT_MAXIMUM_BLOCK_SIZE} when it sent none). */
    public int maximumBlockSize() {
        return maximumBlockSize;
    }

    private void handshake(boolean wantStructured, List<String> wantContexts) throws IOException {
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
        if (structured && !wantContexts.isEmpty()) {
            setMetaContexts(wantContexts);
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
            if (r.replyType() == REP_INFO && r.length() >= 2) {
                int info = data.getShort();
                if (info == INFO_EXPORT && r.length() >= 12) {
                    size = data.getLong();
                    transmissionFlags = Short.toUnsignedInt(data.getShort());
                } else if (info == INFO_BLOCK_SIZE && r.length() >= 14) {
                    blockSizes(data.getInt(), data.getInt(), data.getInt());
                }
            }
            data.position(end);
        }
    }

    /**
     * One SET_META_CONTEXT with every name; the server answers REP_META_CONTEXT (id u32, name) for
     * each it accepts, then ACK. An error reply (a server without meta contexts) leaves none.
     */
    private void setMetaContexts(List<String> names) throws IOException {
        out.clear();
        encodeMetaContextOption(out, OPT_SET_META_CONTEXT, export, names);
        send();
        while (true) {
            OptionReplyHeader r = optionReply(OPT_SET_META_CONTEXT);
            if (r.replyType() == REP_ACK || (r.replyType() & REP_FLAG_ERROR) != 0) {
                in.skip(r.length());
                return;
            }
            ByteBuffer data = in.need((int) r.length());
            int end = data.position() + (int) r.length();
            if (r.replyType() == REP_META_CONTEXT) {
                if (r.length() < 4) {
                    throw new NbdException(NbdException.Kind.PROTOCOL, "bad meta context reply: length=" + r.length());
                }
                int id = data.getInt();
                String name = getBytes(data, (int) r.length() - 4);
                contextIds.put(name, id);
                contextNames.put(id, name);
            }
            data.position(end);
        }
    }

    private void blockSizes(int minimum, int preferred, int maximum) throws NbdException {
        if (minimum <= 0 || preferred < minimum || maximum < preferred) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "bad block sizes: minimum=" + minimum
                    + " preferred=" + preferred + " maximum=" + maximum);
        }
        minimumBlockSize = minimum;
        preferredBlockSize = preferred;
        maximumBlockSize = maximum;
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
                ChunkHeader c = chunk(in, cookie);
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
                    default -> error = errorChunk(in, c);
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

    /**
     * The base:allocation descriptors of {@code [offset, offset + length)} (the server may stop
     * early); empty when base:allocation was not negotiated but another context was.
     */
    public List<StatusExtent> blockStatus(long offset, long length, int flags) throws NbdException {
        return blockStatusAll(offset, length, flags).getOrDefault(META_BASE_ALLOCATION, List.of());
    }

    /**
     * The descriptors of one negotiated context for {@code [offset, offset + length)}. The server may
     * describe less than asked (callers loop from the end of what came back), never more than asked
     * is returned. Every negotiated context is still sent by the server (the protocol has no way to
     * ask for one), so a connection should negotiate only the contexts it reads.
     */
    public List<StatusExtent> blockStatus(String context, long offset, long length, int flags) throws NbdException {
        if (!contextIds.containsKey(context)) {
            throw new IllegalArgumentException("meta context not negotiated: context=" + context + " negotiated=" + contextIds.keySet());
        }
        return blockStatusAll(offset, length, flags).get(context);
    }

    /**
     * One BLOCK_STATUS request: the descriptors of every negotiated context, by context name. Each
     * list is cut to {@code length} (a descriptor running past it is shortened).
     */
    public Map<String, List<StatusExtent>> blockStatusAll(long offset, long length, int flags) throws NbdException {
        long cookie = request(flags, CMD_BLOCK_STATUS, offset, length, null);
        try {
            Map<String, List<StatusExtent>> all = readBlockStatus(in, cookie, contextNames);
            for (String name : contextIds.keySet()) {
                List<StatusExtent> extents = all.get(name);
                if (extents == null) {
                    throw new NbdException(NbdException.Kind.PROTOCOL, "block status reply lacks a context: context=" + name
                            + " offset=" + offset + " length=" + length);
                }
                all.put(name, clip(extents, length));
            }
            return all;
        } catch (NbdException e) {
            throw e;
        } catch (IOException e) {
            throw new NbdException(NbdException.Kind.IO, "nbd block status failed: offset=" + offset + ": " + e.getMessage(), e);
        }
    }

    /**
     * Decodes the reply to BLOCK_STATUS {@code cookie}: one BLOCK_STATUS chunk per context, any
     * number of NONE and error chunks, up to the chunk flagged DONE. An error chunk throws REFUSED
     * after the whole reply has been read, so the connection stays usable.
     * <pre>
     *  chunk payload: | context id u32 | length u32 | flags u32 | length u32 | flags u32 | ...
     *                 0                4            8            12
     * </pre>
     */
    static Map<String, List<StatusExtent>> readBlockStatus(WireIn in, long cookie, Map<Integer, String> contexts)
            throws IOException {
        ByteBuffer peek = in.need(4);
        if (peek.getInt(peek.position()) == SIMPLE_REPLY_MAGIC) {   // a refusal without structured replies
            simpleReply(in, cookie, CMD_BLOCK_STATUS);
            throw new NbdException(NbdException.Kind.PROTOCOL, "simple reply to BLOCK_STATUS without an error");
        }
        Map<String, List<StatusExtent>> all = new LinkedHashMap<>();
        int error = 0;
        boolean done = false;
        while (!done) {
            ChunkHeader c = chunk(in, cookie);
            done = (c.flags() & REPLY_FLAG_DONE) != 0;
            if (c.type() == REPLY_TYPE_BLOCK_STATUS) {
                long descriptors = (c.length() - BLOCK_STATUS_ID_LENGTH) / BLOCK_DESCRIPTOR_LENGTH;
                if (descriptors < 1 || c.length() != BLOCK_STATUS_ID_LENGTH + descriptors * BLOCK_DESCRIPTOR_LENGTH) {
                    throw new NbdException(NbdException.Kind.PROTOCOL, "bad block status chunk: length=" + c.length());
                }
                int id = in.need(BLOCK_STATUS_ID_LENGTH).getInt();
                String name = contexts.get(id);
                if (name == null) {
                    throw new NbdException(NbdException.Kind.PROTOCOL, "block status for an unknown context: id=" + id);
                }
                List<StatusExtent> extents = all.computeIfAbsent(name, k -> new ArrayList<>());
                for (long i = 0; i < descriptors; i++) {
                    ByteBuffer b = in.need(BLOCK_DESCRIPTOR_LENGTH);
                    long length = Integer.toUnsignedLong(b.getInt());
                    int flags = b.getInt();
                    if (length == 0) {
                        throw new NbdException(NbdException.Kind.PROTOCOL, "block status descriptor of length 0: context=" + name);
                    }
                    extents.add(new StatusExtent(length, flags));
                }
            } else if (c.type() == REPLY_TYPE_NONE) {
                in.skip(c.length());
            } else {
                error = errorChunk(in, c);
            }
        }
        if (error != 0) {
            throw refused(CMD_BLOCK_STATUS, error);
        }
        return all;
    }

    /** The descriptors covering at most {@code length} bytes (the spec forbids more; tolerate it). */
    private static List<StatusExtent> clip(List<StatusExtent> extents, long length) {
        List<StatusExtent> out = new ArrayList<>(extents.size());
        long left = length;
        for (StatusExtent e : extents) {
            if (left <= 0) {
                break;
            }
            out.add(e.length() <= left ? e : new StatusExtent(left, e.flags()));
            left -= e.length();
        }
        return out;
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
        simpleReply(in, cookie, type);
    }

    private static void simpleReply(WireIn in, long cookie, int type) throws NbdException {
        try {
            ByteBuffer b = in.need(4);
            int magic = b.getInt(b.position());
            if (magic == STRUCTURED_REPLY_MAGIC) {
                int error = 0;
                boolean done = false;
                while (!done) {
                    ChunkHeader c = chunk(in, cookie);
                    done = (c.flags() & REPLY_FLAG_DONE) != 0;
                    error = c.type() == REPLY_TYPE_NONE ? error : errorChunk(in, c);
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

    private static ChunkHeader chunk(WireIn in, long cookie) throws IOException {
        ChunkHeader c = decodeChunkHeader(in.need(STRUCTURED_HEADER_LENGTH));
        if (c.magic() != STRUCTURED_REPLY_MAGIC || c.cookie() != cookie) {
            throw new NbdException(NbdException.Kind.PROTOCOL, "bad structured reply: magic=0x"
                    + Integer.toHexString(c.magic()) + " cookie=" + c.cookie() + " expected=" + cookie);
        }
        return c;
    }

    /** Consumes an error chunk and returns its NBD error. */
    private static int errorChunk(WireIn in, ChunkHeader c) throws IOException {
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
