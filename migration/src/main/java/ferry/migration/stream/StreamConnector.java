package ferry.migration.stream;

import ferry.tls.GracefulClose;
import ferry.tls.TlsChannel;
import ferry.tls.TlsEndpoint;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * The source's side of opening the stream: TCP connect, then, with {@link StreamSecurity.Tls}, the TLS
 * 1.3 handshake before any frame. The server's certificate must come from the CA of the source's
 * tls-creds and name {@code tls-hostname}, or else the host of the {@code migrate} URI.
 *
 * <p>Runs on the source's {@code migration-send} thread.
 */
public final class StreamConnector {
    private static final System.Logger LOG = System.getLogger(StreamConnector.class.getName());
    /** The whole handshake, both flights: loopback takes ~10 ms, a WAN round trip or two more. */
    public static final int HANDSHAKE_TIMEOUT_MS = 10_000;
    /** How long a refusing side reads the peer's last bytes so that the peer reads the refusal, not a reset. */
    public static final int REFUSAL_DRAIN_MS = 2_000;

    private StreamConnector() {}

    /**
     * Connects and, with TLS, handshakes.
     *
     * @param socketBufferBytes SO_SNDBUF of the stream
     * @throws StreamRefused the TLS handshake failed; the message says why in one line
     * @throws IOException the TCP connection could not be made
     */
    public static MigrationStream connect(String host, int port, int timeoutMs, int socketBufferBytes, StreamSecurity security)
            throws IOException {
        SocketChannel channel = SocketChannel.open();
        try {
            channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
            channel.setOption(StandardSocketOptions.SO_KEEPALIVE, true);
            channel.setOption(StandardSocketOptions.SO_SNDBUF, socketBufferBytes);
            channel.socket().connect(new InetSocketAddress(host, port), timeoutMs);
        } catch (IOException e) {
            channel.close();
            throw e;
        }
        String peer = host + ":" + port;
        return switch (security) {
            case StreamSecurity.Plain plain -> new PlainStream(channel, channel.socket().getInputStream(), peer);
            case StreamSecurity.Tls tls -> handshake(channel, peer, host, port, tls);
        };
    }

    private static MigrationStream handshake(SocketChannel channel, String peer, String host, int port, StreamSecurity.Tls tls)
            throws IOException {
        String serverName = tls.hostName().orElse(host);
        if (!tls.credentials().verifyPeer()) {
            LOG.log(System.Logger.Level.WARNING, "tls-creds " + tls.credentials().id() + " has verify-peer=off: the certificate of "
                    + peer + " is not checked, anyone on the path can pose as the destination");
        }
        TlsChannel tlsChannel;
        try {
            tlsChannel = new TlsChannel(new TimedSocket(channel), tls.credentials().clientEngine(serverName), ByteBuffer.allocate(0));
            channel.socket().setSoTimeout(HANDSHAKE_TIMEOUT_MS);
            tlsChannel.handshake();
            channel.socket().setSoTimeout(0);
        } catch (IOException e) {
            throw new StreamRefused("TLS handshake with " + peer + " failed: " + closeAfterFailedHandshake(channel, e, TlsEndpoint.CLIENT), e);
        }
        TlsStream stream = new TlsStream(channel, tlsChannel, peer, TlsEndpoint.CLIENT);
        LOG.log(System.Logger.Level.INFO, "migration stream to " + peer + ": " + stream.description());
        return stream;
    }

    /**
     * Closes the connection after a failed TLS handshake and says why in one line, as {@code side} sees
     * it. After a TLS failure JSSE's alert is on its way to the peer: the peer's last bytes are drained
     * first, so that it reads the alert rather than a reset.
     */
    static String closeAfterFailedHandshake(SocketChannel channel, IOException e, TlsEndpoint side) throws IOException {
        if (causedBy(e, SocketTimeoutException.class)) {
            channel.close();
            return "no answer within " + HANDSHAKE_TIMEOUT_MS + " ms" + (side == TlsEndpoint.CLIENT ? " (is the destination listening with TLS?)" : "");
        }
        var ssl = TlsStream.sslCause(e);
        if (ssl.isPresent()) {
            GracefulClose.close(channel.socket(), REFUSAL_DRAIN_MS);
            return TlsText.explain(ssl.get(), side);
        }
        channel.close();
        return TlsText.explain(TlsText.ioCause(e), side);
    }

    /** Whether {@code type} is {@code failure} or one of its causes. */
    static boolean causedBy(Throwable failure, Class<? extends Throwable> type) {
        for (Throwable t = failure; t != null; t = t.getCause()) {
            if (type.isInstance(t)) {
                return true;
            }
        }
        return false;
    }
}
