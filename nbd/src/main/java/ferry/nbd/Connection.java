package ferry.nbd;

import ferry.tls.TlsCredentials;
import ferry.tls.TlsException;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.channels.SocketChannel;
import java.util.List;
import java.util.Optional;

/**
 * One client connection: handshake, then transmission, then close; one log line when it opens and
 * one when it closes (with the reason). Nothing a client sends escapes as an exception: garbage or a
 * vanished client ends this connection only. Runs on its own thread ({@code nbd-conn-N}).
 */
final class Connection implements Runnable {
    private static final System.Logger LOG = System.getLogger(Connection.class.getName());
    private static final int READ_AHEAD = 64 << 10;

    private final String name;
    private final SocketChannel channel;
    private final List<NbdExport> exports;
    private final TlsCredentials tls;   // null: plaintext
    private final String peer;

    Connection(String name, SocketChannel channel, List<NbdExport> exports, TlsCredentials tls, String peer) {
        this.name = name;
        this.channel = channel;
        this.exports = exports;
        this.tls = tls;
        this.peer = peer;
    }

    String name() {
        return name;
    }

    @Override
    public void run() {
        LOG.log(Level.INFO, () -> "nbd connection opened: conn=" + name + " peer=" + peer);
        String why;
        try (channel) {
            Handshake handshake = new Handshake(new WireIn(channel, READ_AHEAD), channel, exports, tls, name);
            try {
                Optional<Handshake.Negotiated> negotiated = handshake.run();
                if (negotiated.isEmpty()) {
                    why = "client ended the handshake" + (handshake.tlsRefusals() == 0 ? ""
                            : " after options were refused for want of TLS: refused=" + handshake.tlsRefusals());
                } else {
                    Handshake.Negotiated n = negotiated.get();
                    why = new Transmission(handshake.out(), handshake.in(), n, name, peer).run() + " export=" + n.export().name()
                            + " structured=" + n.structured() + (tls == null ? "" : " tls=on");
                }
            } finally {
                handshake.closeTls();   // close_notify before the socket closes, as the spec asks
            }
        } catch (NbdException | TlsException e) {
            why = e.getMessage();
        } catch (IOException e) {
            why = "i/o failed: " + (e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            why = "interrupted";
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, "nbd connection failed: conn=" + name + " peer=" + peer, e);
            why = "internal error: " + e;
        }
        String reason = why;
        LOG.log(Level.INFO, () -> "nbd connection closed: conn=" + name + " peer=" + peer + " reason=" + reason);
    }

    /** Ends the connection from outside (server close): the reader's next read fails. */
    void shutdown() {
        try {
            channel.close();
        } catch (IOException e) {
            LOG.log(Level.DEBUG, () -> "close failed: conn=" + name + ": " + e.getMessage());
        }
    }
}
