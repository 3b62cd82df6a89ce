package ferry.nbd;

import static ferry.nbd.NbdWire.*;
import static org.junit.jupiter.api.Assertions.*;

import ferry.nbd.tls.Fixtures;
import ferry.tls.TlsChannel;
import ferry.tls.TlsCredentials;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import javax.net.ssl.SSLEngine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** STARTTLS in the handshake (the spec's FORCEDTLS mode), with the committed test certificates. */
class NbdTlsTest {
    static final int SIZE = 1 << 20;
    static final HexFormat HEX = HexFormat.of();

    // C: option STARTTLS (5), no data:      | IHAVEOPT                 | option 5 | length 0 |
    static final String STARTTLS = "49484156454f5054" + "00000005" + "00000000";
    // S: its ACK:                           | REPLY_MAGIC              | option 5 | REP_ACK  | length 0 |
    static final String STARTTLS_ACK = "0003e889045565a9" + "00000005" + "00000001" + "00000000";
    // S: LIST (3) refused before TLS:       | REPLY_MAGIC              | option 3 | REP_ERR_TLS_REQD 2^31+5 | length 33 | message
    static final String LIST_TLS_REQD = "0003e889045565a9" + "00000003" + "80000005" + "00000021";

    @TempDir Path tmp;
    MemoryImage image;
    NbdServer server;
    Path socket;

    @BeforeEach
    void start() throws IOException {
        image = new MemoryImage(SIZE, false);
        socket = tmp.resolve("nbd.sock");
        server = NbdServer.unix(socket, List.of(new NbdExport("disk", image, false))).tls(Fixtures.server(true)).start();
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
    }

    private static RawPeer peer(Path socket) throws IOException {
        RawPeer peer = new RawPeer(RawPeer.open(socket));
        peer.greet();
        return peer;
    }

    @Test
    void shouldAnswerStartTlsAndTlsReqdWithTheSpecBytes() throws IOException {
        try (RawPeer peer = peer(socket)) {
            peer.option(OPT_LIST, new byte[0]);
            ByteBuffer reply = peer.read(OPTION_REPLY_HEADER_LENGTH);
            assertEquals(LIST_TLS_REQD, HEX.formatHex(reply.array()));
            assertEquals("TLS required: send STARTTLS first", new String(peer.read(0x21).array(), StandardCharsets.UTF_8));
            peer.send(ByteBuffer.wrap(HEX.parseHex(STARTTLS)));
            assertEquals(STARTTLS_ACK, HEX.formatHex(peer.read(OPTION_REPLY_HEADER_LENGTH).array()));
        }
    }

    @Test
    void shouldRefuseEveryOptionButStartTlsAndAbortBeforeTls() throws IOException {
        try (RawPeer peer = peer(socket)) {
            for (int opt : new int[] {OPT_LIST, OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT,
                    OPT_PEEK_EXPORT, OPT_EXTENDED_HEADERS, 99}) {
                peer.option(opt, opt == OPT_GO || opt == OPT_INFO ? NbdServerTest.goData("disk") : new byte[0]);
                OptionReplyHeader r = peer.skipReply();
                assertEquals(opt, r.option());
                assertEquals(REP_ERR_TLS_REQD, r.replyType(), nameOfOption(opt));
            }
            ByteBuffer header = ByteBuffer.allocate(OPTION_HEADER_LENGTH);   // too long to be read: still TLS_REQD
            encodeOptionHeader(header, OPT_GO, 1 << 20);
            peer.send(header.flip());
            peer.send(ByteBuffer.allocate(1 << 20));
            assertEquals(REP_ERR_TLS_REQD, peer.skipReply().replyType());
            peer.option(OPT_STARTTLS, new byte[] {1});
            assertEquals(REP_ERR_INVALID, peer.skipReply().replyType());
            peer.option(OPT_ABORT, new byte[0]);
            assertEquals(REP_ACK, peer.skipReply().replyType());
            assertTrue(peer.atEnd(), "server closes after ABORT");
        }
    }

    @Test
    void shouldCloseOnExportNameBeforeTlsSinceItHasNoErrorReply() throws IOException {
        try (RawPeer peer = peer(socket)) {
            peer.option(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            assertTrue(peer.atEnd());
        }
        assertArrayEquals(new byte[SIZE], image.snapshot());
    }

    @Test
    void shouldServeOptionsAndTransmissionThroughTls() throws IOException {
        try (RawPeer peer = peer(socket)) {
            TlsChannel tls = peer.startTls(Fixtures.client("good").clientEngine("localhost"));
            assertEquals("TLSv1.3", tls.session().getProtocol());
            peer.option(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_INVALID, peer.skipReply().replyType(), "TLS already negotiated");
            peer.option(OPT_LIST, new byte[0]);
            assertEquals(REP_SERVER, peer.skipReply().replyType());
            assertEquals(REP_ACK, peer.skipReply().replyType());
            peer.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, peer.skipReply().replyType());
            peer.option(OPT_GO, NbdServerTest.goData("disk"));
            while (peer.skipReply().replyType() != REP_ACK) {
                // REP_INFO
            }
            ByteBuffer write = ByteBuffer.allocate(REQUEST_LENGTH + 100_000);
            encodeRequest(write, CMD_FLAG_FUA, CMD_WRITE, 7, 4096, 100_000);
            write.put(NbdServerTest.bytesOf(NbdServerTest.pattern(100_000, 5)));
            peer.send(write.flip());
            SimpleReply done = decodeSimpleReply(peer.read(SIMPLE_REPLY_LENGTH));
            assertEquals(new SimpleReply(SIMPLE_REPLY_MAGIC, OK, 7), done);
            ByteBuffer read = ByteBuffer.allocate(REQUEST_LENGTH);
            encodeRequest(read, 0, CMD_READ, 8, 4096, 100_000);
            peer.send(read.flip());
            ChunkHeader chunk = decodeChunkHeader(peer.read(STRUCTURED_HEADER_LENGTH));
            assertEquals(8, chunk.cookie());
            assertEquals(4096, peer.read(8).getLong());
            assertArrayEquals(NbdServerTest.bytesOf(NbdServerTest.pattern(100_000, 5)), peer.read(100_000).array());
            ByteBuffer disc = ByteBuffer.allocate(REQUEST_LENGTH);
            encodeRequest(disc, 0, CMD_DISC, 9, 0, 0);
            peer.send(disc.flip());
            assertEquals(-1, tls.read(ByteBuffer.allocate(1)), "close_notify after DISC");
        }
        assertTrue(image.flushes >= 1);
    }

    /** The client's side of a STARTTLS sent in one write with its ClientHello, without waiting for the ACK. */
    static final class EagerStartTls implements ByteChannel {
        private final SocketChannel socket;
        private boolean sent;
        private boolean acked;

        EagerStartTls(SocketChannel socket) {
            this.socket = socket;
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            int n = src.remaining();
            if (!sent) {
                sent = true;
                ByteBuffer[] both = {ByteBuffer.wrap(HEX.parseHex(STARTTLS)), src};
                while (both[1].hasRemaining()) {
                    socket.write(both);
                }
                return n;
            }
            return socket.write(src);
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            if (!acked) {
                ByteBuffer ack = ByteBuffer.allocate(OPTION_REPLY_HEADER_LENGTH);
                while (ack.hasRemaining() && socket.read(ack) >= 0) {
                    // the plaintext ACK comes before any TLS byte
                }
                assertEquals(STARTTLS_ACK, HEX.formatHex(ack.array()));
                acked = true;
            }
            return socket.read(dst);
        }

        @Override public boolean isOpen() { return socket.isOpen(); }
        @Override public void close() throws IOException { socket.close(); }
    }

    @Test
    void shouldTakeAClientHelloSentRightBehindStartTls() throws IOException {
        SocketChannel ch = RawPeer.open(socket);
        try (RawPeer peer = new RawPeer(ch)) {
            peer.greet();
            peer.useTls(new TlsChannel(new EagerStartTls(ch), Fixtures.client("good").clientEngine("localhost"), ByteBuffer.allocate(0)));
            peer.option(OPT_LIST, new byte[0]);
            assertEquals(REP_SERVER, peer.skipReply().replyType());
            assertEquals(REP_ACK, peer.skipReply().replyType());
        }
    }

    @Test
    void shouldRefuseClientsWithoutATrustedCertificateAndGoOnServing() throws Exception {
        Path noCert = tmp.resolve("no-cert");
        java.nio.file.Files.createDirectories(noCert);
        java.nio.file.Files.copy(Fixtures.dir("good").resolve("ca-cert.pem"), noCert.resolve("ca-cert.pem"));
        List<javax.net.ssl.SSLEngine> refused = List.of(Fixtures.insistentClient("rogue"),
                TlsCredentials.load("tls0", noCert, ferry.tls.TlsEndpoint.CLIENT, true, true).clientEngine("localhost"));
        List<String> alerts = List.of("certificate_unknown", "certificate_required");
        for (int i = 0; i < refused.size(); i++) {
            javax.net.ssl.SSLEngine client = refused.get(i);
            try (RawPeer peer = peer(socket)) {
                // TLS 1.3: the client's handshake ends before the server has checked its certificate,
                // so the server's fatal alert reaches it on its first read
                IOException e = assertThrows(IOException.class, () -> peer.startTls(client).read(ByteBuffer.allocate(1)));
                assertTrue(e.getMessage().contains(alerts.get(i)), e.getMessage());
            }
        }
        try (RawPeer peer = peer(socket)) {
            peer.startTls(Fixtures.client("good").clientEngine("localhost"));
            peer.option(OPT_LIST, new byte[0]);
            assertEquals(REP_SERVER, peer.skipReply().replyType());
        }
    }

    @Test
    void shouldSayWhyWhenAClientSendsNoCertificate() throws Exception {
        List<String> lines = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.logging.Logger log = java.util.logging.Logger.getLogger(Connection.class.getName());
        java.util.logging.Handler handler = new java.util.logging.Handler() {
            @Override public void publish(java.util.logging.LogRecord r) { lines.add(r.getMessage()); }
            @Override public void flush() { }
            @Override public void close() { }
        };
        log.addHandler(handler);
        try {
            Path noCert = java.nio.file.Files.createDirectories(tmp.resolve("no-cert"));
            java.nio.file.Files.copy(Fixtures.dir("good").resolve("ca-cert.pem"), noCert.resolve("ca-cert.pem"));
            try (RawPeer peer = peer(socket)) {
                SSLEngine engine = TlsCredentials.load("tls0", noCert, ferry.tls.TlsEndpoint.CLIENT, true, true).clientEngine("localhost");
                assertThrows(IOException.class, () -> peer.startTls(engine).read(ByteBuffer.allocate(1)));
            }
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (lines.stream().noneMatch(l -> l.contains("nbd connection closed")) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            String closed = lines.stream().filter(l -> l.contains("nbd connection closed")).findFirst().orElse("none: " + lines);
            assertTrue(closed.contains("certificate_required") && closed.contains(Handshake.NO_CLIENT_CERTIFICATE_HINT), closed);
        } finally {
            log.removeHandler(handler);
        }
    }

    @Test
    void shouldServeAClientWithoutCertificateWhenVerifyPeerIsOff() throws IOException {
        Path noCert = tmp.resolve("no-cert");
        java.nio.file.Files.createDirectories(noCert);
        java.nio.file.Files.copy(Fixtures.dir("good").resolve("ca-cert.pem"), noCert.resolve("ca-cert.pem"));
        try (NbdServer open = NbdServer.unix(tmp.resolve("open.sock"), List.of(new NbdExport("disk", image, true)))
                .tls(Fixtures.server(false)).start();
             RawPeer peer = peer(open.socketPath())) {
            TlsChannel tls = peer.startTls(TlsCredentials.load("tls0", noCert, ferry.tls.TlsEndpoint.CLIENT, true, true).clientEngine("localhost"));
            assertEquals("CN=localhost", tls.peerSubject());
            peer.option(OPT_LIST, new byte[0]);
            assertEquals(REP_SERVER, peer.skipReply().replyType());
        }
    }

    @Test
    void shouldTakeOnlyServerCredentialsAndOnlyBeforeStart() throws IOException {
        NbdServer other = NbdServer.unix(tmp.resolve("x.sock"), List.of(new NbdExport("disk", image, false)));
        assertThrows(IllegalArgumentException.class, () -> other.tls(Fixtures.client("good")));
        assertThrows(IllegalStateException.class, () -> server.tls(Fixtures.server(true)));
    }
}
