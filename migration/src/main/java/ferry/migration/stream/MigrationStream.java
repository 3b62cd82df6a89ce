package ferry.migration.stream;

import java.io.Closeable;
import java.io.IOException;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;

/**
 * One open migration stream, plain or TLS, whichever side opened it: {@link StreamConnector} on a
 * source, {@link StreamAcceptor} on a destination. A {@code FrameReader} reads {@link #input()} (one
 * thread), a {@code FrameWriter} writes {@link #output()} (one frame at a time, under its lock); the
 * frame format is the same either way. {@link #close()} may come from any thread and never blocks for
 * long; it unblocks a reader or writer stuck on the peer.
 */
public sealed interface MigrationStream extends Closeable permits PlainStream, TlsStream {
    ReadableByteChannel input();

    GatheringByteChannel output();

    /** The peer's address, for messages. */
    String peer();

    /** How the stream is carried, for the log: {@code plain TCP} or {@code TLS 1.3 (suite), peer certificate 'DN'}. */
    String description();

    /** A read that waits longer fails with {@link java.net.SocketTimeoutException}; 0: no limit. */
    void readTimeoutMs(int timeoutMs) throws IOException;

    /** Before a farewell frame: the close that follows waits up to this long for the frame to leave. */
    void lingerSeconds(int seconds) throws IOException;

    boolean isOpen();

    @Override
    void close() throws IOException;
}
