package ferry.nbd;

import static ferry.nbd.NbdWire.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Seeded fuzzing: random and mutated handshakes and requests on fresh connections to a read-only
 * export (nothing a mutation produces may change it) and to a writable one with requests that are
 * never valid writes. Afterwards both images are unchanged and a good client is served. The same
 * {@link #CONNECTIONS} cases run every time, however fast the machine (about 3 s on 2 busy cores).
 */
class NbdFuzzTest {
    private static final long SEED = 20261126L;
    private static final int CONNECTIONS = 1500;
    /** Only bounds the run, so that a server that stopped answering cannot hang the build. */
    private static final long LIMIT_NS = 60_000_000_000L;
    @TempDir Path tmp;

    @Test
    void shouldSurviveGarbageAndLeaveImagesUnchanged() throws Exception {
        MemoryImage ro = new MemoryImage(1 << 20, true);
        MemoryImage rw = new MemoryImage(1 << 20, false);
        Path socket = tmp.resolve("fuzz.sock");
        Random random = new Random(SEED);
        int connections = 0;
        try (NbdServer server = NbdServer.unix(socket, List.of(new NbdExport("ro", ro, true), new NbdExport("rw", rw, false))).start()) {
            long deadline = System.nanoTime() + LIMIT_NS;
            while (connections < CONNECTIONS && System.nanoTime() < deadline) {
                connections++;
                try (SocketChannel ch = RawPeer.open(socket); RawPeer peer = new RawPeer(ch)) {
                    switch (random.nextInt(3)) {
                        case 0 -> peer.send(ByteBuffer.wrap(randomBytes(random, 1 + random.nextInt(200))));
                        case 1 -> peer.send(mutate(random, handshake(random)));
                        default -> {
                            boolean toRw = random.nextBoolean();
                            peer.handshake(toRw ? "rw" : "ro", random.nextBoolean());
                            peer.send(requests(random, toRw));
                        }
                    }
                    drainBriefly(ch);
                } catch (IOException expected) {
                    // the server may hang up on garbage at any point: that is the point
                }
            }
            assertArrayEquals(new byte[1 << 20], ro.snapshot(), "read-only export unchanged");
            assertArrayEquals(new byte[1 << 20], rw.snapshot(), "no mutation was a valid write");
            try (NbdClient c = NbdClient.unix(socket, "rw", true)) {
                c.write(0, NbdServerTest.pattern(4096, 1), 0);
                ByteBuffer back = ByteBuffer.allocateDirect(4096);
                c.read(0, back);
                assertEquals(NbdServerTest.pattern(4096, 1), back.flip());
            }
        }
        assertEquals(CONNECTIONS, connections, "the fuzzed cases did not all run within " + LIMIT_NS / 1_000_000_000L + " s");
    }

    /** A plausible handshake: flags, a few options, GO. */
    private static ByteBuffer handshake(Random random) {
        ByteBuffer b = ByteBuffer.allocate(4096);
        b.putInt(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        int options = 1 + random.nextInt(4);
        for (int i = 0; i < options; i++) {
            int option = random.nextInt(13);
            byte[] data = option == OPT_GO || option == OPT_INFO ? NbdServerTest.goData(random.nextBoolean() ? "ro" : "x")
                    : option == OPT_SET_META_CONTEXT || option == OPT_LIST_META_CONTEXT ? NbdServerTest.metaData("ro", META_BASE_ALLOCATION)
                    : randomBytes(random, random.nextInt(8));
            encodeOptionHeader(b, option, data.length);
            b.put(data);
        }
        return b.flip();
    }

    /**
     * Requests that must not change a writable image: reads, flushes, block status, and writes or
     * zeroes that are out of bounds or carry unknown flags; to the read-only export, anything.
     */
    private static ByteBuffer requests(Random random, boolean writable) {
        ByteBuffer b = ByteBuffer.allocate(64 << 10);
        int count = 1 + random.nextInt(20);
        for (int i = 0; i < count && b.remaining() > 8192; i++) {
            int type = random.nextInt(10);
            int flags = random.nextInt(1 << 6);
            long offset = random.nextBoolean() ? random.nextInt(1 << 20) : random.nextLong();
            long length = random.nextBoolean() ? random.nextInt(8192) : random.nextInt() & 0xffffffffL;
            boolean mutatesData = type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES;
            if (writable && mutatesData) {
                offset = (1 << 20) - 10;   // past the end: rejected
                length = 11 + random.nextInt(4000);
            }
            int payload = type == CMD_WRITE ? (int) Math.min(length, 4096) : 0;
            encodeRequest(b, flags, type, i, offset, length);
            b.put(randomBytes(random, payload));
            // Corrupt the read-only export's requests only: a flipped byte could make a valid write.
            if (!writable && random.nextInt(10) == 0) {
                b.put(b.position() - 1 - random.nextInt(Math.min(b.position(), 28)), (byte) random.nextInt());
            }
        }
        return b.flip();
    }

    private static ByteBuffer mutate(Random random, ByteBuffer b) {
        int flips = 1 + random.nextInt(4);
        for (int i = 0; i < flips && b.limit() > 0; i++) {
            b.put(random.nextInt(b.limit()), (byte) random.nextInt());
        }
        if (random.nextBoolean()) {
            b.limit(random.nextInt(b.limit() + 1));   // truncated
        }
        return b;
    }

    private static byte[] randomBytes(Random random, int n) {
        byte[] bytes = new byte[n];
        random.nextBytes(bytes);
        return bytes;
    }

    /** Reads whatever the server says for a moment, so replies never block it. */
    private static void drainBriefly(SocketChannel ch) throws IOException {
        ch.configureBlocking(false);
        ByteBuffer b = ByteBuffer.allocate(64 << 10);
        long until = System.nanoTime() + 2_000_000L;
        while (System.nanoTime() < until) {
            b.clear();
            if (ch.read(b) < 0) {
                return;
            }
        }
    }
}
