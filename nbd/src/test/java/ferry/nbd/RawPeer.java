package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;

/** A test peer that speaks NBD byte by byte, for what NbdClient would never send. */
final class RawPeer implements AutoCloseable {
    private final SocketChannel channel;

    RawPeer(SocketChannel channel) throws IOException {
        this.channel = channel;
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
                return true;   // reset by the server
            }
        }
        return false;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
