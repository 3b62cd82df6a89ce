package ferry.nbd;

import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The NBD wire format in one place (our {@code nbd-protocol.h}): magics, options, replies, commands,
 * flags and errors, with the spec's names minus the {@code NBD_} prefix, plus the codecs of the fixed
 * headers. All integers are big-endian. Which parts of the spec Ferry implements: docs/nbd-protocol.md.
 * <pre>
 *  handshake, server:  | NBDMAGIC u64 | IHAVEOPT u64 | handshake flags u16 |
 *  option, client:     | IHAVEOPT u64 | option u32 | length u32 | data ... |
 *  option reply:       | REPLY_MAGIC u64 | option u32 | reply type u32 | length u32 | data ... |
 *  request (28 bytes): | REQUEST_MAGIC u32 | flags u16 | type u16 | cookie u64 | offset u64 | length u32 |
 *                      0                   4          6          8            16           24           28
 *  simple reply (16):  | SIMPLE_REPLY_MAGIC u32 | error u32 | cookie u64 |
 *  structured (20):    | STRUCTURED_REPLY_MAGIC u32 | flags u16 | type u16 | cookie u64 | length u32 |
 * </pre>
 * Stateless; any thread.
 */
public final class NbdWire {
    private NbdWire() {}

    // Handshake magics.
    public static final long NBDMAGIC = 0x4e42444d41474943L;          // "NBDMAGIC"
    public static final long IHAVEOPT = 0x49484156454F5054L;          // "IHAVEOPT"
    public static final long OLDSTYLE_MAGIC = 0x00420281861253L;      // the oldstyle handshake, never sent by Ferry
    public static final long REPLY_MAGIC = 0x3e889045565a9L;          // option replies
    public static final int REQUEST_MAGIC = 0x25609513;
    public static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    public static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;

    // Handshake flags (server, u16) and client flags (u32).
    public static final int FLAG_FIXED_NEWSTYLE = 1;
    public static final int FLAG_NO_ZEROES = 1 << 1;
    public static final int FLAG_C_FIXED_NEWSTYLE = 1;
    public static final int FLAG_C_NO_ZEROES = 1 << 1;

    // Options.
    public static final int OPT_EXPORT_NAME = 1;
    public static final int OPT_ABORT = 2;
    public static final int OPT_LIST = 3;
    public static final int OPT_PEEK_EXPORT = 4;
    public static final int OPT_STARTTLS = 5;
    public static final int OPT_INFO = 6;
    public static final int OPT_GO = 7;
    public static final int OPT_STRUCTURED_REPLY = 8;
    public static final int OPT_LIST_META_CONTEXT = 9;
    public static final int OPT_SET_META_CONTEXT = 10;
    public static final int OPT_EXTENDED_HEADERS = 11;

    // Option reply types.
    public static final int REP_ACK = 1;
    public static final int REP_SERVER = 2;
    public static final int REP_INFO = 3;
    public static final int REP_META_CONTEXT = 4;
    public static final int REP_FLAG_ERROR = 1 << 31;
    public static final int REP_ERR_UNSUP = REP_FLAG_ERROR | 1;
    public static final int REP_ERR_POLICY = REP_FLAG_ERROR | 2;
    public static final int REP_ERR_INVALID = REP_FLAG_ERROR | 3;
    public static final int REP_ERR_PLATFORM = REP_FLAG_ERROR | 4;
    public static final int REP_ERR_TLS_REQD = REP_FLAG_ERROR | 5;
    public static final int REP_ERR_UNKNOWN = REP_FLAG_ERROR | 6;
    public static final int REP_ERR_SHUTDOWN = REP_FLAG_ERROR | 7;
    public static final int REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR | 8;
    public static final int REP_ERR_TOO_BIG = REP_FLAG_ERROR | 9;

    // NBD_REP_INFO types.
    public static final int INFO_EXPORT = 0;
    public static final int INFO_NAME = 1;
    public static final int INFO_DESCRIPTION = 2;
    public static final int INFO_BLOCK_SIZE = 3;

    // Transmission flags (u16).
    public static final int FLAG_HAS_FLAGS = 1;
    public static final int FLAG_READ_ONLY = 1 << 1;
    public static final int FLAG_SEND_FLUSH = 1 << 2;
    public static final int FLAG_SEND_FUA = 1 << 3;
    public static final int FLAG_ROTATIONAL = 1 << 4;
    public static final int FLAG_SEND_TRIM = 1 << 5;
    public static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public static final int FLAG_SEND_DF = 1 << 7;
    public static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    public static final int FLAG_SEND_RESIZE = 1 << 9;
    public static final int FLAG_SEND_CACHE = 1 << 10;
    public static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    // Commands.
    public static final int CMD_READ = 0;
    public static final int CMD_WRITE = 1;
    public static final int CMD_DISC = 2;
    public static final int CMD_FLUSH = 3;
    public static final int CMD_TRIM = 4;
    public static final int CMD_CACHE = 5;
    public static final int CMD_WRITE_ZEROES = 6;
    public static final int CMD_BLOCK_STATUS = 7;
    public static final int CMD_RESIZE = 8;

    // Command flags (u16).
    public static final int CMD_FLAG_FUA = 1;
    public static final int CMD_FLAG_NO_HOLE = 1 << 1;
    public static final int CMD_FLAG_DF = 1 << 2;
    public static final int CMD_FLAG_REQ_ONE = 1 << 3;
    public static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    // Structured reply flags and chunk types.
    public static final int REPLY_FLAG_DONE = 1;
    public static final int REPLY_TYPE_NONE = 0;
    public static final int REPLY_TYPE_OFFSET_DATA = 1;
    public static final int REPLY_TYPE_OFFSET_HOLE = 2;
    public static final int REPLY_TYPE_BLOCK_STATUS = 5;
    public static final int REPLY_TYPE_ERROR = (1 << 15) + 1;
    public static final int REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

    // base:allocation extent flags.
    public static final int STATE_HOLE = 1;
    public static final int STATE_ZERO = 1 << 1;
    public static final String META_BASE_ALLOCATION = "base:allocation";

    // QEMU's meta contexts (QEMU docs/interop/nbd.txt). qemu:allocation-depth: the descriptor's value is
    // the depth of the layer that allocates the range: 0 unallocated anywhere, 1 this layer, N >= 2 the
    // N-th layer of the backing chain. qemu:dirty-bitmap:NAME: STATE_DIRTY set where the bitmap is dirty.
    public static final String META_QEMU_ALLOCATION_DEPTH = "qemu:allocation-depth";
    public static final String META_QEMU_DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:";
    public static final int DEPTH_UNALLOCATED = 0;
    public static final int DEPTH_LOCAL = 1;
    public static final int STATE_DIRTY = 1;

    // Errors (the spec's errno values, not the host's).
    public static final int OK = 0;
    public static final int EPERM = 1;
    public static final int EIO = 5;
    public static final int ENOMEM = 12;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int EOVERFLOW = 75;
    public static final int ENOTSUP = 95;
    public static final int ESHUTDOWN = 108;

    // Sizes.
    public static final int REQUEST_LENGTH = 28;
    public static final int SIMPLE_REPLY_LENGTH = 16;
    public static final int STRUCTURED_HEADER_LENGTH = 20;
    /** A BLOCK_STATUS chunk's payload: context id u32, then descriptors of length u32 and status flags u32. */
    public static final int BLOCK_STATUS_ID_LENGTH = 4;
    public static final int BLOCK_DESCRIPTOR_LENGTH = 8;
    public static final int OPTION_HEADER_LENGTH = 16;
    public static final int OPTION_REPLY_HEADER_LENGTH = 20;
    /** Largest READ/WRITE payload Ferry serves (advertised as the maximum block size). */
    public static final int MAX_PAYLOAD_LENGTH = 32 << 20;
    /** Largest option payload Ferry reads; longer ones are drained and refused with REP_ERR_TOO_BIG. */
    public static final int MAX_OPTION_LENGTH = 64 << 10;
    /** The spec's limit for strings (export names, context names). */
    public static final int MAX_STRING_LENGTH = 4096;
    public static final int PREFERRED_BLOCK_SIZE = 4096;

    /** The NBD error for an image failure: the one mapping, like nbdkit's {@code nbd_errno}. */
    public static int errorOf(ImageException.Kind kind) {
        return switch (kind) {
            case IO, CORRUPT, INVALID_FORMAT, IN_USE -> EIO;
            case NO_SPACE -> ENOSPC;
            case READ_ONLY -> EPERM;
            case OUT_OF_BOUNDS -> EINVAL;
            case UNSUPPORTED -> ENOTSUP;
        };
    }

    /** The image failure for an NBD error a server answered: the inverse of {@link #errorOf}. */
    public static ImageException.Kind kindOf(int error) {
        return switch (error) {
            case ENOSPC -> ImageException.Kind.NO_SPACE;
            case EPERM -> ImageException.Kind.READ_ONLY;
            case EINVAL, EOVERFLOW -> ImageException.Kind.OUT_OF_BOUNDS;
            case ENOTSUP -> ImageException.Kind.UNSUPPORTED;
            default -> ImageException.Kind.IO;
        };
    }

    /** The context name of QEMU's dirty bitmap {@code bitmap}: {@code qemu:dirty-bitmap:NAME}. */
    public static String dirtyBitmapContext(String bitmap) {
        return META_QEMU_DIRTY_BITMAP_PREFIX + bitmap;
    }

    public static String nameOfCommand(int type) {
        return switch (type) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_DISC -> "DISC";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_CACHE -> "CACHE";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            case CMD_BLOCK_STATUS -> "BLOCK_STATUS";
            case CMD_RESIZE -> "RESIZE";
            default -> "UNKNOWN(" + type + ")";
        };
    }

    public static String nameOfOption(int option) {
        return switch (option) {
            case OPT_EXPORT_NAME -> "EXPORT_NAME";
            case OPT_ABORT -> "ABORT";
            case OPT_LIST -> "LIST";
            case OPT_PEEK_EXPORT -> "PEEK_EXPORT";
            case OPT_STARTTLS -> "STARTTLS";
            case OPT_INFO -> "INFO";
            case OPT_GO -> "GO";
            case OPT_STRUCTURED_REPLY -> "STRUCTURED_REPLY";
            case OPT_LIST_META_CONTEXT -> "LIST_META_CONTEXT";
            case OPT_SET_META_CONTEXT -> "SET_META_CONTEXT";
            case OPT_EXTENDED_HEADERS -> "EXTENDED_HEADERS";
            default -> "UNKNOWN(" + option + ")";
        };
    }

    public static String nameOfError(int error) {
        return switch (error) {
            case OK -> "OK";
            case EPERM -> "EPERM";
            case EIO -> "EIO";
            case ENOMEM -> "ENOMEM";
            case EINVAL -> "EINVAL";
            case ENOSPC -> "ENOSPC";
            case EOVERFLOW -> "EOVERFLOW";
            case ENOTSUP -> "ENOTSUP";
            case ESHUTDOWN -> "ESHUTDOWN";
            default -> "error(" + error + ")";
        };
    }

    /** A request header as it came off the wire, before validation. */
    public record RequestHeader(int magic, int flags, int type, long cookie, long offset, long length) {}

    /** A simple reply header. */
    public record SimpleReply(int magic, int error, long cookie) {}

    /** A structured reply chunk header. */
    public record ChunkHeader(int magic, int flags, int type, long cookie, long length) {}

    /** An option header from the client. */
    public record OptionHeader(long magic, int option, long length) {}

    /** An option reply header from the server. */
    public record OptionReplyHeader(long magic, int option, int replyType, long length) {}

    /** Decodes 28 bytes at {@code src}'s position and advances it. */
    public static RequestHeader decodeRequest(ByteBuffer src) {
        int magic = src.getInt();
        int flags = Short.toUnsignedInt(src.getShort());
        int type = Short.toUnsignedInt(src.getShort());
        long cookie = src.getLong();
        long offset = src.getLong();
        long length = Integer.toUnsignedLong(src.getInt());
        return new RequestHeader(magic, flags, type, cookie, offset, length);
    }

    public static void encodeRequest(ByteBuffer dst, int flags, int type, long cookie, long offset, long length) {
        dst.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) type)
                .putLong(cookie).putLong(offset).putInt((int) length);
    }

    public static void encodeSimpleReply(ByteBuffer dst, int error, long cookie) {
        dst.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie);
    }

    /** Decodes the 16 bytes of a simple reply, or the first 16 of a structured chunk (see {@link #decodeChunkRest}). */
    public static SimpleReply decodeSimpleReply(ByteBuffer src) {
        return new SimpleReply(src.getInt(), src.getInt(), src.getLong());
    }

    public static void encodeChunkHeader(ByteBuffer dst, int flags, int type, long cookie, long length) {
        dst.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) flags).putShort((short) type)
                .putLong(cookie).putInt((int) length);
    }

    public static ChunkHeader decodeChunkHeader(ByteBuffer src) {
        int magic = src.getInt();
        int flags = Short.toUnsignedInt(src.getShort());
        int type = Short.toUnsignedInt(src.getShort());
        long cookie = src.getLong();
        long length = Integer.toUnsignedLong(src.getInt());
        return new ChunkHeader(magic, flags, type, cookie, length);
    }

    public static void encodeOptionHeader(ByteBuffer dst, int option, int length) {
        dst.putLong(IHAVEOPT).putInt(option).putInt(length);
    }

    public static OptionHeader decodeOptionHeader(ByteBuffer src) {
        return new OptionHeader(src.getLong(), src.getInt(), Integer.toUnsignedLong(src.getInt()));
    }

    public static void encodeOptionReplyHeader(ByteBuffer dst, int option, int replyType, int length) {
        dst.putLong(REPLY_MAGIC).putInt(option).putInt(replyType).putInt(length);
    }

    public static OptionReplyHeader decodeOptionReplyHeader(ByteBuffer src) {
        return new OptionReplyHeader(src.getLong(), src.getInt(), src.getInt(), Integer.toUnsignedLong(src.getInt()));
    }

    /**
     * Encodes a whole LIST_META_CONTEXT or SET_META_CONTEXT option, header included:
     * <pre>
     *  | IHAVEOPT u64 | option u32 | length u32 | export name length u32 | name | query count u32 |
     *  then per query: | query length u32 | query (UTF-8) |
     * </pre>
     * Throws IllegalArgumentException when it would not fit {@code dst} or the option limit.
     */
    public static void encodeMetaContextOption(ByteBuffer dst, int option, String export, List<String> queries) {
        long length = stringLength(export) + 4L;
        for (String q : queries) {
            length += stringLength(q);
        }
        if (length > MAX_OPTION_LENGTH || length + OPTION_HEADER_LENGTH > dst.remaining()) {
            throw new IllegalArgumentException("meta context option too long: length=" + length + " queries=" + queries.size());
        }
        encodeOptionHeader(dst, option, (int) length);
        putString(dst, export);
        dst.putInt(queries.size());
        for (String q : queries) {
            putString(dst, q);
        }
    }

    /** Writes a u32 length and the UTF-8 bytes of {@code s}. */
    public static void putString(ByteBuffer dst, String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        dst.putInt(bytes.length).put(bytes);
    }

    public static int stringLength(String s) {
        return 4 + s.getBytes(StandardCharsets.UTF_8).length;
    }

    /**
     * Reads a u32 length and that many UTF-8 bytes, or returns null when the length runs past the
     * buffer's limit or the spec's 4096-byte string limit.
     */
    public static String getString(ByteBuffer src) {
        if (src.remaining() < 4) {
            return null;
        }
        long length = Integer.toUnsignedLong(src.getInt());
        if (length > src.remaining() || length > MAX_STRING_LENGTH) {
            return null;
        }
        return getBytes(src, (int) length);
    }

    /** The next {@code length} bytes as UTF-8 (the caller has checked that they are there). */
    public static String getBytes(ByteBuffer src, int length) {
        byte[] bytes = new byte[length];
        src.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }
}
