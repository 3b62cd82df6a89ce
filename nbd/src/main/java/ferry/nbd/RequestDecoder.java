package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import ferry.nbd.NbdWire.RequestHeader;

/**
 * Validates a request header completely before anything touches the image: magic, command, flags,
 * bounds and length. Three outcomes: a valid {@link NbdRequest}; a rejection that gets an error reply
 * (after the server discards the payload it announced); or a header that cannot be framed (bad magic,
 * or a WRITE payload longer than the maximum), which ends the connection.
 *
 * <p>Stateless per call; each connection calls it from its reader thread.
 */
public final class RequestDecoder {
    private final long exportSize;
    private final boolean readOnly;
    private final boolean structured;
    private final boolean blockStatus;

    public RequestDecoder(long exportSize, boolean readOnly, boolean structured, boolean blockStatus) {
        this.exportSize = exportSize;
        this.readOnly = readOnly;
        this.structured = structured;
        this.blockStatus = blockStatus;
    }

    /** What became of one header. */
    public sealed interface Decoded {}

    public record Valid(NbdRequest request) implements Decoded {}

    /** Answer {@code error} to {@code cookie} after discarding {@code payloadLength} bytes. */
    public record Rejected(long cookie, int type, int error, long payloadLength, String reason) implements Decoded {}

    public record Unframeable(String reason) implements Decoded {}

    public Decoded decode(RequestHeader h) {
        if (h.magic() != REQUEST_MAGIC) {
            return new Unframeable("bad request magic: magic=0x" + Integer.toHexString(h.magic()));
        }
        long payload = h.type() == CMD_WRITE ? h.length() : 0;
        if (payload > MAX_PAYLOAD_LENGTH) {
            return new Unframeable("write payload too long: length=" + h.length() + " max=" + MAX_PAYLOAD_LENGTH);
        }
        Rejected rejected = rejection(h, payload);
        if (rejected != null) {
            return rejected;
        }
        boolean fua = (h.flags() & CMD_FLAG_FUA) != 0;
        NbdRequest request = switch (h.type()) {
            case CMD_READ -> new NbdRequest.Read(h.cookie(), h.offset(), (int) h.length(), (h.flags() & CMD_FLAG_DF) != 0);
            case CMD_WRITE -> new NbdRequest.Write(h.cookie(), h.offset(), (int) h.length(), fua);
            case CMD_FLUSH -> new NbdRequest.Flush(h.cookie());
            case CMD_TRIM -> new NbdRequest.Trim(h.cookie(), h.offset(), h.length(), fua);
            case CMD_WRITE_ZEROES -> new NbdRequest.WriteZeroes(h.cookie(), h.offset(), h.length(), fua,
                    (h.flags() & CMD_FLAG_NO_HOLE) != 0, (h.flags() & CMD_FLAG_FAST_ZERO) != 0);
            case CMD_BLOCK_STATUS -> new NbdRequest.BlockStatus(h.cookie(), h.offset(), h.length(),
                    (h.flags() & CMD_FLAG_REQ_ONE) != 0);
            case CMD_DISC -> new NbdRequest.Disconnect(h.cookie());
            default -> throw new IllegalStateException("unreachable: type=" + h.type());
        };
        return new Valid(request);
    }

    /** Null when the request is acceptable, else the error reply it gets and why. */
    private Rejected rejection(RequestHeader h, long payload) {
        int allowed = switch (h.type()) {
            case CMD_READ -> CMD_FLAG_FUA | (structured ? CMD_FLAG_DF : 0);
            case CMD_WRITE, CMD_TRIM, CMD_FLUSH, CMD_DISC -> CMD_FLAG_FUA;
            case CMD_WRITE_ZEROES -> CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO;
            case CMD_BLOCK_STATUS -> CMD_FLAG_FUA | CMD_FLAG_REQ_ONE;
            default -> -1;
        };
        String command = nameOfCommand(h.type());
        if (allowed == -1) {
            return reject(h, payload, EINVAL, "unsupported command: type=" + command);
        }
        if ((h.flags() & ~allowed) != 0) {
            return reject(h, payload, EINVAL, "unknown flags: command=" + command + " flags=0x" + Integer.toHexString(h.flags()));
        }
        if (h.type() == CMD_FLUSH || h.type() == CMD_DISC) {
            return null;
        }
        if (h.type() == CMD_BLOCK_STATUS && !blockStatus) {
            return reject(h, payload, EINVAL, "block status without a negotiated meta context");
        }
        if (h.type() == CMD_BLOCK_STATUS && h.length() == 0) {
            return reject(h, payload, EINVAL, "block status of zero length");
        }
        if (h.type() == CMD_READ && h.length() > MAX_PAYLOAD_LENGTH) {
            return reject(h, payload, EOVERFLOW, "read too long: length=" + h.length() + " max=" + MAX_PAYLOAD_LENGTH);
        }
        boolean writes = h.type() == CMD_WRITE || h.type() == CMD_TRIM || h.type() == CMD_WRITE_ZEROES;
        // offset is a u64: a negative long lies past any export.
        if (h.offset() < 0 || h.offset() > exportSize || h.length() > exportSize - h.offset()) {
            boolean writesData = h.type() == CMD_WRITE || h.type() == CMD_WRITE_ZEROES;
            return reject(h, payload, writesData ? ENOSPC : EINVAL,   // the spec asks for ENOSPC on writes past the end
                    "out of bounds: command=" + command + " offset=" + Long.toUnsignedString(h.offset())
                            + " length=" + h.length() + " size=" + exportSize);
        }
        if (writes && readOnly) {
            return reject(h, payload, EPERM, "read-only export: command=" + command);
        }
        return null;
    }

    private static Rejected reject(RequestHeader h, long payload, int error, String reason) {
        return new Rejected(h.cookie(), h.type(), error, payload, reason);
    }
}
