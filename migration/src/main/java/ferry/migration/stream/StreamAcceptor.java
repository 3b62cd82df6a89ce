package ferry.migration.stream;

import ferry.migration.RateLimiter;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import ferry.tls.DistinguishedName;
import ferry.tls.GracefulClose;
import ferry.tls.TlsChannel;
import ferry.tls.TlsEndpoint;
import ferry.tls.TlsException;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.SocketChannel;
import java.util.Optional;
import javax.security.auth.x500.X500Principal;

/**
 * The destination's side of opening the stream: decides, before a single frame is read, whether an
 * accepted connection may become a migration. It reads one byte to tell the two kinds of peer apart (a
 * TLS ClientHello starts with record type 0x16, a Ferry frame with 'F' of "FERY"), then:
 * <ul>
 *   <li>plain listener, TLS peer: refused (a plaintext ERROR frame, which the peer's TLS reports as "not TLS");
 *   <li>TLS listener, plaintext Ferry peer: refused with a plaintext ERROR frame the source shows as is;
 *   <li>TLS listener, TLS peer: the handshake (client certificate required with verify-peer=on), then
 *       tls-authz on the client certificate's DN (refused with an ERROR frame inside TLS).
 * </ul>
 * A refusal is a {@link StreamRefused} with one line for the log; the connection is closed after the
 * peer's remaining bytes were drained (unread), so the peer reads the refusal and not a reset.
 * Nothing of HELLO is read, so nothing is prepared or created for a refused peer.
 *
 * <p>Runs on the destination's {@code migration-listen} thread; at most
 * {@link StreamConnector#HANDSHAKE_TIMEOUT_MS} for the handshake and about two seconds per refusal.
 */
public final class StreamAcceptor {
    /** TLS record type handshake (RFC 8446 5.1): the first byte of every ClientHello. */
    static final int TLS_HANDSHAKE_RECORD = 0x16;
    /** The first byte of every Ferry frame: 'F' of the magic "FERY". */
    static final int FRAME_FIRST_BYTE = MigrationWire.MAGIC >>> 24;

    private StreamAcceptor() {}

    public static MigrationStream accept(SocketChannel channel, StreamSecurity security) throws IOException {
        String peer = String.valueOf(channel.getRemoteAddress());
        channel.socket().setSoTimeout(StreamConnector.HANDSHAKE_TIMEOUT_MS);
        InputStream in = channel.socket().getInputStream();
        int first;
        try {
            first = in.read();
        } catch (SocketTimeoutException e) {
            channel.close();
            throw new StreamRefused("it sent nothing for " + StreamConnector.HANDSHAKE_TIMEOUT_MS + " ms");
        }
        if (first < 0) {
            channel.close();
            throw new StreamRefused("it closed the connection without sending anything");
        }
        byte[] consumed = {(byte) first};
        return switch (security) {
            case StreamSecurity.Plain plain -> {
                if (first == TLS_HANDSHAKE_RECORD) {
                    refuse(channel, channel, "this destination listens without TLS (no tls-creds)");
                    throw new StreamRefused("it speaks TLS, but this destination has no tls-creds (give it -object"
                            + " tls-creds-x509,...,endpoint=server and migrate_set_parameter tls-creds ID before migrate_incoming,"
                            + " or -global migration.tls-creds=ID)");
                }
                yield new PlainStream(channel, new SequenceInputStream(new ByteArrayInputStream(consumed), in), peer);
            }
            case StreamSecurity.Tls tls -> tls(channel, peer, consumed, tls);
        };
    }

    private static MigrationStream tls(SocketChannel channel, String peer, byte[] consumed, StreamSecurity.Tls tls) throws IOException {
        int first = consumed[0] & 0xff;
        String creds = tls.credentials().id();
        if (first == FRAME_FIRST_BYTE) {
            refuse(channel, channel, "this destination accepts TLS only (tls-creds " + creds + "): give the source"
                    + " -object tls-creds-x509,...,endpoint=client and migrate_set_parameter tls-creds ID");
            throw new StreamRefused("it sent a plaintext migration stream, but this destination requires TLS (tls-creds " + creds + ")");
        }
        if (first != TLS_HANDSHAKE_RECORD) {
            GracefulClose.close(channel.socket(), StreamConnector.REFUSAL_DRAIN_MS);
            throw new StreamRefused(String.format("it speaks neither TLS nor Ferry's migration protocol (first byte 0x%02x)", first));
        }
        TlsChannel tlsChannel;
        try {                                                    // the read timeout is still the handshake's (accept)
            tlsChannel = new TlsChannel(new TimedSocket(channel), tls.credentials().serverEngine(), ByteBuffer.wrap(consumed));
            tlsChannel.handshake();
        } catch (IOException e) {
            throw new StreamRefused("TLS handshake failed: " + StreamConnector.closeAfterFailedHandshake(channel, e, TlsEndpoint.SERVER), e);
        }
        TlsStream stream = new TlsStream(channel, tlsChannel, peer, TlsEndpoint.SERVER);
        if (tls.authz().isPresent()) {
            authorize(stream, tls);
        }
        return stream;
    }

    /** tls-authz on the client certificate's subject; a refusal goes to the source as an ERROR frame inside TLS. */
    private static void authorize(TlsStream stream, StreamSecurity.Tls tls) throws IOException {
        var authz = tls.authz().orElseThrow();
        Optional<X500Principal> subject = stream.peerSubject();
        String reason;
        try {
            if (subject.isPresent() && authz.allows(subject.get())) {
                return;
            }
            reason = subject.map(s -> "the client certificate '" + DistinguishedName.text(s) + "' is not allowed by tls-authz "
                    + authz.id()).orElse("no client certificate to check against tls-authz " + authz.id());
        } catch (TlsException e) {
            reason = "tls-authz " + authz.id() + " cannot decide, so it refuses: " + e.getMessage();
        }
        refuse(stream.channel(), stream.output(), reason);
        throw new StreamRefused(reason);
    }

    /** Tells the peer why in an ERROR frame (phase handshake), then closes after draining what it still sends. */
    private static void refuse(SocketChannel raw, GatheringByteChannel out, String reason) {
        try {
            new FrameWriter(out, new RateLimiter(Long.MAX_VALUE / 4)).send(new Frame.Error("handshake", reason));
        } catch (IOException e) {
            // the peer is gone: nothing to tell
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        GracefulClose.close(raw.socket(), StreamConnector.REFUSAL_DRAIN_MS);
    }
}
