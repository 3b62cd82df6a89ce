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
    private long frameTimeoutNs = Long.MAX_VALUE;
    private long frameStartNs;     // when the current frame's first byte arrived; 0 before it

    public FrameReader(ReadableByteChannel channel) {
        this.channel = channel;
    }

    /**
     * Bounds how long one frame may take from its first byte to its last: the socket's read timeout
     * bounds the silence between two reads, this a peer that trickles a frame a byte at a time.
     */
    public FrameReader frameTimeoutMs(long timeoutMs) {
        this.frameTimeoutNs = timeoutMs * 1_000_000;
        return this;
    }

    public long bytesRead() {
        return bytesRead.get();
    }

    /** The next frame; EOFException when the peer closed the stream between frames. */
    public Frame next() throws IOException, MigrationWire.WireException {
        header.clear();
        frameStartNs = 0;
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
            if (n > 0) {
                any = true;
                long now = System.nanoTime();
                if (frameStartNs == 0) {
                    frameStartNs = now;
                } else if (buffer.hasRemaining() && now - frameStartNs > frameTimeoutNs) {
                    throw new java.io.InterruptedIOException("the peer took more than " + frameTimeoutNs / 1_000_000
                            + " ms to send one frame (frame " + (frames + 1) + ")");
                }
            }
        }
        return true;
    }
}
