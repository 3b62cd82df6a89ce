package ferry.migration.stream;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.SocketChannel;

/**
 * The connection under TLS, as {@link ferry.tls.TlsChannel} reads and writes it: reads go through the
 * socket's input stream, so that the socket's read timeout ({@code SO_TIMEOUT}: the handshake's, then
 * the destination's silence limit) applies, which it does not to a blocking channel's own reads; writes
 * go to the channel. One reader and one writer at a time, as TlsChannel's locks ensure.
 */
final class TimedSocket implements ByteChannel {
    private final SocketChannel channel;
    private final InputStream in;

    TimedSocket(SocketChannel channel) throws IOException {
        this.channel = channel;
        this.in = channel.socket().getInputStream();
    }

    /** Throws {@link java.net.SocketTimeoutException} when nothing came within the socket's read timeout. */
    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (!dst.hasRemaining()) {
            return 0;
        }
        if (dst.hasArray()) {                    // TlsChannel's record buffer: no copy of our own
            int n = in.read(dst.array(), dst.arrayOffset() + dst.position(), dst.remaining());
            if (n > 0) {
                dst.position(dst.position() + n);
            }
            return n;
        }
        byte[] bytes = new byte[Math.min(dst.remaining(), 64 << 10)];
        int n = in.read(bytes);
        if (n > 0) {
            dst.put(bytes, 0, n);
        }
        return n;
    }

    @Override
    public int write(ByteBuffer src) throws IOException {
        return channel.write(src);
    }

    @Override
    public boolean isOpen() {
        return channel.isOpen();
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
