package ferry.migration.stream;

import java.io.IOException;
import java.io.InputStream;
import java.net.StandardSocketOptions;
import java.nio.channels.Channels;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;

/**
 * The migration stream over plain TCP: frames are written with gathering writes to the channel, and
 * read through the socket's stream so that a read timeout applies ({@code SO_TIMEOUT} does not apply
 * to a channel's own reads).
 */
public final class PlainStream implements MigrationStream {
    private final SocketChannel channel;
    private final ReadableByteChannel input;
    private final String peer;

    /** {@code in}: the socket's input stream, possibly after bytes a destination peeked at. */
    PlainStream(SocketChannel channel, InputStream in, String peer) {
        this.channel = channel;
        this.input = Channels.newChannel(in);
        this.peer = peer;
    }

    @Override
    public ReadableByteChannel input() {
        return input;
    }

    @Override
    public GatheringByteChannel output() {
        return channel;
    }

    @Override
    public String peer() {
        return peer;
    }

    @Override
    public String description() {
        return "plain TCP";
    }

    @Override
    public void readTimeoutMs(int timeoutMs) throws IOException {
        channel.socket().setSoTimeout(timeoutMs);
    }

    @Override
    public void lingerSeconds(int seconds) throws IOException {
        channel.setOption(StandardSocketOptions.SO_LINGER, seconds);
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
