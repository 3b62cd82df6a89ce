package ferry.migration.wire;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ReadableByteChannel;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Reads and validates frames from the migration stream: magic, known type, length bound, CRC32C.
 * One thread reads. BLOCK_DATA and RAM frames returned by {@link #next()} are views of this reader's
 * buffer, valid until the next call.
 */
public final class FrameReader {
    private final ReadableByteChannel channel;
    private final ByteBuffer header = ByteBuffer.allocateDirect(MigrationWire.HEADER_LENGTH).order(ByteOrder.BIG_ENDIAN);
    private ByteBuffer payload = ByteBuffer.allocateDirect(MigrationWire.MAX_BLOCK_PAYLOAD + MigrationWire.BLOCK_DATA_PREFIX);
    private final AtomicLong bytesRead = new AtomicLong();
    private long frames;

    public FrameReader(ReadableByteChannel channel) {
        this.channel = channel;
    }

    public long bytesRead() {
        return bytesRead.get();
    }

    /** The next frame; EOFException when the peer closed the stream between frames. */
    public Frame next() throws IOException, MigrationWire.WireException {
        header.clear();
        if (!fill(header, true)) {
            throw new EOFException("migration stream closed by peer after " + frames + " frames");
        }
        header.flip();
        MigrationWire.Header decoded = MigrationWire.decodeHeader(header);
        if (payload.capacity() < decoded.payloadLength()) {
            payload = ByteBuffer.allocateDirect(decoded.payloadLength());
        }
        payload.clear().limit(decoded.payloadLength());
        if (!fill(payload, false)) {
            throw new EOFException("migration stream truncated inside a " + decoded.type() + " frame of "
                    + decoded.payloadLength() + " bytes");
        }
        payload.flip();
        MigrationWire.checkCrc(header.position(0), decoded, payload);
        frames++;
        bytesRead.addAndGet(MigrationWire.HEADER_LENGTH + decoded.payloadLength());
        return MigrationWire.decodePayload(decoded.type(), payload);
    }

    /** Fills the buffer; false on EOF before the first byte when {@code eofAllowed}. */
    private boolean fill(ByteBuffer buffer, boolean eofAllowed) throws IOException {
        boolean any = false;
        while (buffer.hasRemaining()) {
            int n = channel.read(buffer);
            if (n < 0) {
                if (eofAllowed && !any) {
                    return false;
                }
                throw new EOFException("migration stream closed by peer in the middle of a frame");
            }
            any |= n > 0;
        }
        return true;
    }
}
