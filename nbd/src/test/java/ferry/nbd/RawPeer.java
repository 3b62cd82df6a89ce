package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import ferry.tls.TlsChannel;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import javax.net.ssl.SSLEngine;

/** A test peer that speaks NBD byte by byte, for what NbdClient would never send. */
final class RawPeer implements AutoCloseable {
    private final SocketChannel socket;
    private ByteChannel channel;   // the socket, or TLS over it after startTls

    RawPeer(SocketChannel channel) throws IOException {
        this.socket = channel;
        this.channel = channel;
    }

    /** STARTTLS, its ACK, then the TLS handshake: every later byte goes through TLS. */
    TlsChannel startTls(SSLEngine engine) throws IOException {
        option(OPT_STARTTLS, new byte[0]);
        OptionReplyHeader r = skipReply();
        if (r.replyType() != REP_ACK) {
            throw new IOException("STARTTLS refused: reply=0x" + Integer.toHexString(r.replyType()));
        }
        return useTls(new TlsChannel(socket, engine, ByteBuffer.allocate(0)));
    }

    /** Goes on over {@code tls} (a TlsChannel over this peer's socket) after its handshake. */
    TlsChannel useTls(TlsChannel tls) throws IOException {
        tls.handshake();
        channel = tls;
        return tls;
    }

    static SocketChannel open(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        return ch;
    }

    void greet() throws IOException {
        read(18);
        send(ByteBuffer.allocate(4).putInt(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).flip());
    }

    void handshake(String export, boolean structured) throws IOException {
        greet();
        if (structured) {
            option(OPT_STRUCTURED_REPLY, new byte[0]);
            skipReply();
        }
        option(OPT_GO, NbdServerTest.goData(export));
        while (skipReply().replyType() != REP_ACK) {
            // REP_INFO replies
        }
    }

    void option(int option, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(OPTION_HEADER_LENGTH + data.length);
        encodeOptionHeader(b, option, data.length);
        send(b.put(data).flip());
    }

    OptionReplyHeader optionReply() throws IOException {
        return decodeOptionReplyHeader(read(OPTION_REPLY_HEADER_LENGTH));
    }

    OptionReplyHeader skipReply() throws IOException {
        OptionReplyHeader r = optionReply();
        read((int) r.length());
        return r;
    }

    void send(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            channel.write(b);
        }
    }

    ByteBuffer read(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (channel.read(b) < 0) {
                throw new IOException("peer closed: wanted=" + n + " got=" + b.position());
            }
        }
        return b.flip();
    }

    /** True when the server closed the connection (reads end of stream within 5 s). */
    boolean atEnd() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1);
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (System.nanoTime() < deadline) {
            try {
                int n = channel.read(b);
                if (n < 0) {
                    return true;
                }
                b.clear();
            } catch (IOException e) {
                return true;   // reset by the server, or a TLS alert
            }
        }
        return false;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
