package ferry.migration.stream;

import ferry.tls.GracefulClose;
import ferry.tls.TlsEndpoint;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.nio.channels.SocketChannel;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSocket;

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
        SSLSocket socket;
        try {
            socket = tls.credentials().client(channel.socket(), serverName, port);
            socket.setSoTimeout(HANDSHAKE_TIMEOUT_MS);
            socket.startHandshake();
            socket.setSoTimeout(0);
        } catch (SSLException e) {
            GracefulClose.close(channel.socket(), REFUSAL_DRAIN_MS);
            throw new StreamRefused("TLS handshake with " + peer + " failed: " + TlsText.explain(e, TlsEndpoint.CLIENT), e);
        } catch (SocketTimeoutException e) {
            channel.close();
            throw new StreamRefused("TLS handshake with " + peer + " failed: no answer within " + HANDSHAKE_TIMEOUT_MS
                    + " ms (is the destination listening with TLS?)", e);
        } catch (IOException e) {
            channel.close();
            throw new StreamRefused("TLS handshake with " + peer + " failed: " + TlsText.explain(e, TlsEndpoint.CLIENT), e);
        }
        TlsStream stream = new TlsStream(channel, socket, peer, TlsEndpoint.CLIENT);
        LOG.log(System.Logger.Level.INFO, "migration stream to " + peer + ": " + stream.description());
        return stream;
    }
}
