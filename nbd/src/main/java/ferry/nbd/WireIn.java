package ferry.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;

/**
 * Buffered reading of framed messages from a channel: a read-ahead buffer lets one read(2) take in
 * several pipelined request headers; payloads beyond what is buffered go straight into their
 * destination. Works whatever sizes the channel delivers (tests feed it 1-, 5- and 7-byte pieces).
 * Owned by one reader thread.
 */
final class WireIn {
    private final ReadableByteChannel channel;
    private final ByteBuffer buffer;   // between reads: position..limit holds unread bytes

    WireIn(ReadableByteChannel channel, int capacity) {
        this.channel = channel;
        this.buffer = ByteBuffer.allocateDirect(capacity).flip();
    }

    /**
     * Makes {@code n} bytes available and returns the buffer positioned at them; the caller consumes
     * exactly {@code n}. Returns null on end of stream before the first byte when {@code eofOk}.
     */
    ByteBuffer need(int n, boolean eofOk) throws IOException {
        if (n > buffer.capacity()) {
            throw new IllegalArgumentException("need more than the buffer holds: n=" + n);
        }
        if (buffer.remaining() >= n) {
            return buffer;
        }
        buffer.compact();
        try {
            while (buffer.position() < n) {
                if (channel.read(buffer) < 0) {
                    if (eofOk && buffer.position() == 0) {
                        return null;
                    }
                    throw new NbdException(NbdException.Kind.CLOSED,
                            "connection closed mid-message: needed=" + n + " got=" + buffer.position());
                }
            }
        } finally {
            buffer.flip();
        }
        return buffer;
    }

    ByteBuffer need(int n) throws IOException {
        return need(n, false);
    }

    /** Fills {@code dst} from position to limit. */
    void readFully(ByteBuffer dst) throws IOException {
        if (buffer.hasRemaining()) {
            int n = Math.min(buffer.remaining(), dst.remaining());
            dst.put(dst.position(), buffer, buffer.position(), n);
            dst.position(dst.position() + n);
            buffer.position(buffer.position() + n);
        }
        while (dst.hasRemaining()) {
            if (channel.read(dst) < 0) {
                throw new NbdException(NbdException.Kind.CLOSED, "connection closed mid-payload: missing=" + dst.remaining());
            }
        }
    }

    /** Reads and drops {@code n} bytes (a refused payload) without allocating them. */
    void skip(long n) throws IOException {
        long left = n;
        while (left > 0) {
            int chunk = (int) Math.min(left, buffer.capacity());
            need(chunk);
            buffer.position(buffer.position() + chunk);
            left -= chunk;
        }
    }

    /**
     * Hands over the bytes read ahead but not consumed (a copy) and forgets them: when the stream
     * changes hands (STARTTLS), what the client sent behind the last message belongs to the next reader.
     */
    ByteBuffer takeBuffered() {
        ByteBuffer copy = ByteBuffer.allocate(buffer.remaining()).put(buffer).flip();
        buffer.clear().flip();
        return copy;
    }

    int capacity() {
        return buffer.capacity();
    }

    /** True when a later {@link #need} can be answered without reading the channel. */
    boolean buffered(int n) {
        return buffer.remaining() >= n;
    }
}
