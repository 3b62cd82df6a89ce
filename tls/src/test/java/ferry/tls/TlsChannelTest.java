package ferry.tls;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.Pipe;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import javax.net.ssl.SSLEngine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Two TlsChannels over an in-memory duplex (two pipes) whose reads deliver at most a few bytes at a time. */
class TlsChannelTest {
    private static TestPki pki;
    private final ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor();

    @BeforeAll
    static void certificates(@TempDir Path tmp) throws Exception {
        pki = new TestPki(tmp);
    }

    @AfterEach
    void stop() {
        threads.shutdownNow();
    }

    /** One end of a duplex made of two pipes; each read returns at most {@code piece} bytes. */
    static final class End implements ByteChannel {
        private final Pipe.SourceChannel in;
        private final Pipe.SinkChannel out;
        private final int piece;

        End(Pipe.SourceChannel in, Pipe.SinkChannel out, int piece) {
            this.in = in;
            this.out = out;
            this.piece = piece;
        }

        static End[] pair(int piece) throws IOException {
            Pipe a = Pipe.open();
            Pipe b = Pipe.open();
            return new End[] {new End(a.source(), b.sink(), piece), new End(b.source(), a.sink(), piece)};
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            ByteBuffer part = dst.slice(dst.position(), Math.min(piece, dst.remaining()));
            int n = in.read(part);
            if (n > 0) {
                dst.position(dst.position() + n);
            }
            return n;
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            return out.write(src);
        }

        @Override
        public boolean isOpen() {
            return out.isOpen();
        }

        @Override
        public void close() throws IOException {
            out.close();
            in.close();
        }
    }

    record Pair(TlsChannel client, TlsChannel server, SSLEngine clientEngine, End clientNet, End serverNet) {}

    private Pair connect(int piece, TlsCredentials client, TlsCredentials server) throws Exception {
        End[] net = End.pair(piece);
        SSLEngine clientEngine = client.clientEngine("localhost");
        TlsChannel c = new TlsChannel(net[0], clientEngine, ByteBuffer.allocate(0));
        TlsChannel s = new TlsChannel(net[1], server.serverEngine(), ByteBuffer.allocate(0));
        Future<?> serverSide = threads.submit(() -> {
            s.handshake();
            return null;
        });
        c.handshake();
        serverSide.get();
        return new Pair(c, s, clientEngine, net[0], net[1]);
    }

    static ByteBuffer pattern(int length, int seed) {
        ByteBuffer b = ByteBuffer.allocateDirect(length);
        for (int i = 0; i < length; i++) {
            b.put((byte) (i * 13 + seed));
        }
        return b.flip();
    }

    static void readFully(TlsChannel ch, ByteBuffer dst) throws IOException {
        while (dst.hasRemaining()) {
            assertTrue(ch.read(dst) >= 0, "end of stream early");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 5, 7, 65536})
    void shouldCarryBytesBothWaysWhateverPiecesTheNetworkDelivers(int piece) throws Exception {
        Pair p = connect(piece, TestPki.client(pki.good), TestPki.server(pki.good));
        assertEquals("CN=source.test,O=Ferry Tests", p.server().peerSubject());
        assertEquals("CN=localhost", p.client().peerSubject());
        assertEquals("TLSv1.3", p.server().session().getProtocol());
        int length = piece < 10 ? 50_000 : 3 << 20;
        // a gathering write of a header and a payload, read back in small and in large reads
        Future<?> writer = threads.submit(() -> {
            p.client().write(new ByteBuffer[] {pattern(16, 1), pattern(length, 2)});
            return null;
        });
        ByteBuffer header = ByteBuffer.allocate(16);
        readFully(p.server(), header);
        ByteBuffer payload = ByteBuffer.allocateDirect(length);
        readFully(p.server(), payload);
        writer.get();
        assertEquals(pattern(16, 1), header.flip());
        assertEquals(pattern(length, 2), payload.flip());
        // and the other way
        Future<?> back = threads.submit(() -> {
            p.server().write(pattern(length, 3));
            return null;
        });
        ByteBuffer reply = ByteBuffer.allocate(length);
        readFully(p.client(), reply);
        back.get();
        assertEquals(pattern(length, 3), reply.flip());
    }

    @Test
    void shouldEndTheStreamOnCloseNotifyAndOnAPlainHangUp() throws Exception {
        Pair p = connect(4096, TestPki.client(pki.good), TestPki.server(pki.good));
        p.client().close();   // close_notify, then the pipe closes
        assertEquals(-1, p.server().read(ByteBuffer.allocate(10)));
        assertFalse(p.client().isOpen());
        assertThrows(java.nio.channels.ClosedChannelException.class, () -> p.client().write(ByteBuffer.allocate(1)));

        Pair q = connect(4096, TestPki.client(pki.good), TestPki.server(pki.good));
        q.clientNet().close();   // no close_notify: the layer above sees the stream end where it ends
        assertEquals(-1, q.server().read(ByteBuffer.allocate(10)));
    }

    @Test
    void shouldGoOnAfterAKeyUpdateWhileBothSidesWrite() throws Exception {
        Pair p = connect(65536, TestPki.client(pki.good), TestPki.server(pki.good));
        int length = 8 << 20;
        for (int round = 0; round < 3; round++) {
            p.clientEngine().beginHandshake();   // TLS 1.3: a KeyUpdate asking the peer to update too
            int seed = round;
            Future<?> up = threads.submit(() -> {
                for (int i = 0; i < 8; i++) {
                    p.client().write(pattern(length / 8, seed));
                }
                return null;
            });
            Future<?> down = threads.submit(() -> {
                for (int i = 0; i < 8; i++) {
                    p.server().write(pattern(length / 8, seed + 100));
                }
                return null;
            });
            Future<ByteBuffer> clientReads = threads.submit(() -> {
                ByteBuffer b = ByteBuffer.allocateDirect(length);
                readFully(p.client(), b);
                return b.flip();
            });
            ByteBuffer atServer = ByteBuffer.allocateDirect(length);
            readFully(p.server(), atServer);
            up.get();
            down.get();
            for (int i = 0; i < 8; i++) {
                assertEquals(pattern(length / 8, seed), atServer.slice(i * (length / 8), length / 8), "round " + round);
                assertEquals(pattern(length / 8, seed + 100), clientReads.get().slice(i * (length / 8), length / 8));
            }
        }
    }

    @Test
    void shouldFailBothHandshakesWhenTheClientCertificateIsFromAnotherCa() throws Exception {
        End[] net = End.pair(4096);
        TlsChannel c = new TlsChannel(net[0], TestPki.client(pki.otherCa).clientEngine("localhost"), ByteBuffer.allocate(0));
        TlsChannel s = new TlsChannel(net[1], TestPki.server(pki.good).serverEngine(), ByteBuffer.allocate(0));
        Future<TlsException> serverSide = threads.submit(() -> assertThrows(TlsException.class, s::handshake));
        // TLS 1.3: the client finishes before the server checks its certificate; it learns on its first read
        try {
            c.handshake();
            assertThrows(TlsException.class, () -> c.read(ByteBuffer.allocate(1)));
        } catch (TlsException expected) {
            assertEquals(TlsException.Kind.HANDSHAKE, expected.kind());
        }
        TlsException e = serverSide.get();
        assertEquals(TlsException.Kind.HANDSHAKE, e.kind());
        assertTrue(e.getMessage().startsWith("tls handshake failed: "), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void shouldFailTheHandshakeWhenThePeerHangsUp() throws Exception {
        End[] net = End.pair(4096);
        TlsChannel s = new TlsChannel(net[1], TestPki.server(pki.good).serverEngine(), ByteBuffer.allocate(0));
        net[0].close();
        TlsException e = assertThrows(TlsException.class, s::handshake);
        assertTrue(e.getMessage().contains("closed the connection"), e.getMessage());
    }
}
