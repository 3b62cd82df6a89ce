package ferry.nbd;

/**
 * A transmission-phase request after validation (see {@link RequestDecoder}): offsets and lengths
 * are inside the export and within {@link NbdWire#MAX_PAYLOAD_LENGTH} where the command carries data.
 * The server dispatches on it with exhaustive switches.
 */
public sealed interface NbdRequest {
    long cookie();

    /** NBD_CMD_READ; {@code df}: the client wants one data chunk (no holes). */
    record Read(long cookie, long offset, int length, boolean df) implements NbdRequest {}

    /** NBD_CMD_WRITE; its payload of {@code length} bytes follows the header. */
    record Write(long cookie, long offset, int length, boolean fua) implements NbdRequest {}

    record Flush(long cookie) implements NbdRequest {}

    record Trim(long cookie, long offset, long length, boolean fua) implements NbdRequest {}

    record WriteZeroes(long cookie, long offset, long length, boolean fua, boolean noHole, boolean fastZero)
            implements NbdRequest {}

    /** NBD_CMD_BLOCK_STATUS for the negotiated context; {@code reqOne}: one extent only. */
    record BlockStatus(long cookie, long offset, long length, boolean reqOne) implements NbdRequest {}

    record Disconnect(long cookie) implements NbdRequest {}
}
