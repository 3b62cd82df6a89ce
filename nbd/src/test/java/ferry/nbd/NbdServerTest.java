package ferry.nbd;

import static ferry.nbd.NbdWire.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class NbdServerTest {
    static final int SIZE = 4 << 20;
    @TempDir Path tmp;
    MemoryImage image;
    MemoryImage readOnlyImage;
    NbdServer server;
    Path socket;

    @BeforeEach
    void start() throws IOException {
        image = new MemoryImage(SIZE, false);
        readOnlyImage = new MemoryImage(SIZE, true);
        socket = tmp.resolve("nbd.sock");
        server = NbdServer.unix(socket, List.of(new NbdExport("disk", image, false), new NbdExport("ro", readOnlyImage, true))).start();
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
    }

    static ByteBuffer pattern(int length, int seed) {
        ByteBuffer b = ByteBuffer.allocateDirect(length);
        for (int i = 0; i < length; i++) {
            b.put((byte) (i * 7 + seed));
        }
        return b.flip();
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void shouldWriteAndReadBackWithSimpleAndStructuredReplies(boolean structured) throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "disk", structured)) {
            assertEquals(SIZE, c.size());
            assertEquals(structured, c.structured());
            int flags = c.transmissionFlags();
            for (int f : new int[] {FLAG_HAS_FLAGS, FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES,
                    FLAG_SEND_FAST_ZERO, FLAG_CAN_MULTI_CONN}) {
                assertNotEquals(0, flags & f, "flag " + f);
            }
            assertEquals(0, flags & FLAG_READ_ONLY);
            c.write(12345, pattern(300_000, 3), CMD_FLAG_FUA);
            ByteBuffer back = ByteBuffer.allocateDirect(300_000);
            c.read(12345, back);
            assertEquals(pattern(300_000, 3), back.flip());
            assertTrue(image.flushes >= 1, "FUA flushes");
            c.flush();
        }
        assertArrayEquals(bytesOf(pattern(300_000, 3)), Arrays.copyOfRange(image.snapshot(), 12345, 312345));
    }

    @Test
    void shouldReadHolesAsZeroesThroughStructuredChunks() throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "disk", true)) {
            c.write(0, pattern(SIZE, 1), 0);
            c.trim(64 << 10, 128 << 10, 0);          // a hole in the middle of a 1 MiB read
            c.writeZeroes(512 << 10, 4096, CMD_FLAG_NO_HOLE);
            ByteBuffer back = ByteBuffer.allocateDirect(1 << 20);
            c.read(0, back);
            ByteBuffer expected = pattern(SIZE, 1).limit(1 << 20);
            byte[] e = bytesOf(expected);
            Arrays.fill(e, 64 << 10, 192 << 10, (byte) 0);
            Arrays.fill(e, 512 << 10, (512 << 10) + 4096, (byte) 0);
            assertArrayEquals(e, bytesOf(back.flip()));
        }
    }

    @Test
    void shouldReportAllocationAsBlockStatus() throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "disk", true)) {
            assertTrue(c.canBlockStatus());
            c.write(1 << 20, pattern(8192, 0), 0);
            List<NbdClient.StatusExtent> map = c.blockStatus(0, SIZE, 0);
            assertEquals(List.of(new NbdClient.StatusExtent(1 << 20, STATE_HOLE | STATE_ZERO),
                    new NbdClient.StatusExtent(8192, 0),
                    new NbdClient.StatusExtent(SIZE - (1 << 20) - 8192, STATE_HOLE | STATE_ZERO)), map);
            assertEquals(List.of(new NbdClient.StatusExtent(1 << 20, STATE_HOLE | STATE_ZERO)), c.blockStatus(0, SIZE, CMD_FLAG_REQ_ONE));
        }
    }

    @Test
    void shouldRefuseBlockStatusWithoutMetaContext() throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "disk", false)) {
            NbdException e = assertThrows(NbdException.class, () -> c.blockStatus(0, 4096, 0));
            assertEquals(EINVAL, e.error());
            c.flush();   // still served
        }
    }

    @Test
    void shouldRejectWriteOnReadOnlyExport() throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "ro", true)) {
            assertNotEquals(0, c.transmissionFlags() & FLAG_READ_ONLY);
            assertEquals(EPERM, assertThrows(NbdException.class, () -> c.write(0, pattern(4096, 1), 0)).error());
            assertEquals(EPERM, assertThrows(NbdException.class, () -> c.trim(0, 4096, 0)).error());
            assertEquals(EPERM, assertThrows(NbdException.class, () -> c.writeZeroes(0, 4096, 0)).error());
            c.read(0, ByteBuffer.allocateDirect(4096));
        }
        assertArrayEquals(new byte[SIZE], readOnlyImage.snapshot());
    }

    @Test
    void shouldRejectOutOfBoundsAndOversizedRequestsAndGoOn() throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "disk", true)) {
            assertEquals(EINVAL, assertThrows(NbdException.class, () -> c.read(SIZE - 10, ByteBuffer.allocateDirect(11))).error());
            assertEquals(ENOSPC, assertThrows(NbdException.class, () -> c.write(SIZE - 1, pattern(2, 0), 0)).error());
            assertEquals(ENOSPC, assertThrows(NbdException.class, () -> c.writeZeroes(-4096L, 4096, 0)).error());
            assertEquals(EINVAL, assertThrows(NbdException.class, () -> c.trim(SIZE, 1, 0)).error());
            assertEquals(EINVAL, assertThrows(NbdException.class, () -> c.trim(0, 4096, 1 << 9)).error());
            c.write(SIZE - 4096, pattern(4096, 9), 0);
        }
        assertArrayEquals(bytesOf(pattern(4096, 9)), Arrays.copyOfRange(image.snapshot(), SIZE - 4096, SIZE));
    }

    @Test
    void shouldRefuseFastZeroWhenZeroingWouldWrite() throws IOException {
        try (NbdClient c = NbdClient.unix(socket, "disk", false)) {
            c.write(0, pattern(8192, 5), 0);
            NbdException e = assertThrows(NbdException.class, () -> c.writeZeroes(0, 8192, CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE));
            assertEquals(ENOTSUP, e.error());
            assertEquals(pattern(8192, 5).get(100), image.snapshot()[100], "refused fast zero leaves data");
            c.writeZeroes(0, 8192, CMD_FLAG_FAST_ZERO);
            assertArrayEquals(new byte[8192], Arrays.copyOf(image.snapshot(), 8192));
        }
    }

    @Test
    void shouldServeManyClientsAtOnce() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(6);
        try {
            List<Future<Void>> results = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                int n = i;
                results.add(pool.submit((Callable<Void>) () -> {
                    try (NbdClient c = NbdClient.unix(socket, "disk", n % 2 == 0)) {
                        for (int round = 0; round < 20; round++) {
                            long offset = (long) n * (512 << 10) + round * 8192L;
                            c.write(offset, pattern(8192, n + round), 0);
                            ByteBuffer back = ByteBuffer.allocateDirect(8192);
                            c.read(offset, back);
                            assertEquals(pattern(8192, n + round), back.flip());
                        }
                    }
                    return null;
                }));
            }
            for (Future<Void> f : results) {
                f.get(30, java.util.concurrent.TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void shouldAnswerPipelinedRequestsConcurrently() throws IOException {
        try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
            peer.handshake("disk", false);
            ByteBuffer out = ByteBuffer.allocate(64 * (REQUEST_LENGTH + 4096));
            for (int i = 0; i < 64; i++) {
                encodeRequest(out, 0, CMD_WRITE, 1000 + i, i * 4096L, 4096);
                out.put(bytesOf(pattern(4096, i)));
            }
            peer.send(out.flip());
            boolean[] seen = new boolean[64];
            for (int i = 0; i < 64; i++) {
                SimpleReply r = decodeSimpleReply(peer.read(SIMPLE_REPLY_LENGTH));
                assertEquals(SIMPLE_REPLY_MAGIC, r.magic());
                assertEquals(0, r.error());
                seen[(int) r.cookie() - 1000] = true;
            }
            for (boolean s : seen) {
                assertTrue(s);
            }
        }
        for (int i = 0; i < 64; i++) {
            assertEquals(pattern(4096, i).get(17), image.snapshot()[i * 4096 + 17]);
        }
    }

    @Test
    void shouldRunALoneRequestOnTheReaderAndPipelinedOnesOnWorkers() throws IOException {
        try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
            peer.handshake("disk", false);
            for (int i = 0; i < 3; i++) {
                ByteBuffer one = ByteBuffer.allocate(REQUEST_LENGTH + 4096);
                encodeRequest(one, 0, CMD_WRITE, 7 + i, i * 4096L, 4096);
                one.put(bytesOf(pattern(4096, 9 + i)));
                peer.send(one.flip());
                SimpleReply r = decodeSimpleReply(peer.read(SIMPLE_REPLY_LENGTH));
                assertEquals(7 + i, r.cookie());
                assertEquals(0, r.error());
            }
            assertEquals(1, image.writerThreads.size(), "queue depth 1 runs on the reader: " + image.writerThreads);
            assertTrue(image.writerThreads.iterator().next().matches("nbd-conn-\\d+"), image.writerThreads.toString());
            image.writerThreads.clear();
            ByteBuffer out = ByteBuffer.allocate(64 * (REQUEST_LENGTH + 4096));
            for (int i = 0; i < 64; i++) {
                encodeRequest(out, 0, CMD_WRITE, 100 + i, i * 4096L, 4096);
                out.put(bytesOf(pattern(4096, i)));
            }
            peer.send(out.flip());
            for (int i = 0; i < 64; i++) {
                assertEquals(0, decodeSimpleReply(peer.read(SIMPLE_REPLY_LENGTH)).error());
            }
            assertTrue(image.writerThreads.stream().anyMatch(n -> n.contains("-io-")),
                    "pipelined requests reach the workers: " + image.writerThreads);
        }
        byte[] snapshot = image.snapshot();
        for (int i = 0; i < 64; i++) {
            assertEquals(pattern(4096, i).get(4000), snapshot[i * 4096 + 4000], "block " + i);
        }
    }

    @Test
    void shouldListExportsAndRefuseUnknownOptions() throws IOException {
        try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
            peer.greet();
            peer.option(OPT_LIST, new byte[0]);
            List<String> names = new ArrayList<>();
            OptionReplyHeader r;
            while ((r = peer.optionReply()).replyType() == REP_SERVER) {
                ByteBuffer data = peer.read((int) r.length());
                names.add(getString(data));
            }
            assertEquals(REP_ACK, r.replyType());
            assertEquals(List.of("disk", "ro"), names);
            peer.option(99, new byte[] {1, 2, 3});
            assertEquals(REP_ERR_UNSUP, peer.skipReply().replyType());
            peer.option(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_UNSUP, peer.skipReply().replyType());
            peer.option(OPT_LIST, new byte[] {1});
            assertEquals(REP_ERR_INVALID, peer.skipReply().replyType());
            peer.option(OPT_GO, new byte[] {0, 0, 0, 9, 'x'});   // name length past the option
            assertEquals(REP_ERR_INVALID, peer.skipReply().replyType());
            peer.option(OPT_GO, goData("nope"));
            assertEquals(REP_ERR_UNKNOWN, peer.skipReply().replyType());
            peer.option(OPT_SET_META_CONTEXT, metaData("disk", META_BASE_ALLOCATION));   // before STRUCTURED_REPLY
            assertEquals(REP_ERR_INVALID, peer.skipReply().replyType());
            peer.option(OPT_LIST_META_CONTEXT, metaData("disk"));
            assertEquals(REP_META_CONTEXT, peer.skipReply().replyType());
            assertEquals(REP_ACK, peer.skipReply().replyType());
            peer.option(OPT_ABORT, new byte[0]);
            assertEquals(REP_ACK, peer.skipReply().replyType());
            assertTrue(peer.atEnd(), "server closes after ABORT");
        }
    }

    @Test
    void shouldRefuseOversizedOptionWithoutReadingItIntoMemory() throws IOException {
        try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
            peer.greet();
            ByteBuffer header = ByteBuffer.allocate(OPTION_HEADER_LENGTH);
            encodeOptionHeader(header, OPT_GO, 1 << 20);
            peer.send(header.flip());
            peer.send(ByteBuffer.allocate(1 << 20));
            assertEquals(REP_ERR_TOO_BIG, peer.skipReply().replyType());
            peer.option(OPT_GO, goData("disk"));
            assertEquals(REP_INFO, peer.skipReply().replyType());
        }
    }

    @Test
    void shouldCloseOnNonFixedNewstyleClient() throws IOException {
        try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
            ByteBuffer greeting = peer.read(18);
            assertEquals(NBDMAGIC, greeting.getLong());
            assertEquals(IHAVEOPT, greeting.getLong());
            peer.send(ByteBuffer.allocate(4).putInt(0).flip());
            assertTrue(peer.atEnd());
        }
    }

    @Test
    void shouldDisconnectOnWriteLongerThanTheMaximum() throws IOException {
        try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
            peer.handshake("disk", false);
            ByteBuffer out = ByteBuffer.allocate(REQUEST_LENGTH);
            encodeRequest(out, 0, CMD_WRITE, 1, 0, MAX_PAYLOAD_LENGTH + 1L);
            peer.send(out.flip());
            assertTrue(peer.atEnd());
        }
        try (NbdClient c = NbdClient.unix(socket, "disk", true)) {
            c.flush();
        }
        assertArrayEquals(new byte[SIZE], image.snapshot());
    }

    @Test
    void shouldSupportExportNameOptionAndTcp() throws IOException {
        try (NbdServer tcp = NbdServer.tcp("127.0.0.1", 0, List.of(new NbdExport("t", image, false))).start()) {
            assertTrue(tcp.port() > 0);
            try (SocketChannel ch = SocketChannel.open(new java.net.InetSocketAddress("127.0.0.1", tcp.port()));
                 RawPeer peer = new RawPeer(ch)) {
                peer.greet();
                peer.option(OPT_EXPORT_NAME, "t".getBytes(StandardCharsets.UTF_8));
                ByteBuffer b = peer.read(10);
                assertEquals(SIZE, b.getLong());
                assertNotEquals(0, b.getShort() & FLAG_HAS_FLAGS);
            }
        }
    }

    @Test
    void shouldCloseConnectionsAndRemoveSocketOnClose() throws IOException {
        NbdClient c = NbdClient.unix(socket, "disk", true);
        server.close();
        assertFalse(Files.exists(socket));
        assertThrows(NbdException.class, c::flush);
        assertEquals(0, server.connectionCount());
    }

    @Test
    void shouldReplaceAStaleSocketButNothingElse() throws IOException {
        Path stale = tmp.resolve("stale.sock");
        try (ServerSocketChannel gone = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            gone.bind(UnixDomainSocketAddress.of(stale));   // closing leaves the file: a stale socket
        }
        try (NbdServer again = NbdServer.unix(stale, List.of(new NbdExport("disk", image, false))).start();
             NbdClient c = NbdClient.unix(again.socketPath(), "disk", false)) {
            assertEquals(SIZE, c.size());
        }

        Path file = Files.writeString(tmp.resolve("notes.txt"), "precious");
        Path dir = Files.createDirectory(tmp.resolve("dir"));
        Path link = Files.createSymbolicLink(tmp.resolve("link.sock"), socket);
        for (Path p : List.of(socket, file, dir, link)) {
            NbdServer other = NbdServer.unix(p, List.of(new NbdExport("disk", image, false)));
            IOException e = assertThrows(IOException.class, other::start, p.toString());
            assertTrue(e.getMessage().startsWith("nbd listen failed: path=" + p), e.getMessage());
            assertTrue(e.getMessage().contains(p == socket ? "is in use" : p == file ? "a regular file"
                    : p == dir ? "a directory" : "a symbolic link"), e.getMessage());
            other.close();
        }
        assertEquals("precious", Files.readString(file));
        assertTrue(Files.isDirectory(dir));
        assertTrue(Files.isSymbolicLink(link));
        try (NbdClient c = NbdClient.unix(socket, "disk", false)) {   // the live server still serves
            c.flush();
        }
    }

    static byte[] goData(String name) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(4 + n.length + 2).putInt(n.length).put(n).putShort((short) 0).array();
    }

    static byte[] metaData(String name, String... queries) {
        ByteBuffer b = ByteBuffer.allocate(1024);
        putString(b, name);
        b.putInt(queries.length);
        for (String q : queries) {
            putString(b, q);
        }
        return Arrays.copyOf(b.array(), b.position());
    }

    static byte[] bytesOf(ByteBuffer b) {
        byte[] out = new byte[b.remaining()];
        b.duplicate().get(out);
        return out;
    }

    @Test
    void shouldKeepAClientBeyondTheConnectionLimitWaitingUntilASlotFrees() throws Exception {
        Path limited = tmp.resolve("limited.sock");
        try (NbdServer one = NbdServer.unix(limited, List.of(new NbdExport("disk", image, false))).maxConnections(1).start();
                SocketChannel second = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            SocketChannel first = SocketChannel.open(StandardProtocolFamily.UNIX);
            first.connect(UnixDomainSocketAddress.of(limited));
            ByteBuffer greeting = ByteBuffer.allocate(8);
            first.read(greeting);
            assertTrue(greeting.position() > 0, "the first client is greeted");
            second.connect(UnixDomainSocketAddress.of(limited));   // the kernel's backlog takes it
            second.configureBlocking(false);
            Thread.sleep(300);
            assertEquals(0, second.read(ByteBuffer.allocate(8)), "no greeting while the one slot is taken");
            first.close();
            second.configureBlocking(true);
            ByteBuffer late = ByteBuffer.allocate(8);
            assertTrue(second.read(late) > 0, "greeted once the first client left");
        }
    }
}
