package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The receiver state machine of docs/migration-protocol.md, driven frame by frame by a hand-written
 * source over loopback TCP against the real {@link MigrationDestination} (with the stand-in QEMU):
 * what each state accepts, and that a refused frame ends the attempt with an ERROR frame.
 */
class DestinationStateTest {
    private static final int GRANULE = 64 << 10;
    private static final long DISK_SIZE = 1 << 20;

    @TempDir Path tmp;
    private FakeQemu.Destination host;
    private MigrationDestination destination;
    private SocketChannel channel;
    private FrameWriter writer;
    private FrameReader reader;

    @BeforeEach
    void setUp() throws Exception {
        host = new FakeQemu.Destination(tmp);
        destination = new MigrationDestination("127.0.0.1", 0, host);
        destination.start();
        channel = SocketChannel.open(new InetSocketAddress("127.0.0.1", destination.port()));
        channel.socket().setSoTimeout(20_000);                  // bounds every read below
        writer = new FrameWriter(channel, new RateLimiter(Long.MAX_VALUE / 4));
        reader = new FrameReader(Channels.newChannel(channel.socket().getInputStream()));
    }

    @AfterEach
    void tearDown() throws Exception {
        channel.close();
        destination.close();
    }

    private static Frame.Hello hello(int version) {
        return new Frame.Hello(version, "vm", GRANULE, true, false,
                List.of(new Frame.DiskOffer("disk0", DISK_SIZE, "raw", Optional.empty())), ferry.migration.wire.VmFingerprint.of());
    }

    private void handshake() throws Exception {
        writer.send(hello(MigrationWire.VERSION));
        assertEquals(List.of(true), assertInstanceOf(Frame.Welcome.class, reader.next()).freshDisks());
    }

    /** The next frame that is not RAM traffic: the destination QEMU's return path may interleave RAM and RAM_EOF. */
    private Frame nextControl() throws Exception {
        for (int i = 0; i < 10_000; i++) {
            Frame frame = reader.next();
            if (!(frame instanceof Frame.Ram) && !(frame instanceof Frame.RamEof)) {
                return frame;
            }
        }
        throw new AssertionError("only RAM frames from the destination");
    }

    private String refusal() throws Exception {
        Frame.Error error = assertInstanceOf(Frame.Error.class, nextControl());
        return error.message();
    }

    /** The session sends ERROR first and aborts the prepared VM right after. */
    private String awaitAborted() throws InterruptedException {
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (host.last().aborted.get() == null && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        return host.last().aborted.get();
    }

    /** Sends the whole disk as data and returns its group digests as the source computes them. */
    private int[] sendDisk() throws Exception {
        byte[] data = new byte[(int) DISK_SIZE];
        new Random(5).nextBytes(data);
        GranuleDigests digests = new GranuleDigests(DISK_SIZE, GRANULE);
        writer.send(new Frame.BlockData(0, 0, ByteBuffer.wrap(data, 0, GRANULE * 4)));
        writer.send(new Frame.BlockZero(0, GRANULE * 4, GRANULE * 2));
        writer.send(new Frame.BlockData(0, GRANULE * 6, ByteBuffer.wrap(data, GRANULE * 6, (int) DISK_SIZE - GRANULE * 6)));
        digests.recordData(0, ByteBuffer.wrap(data, 0, GRANULE * 4));
        digests.recordZero(4, 2);
        digests.recordData(6, ByteBuffer.wrap(data, GRANULE * 6, (int) DISK_SIZE - GRANULE * 6));
        writer.send(new Frame.PassEnd(0, 0));
        return digests.groupDigests();
    }

    private void sendRamAndDeviceState() throws Exception {
        writer.send(new Frame.Ram(ByteBuffer.wrap(FakeQemu.RAM)));
        writer.send(new Frame.Ram(ByteBuffer.wrap(FakeQemu.DEVICE_STATE)));
        writer.send(new Frame.RamEof());
    }

    @Test
    void shouldRunTheVmAfterVerifiedDisksAndCommit() throws Exception {
        handshake();
        int[] groups = sendDisk();
        writer.send(new Frame.DisksDone(List.of(groups)));
        assertInstanceOf(Frame.Verified.class, nextControl());
        sendRamAndDeviceState();
        assertInstanceOf(Frame.DestReady.class, nextControl());
        writer.send(new Frame.Commit());
        Frame answer = nextControl();
        assertInstanceOf(Frame.Running.class, answer, () -> "answer: " + answer);
        assertTrue(destination.awaitCompleted(20_000));
        assertTrue(host.last().resumed.get());
    }

    @Test
    void shouldKeepTheVmAfterCommitWhateverFailsNext() throws Exception {
        host.failResume = true;                            // cont refused after COMMIT: the worst case
        handshake();
        writer.send(new Frame.DisksDone(List.of(sendDisk())));
        assertInstanceOf(Frame.Verified.class, nextControl());
        sendRamAndDeviceState();
        assertInstanceOf(Frame.DestReady.class, nextControl());
        writer.send(new Frame.Commit());
        channel.close();                                   // and the source is gone
        assertTrue(destination.awaitCompleted(20_000), "the destination must keep the VM it was handed");
        assertTrue(destination.runningVm().isPresent());
        assertEquals(null, host.last().aborted.get(), "a VM handed over by COMMIT was stopped or removed");
        assertTrue(Files.exists(host.last().paths.get(0)), "the disk of a committed VM was removed");
    }

    @Test
    void shouldRefuseAnUnknownVersion() throws Exception {
        writer.send(hello(MigrationWire.VERSION + 1));
        assertEquals("unsupported protocol version 4 (this destination speaks 3)", refusal());
        assertTrue(host.prepared.isEmpty(), "nothing may be prepared for a version we do not speak");
    }

    @Test
    void shouldRefuseAVersionOneSourceWhichSendsNoFingerprint() throws Exception {
        writer.send(hello(1));
        assertEquals("unsupported protocol version 1 (this destination speaks 3)", refusal());
        assertTrue(host.prepared.isEmpty(), "nothing may be prepared for a version we do not speak");
    }

    @Test
    void shouldRefuseBlocksBeforeHello() throws Exception {
        writer.send(new Frame.BlockZero(0, 0, GRANULE));
        assertEquals("protocol error: unexpected BLOCK_ZERO frame in state AWAIT_HELLO", refusal());
    }

    @Test
    void shouldRefuseAKeepaliveBeforeHelloSoThatItCannotHoldTheListener() throws Exception {
        writer.send(new Frame.PassEnd(0, 0));
        assertEquals("protocol error: unexpected PASS_END frame in state AWAIT_HELLO", refusal());
        assertTrue(host.prepared.isEmpty());
    }

    @Test
    void shouldEndASessionWithoutACompleteHelloAfterItsDeadline() throws Exception {
        destination.helloTimeoutMs(1_000);
        long startNs = System.nanoTime();
        ByteBuffer partial = ByteBuffer.wrap(new byte[] {0x46, 0x45, 0x52});   // three bytes of a header, then nothing
        channel.write(partial);
        assertThrows(java.io.EOFException.class, reader::next, "the destination closes the connection");
        long ms = (System.nanoTime() - startNs) / 1_000_000;
        String message = "";
        for (long until = System.nanoTime() + 5_000_000_000L; message.isEmpty() && System.nanoTime() < until; Thread.sleep(10)) {
            message = destination.stats().report().error().orElse("");   // set right after the close
        }
        assertTrue(message.contains("sent no complete HELLO within 1000 ms"), message);
        assertTrue(ms >= 900, ms + " ms: ended before its deadline");   // the message above says it was the deadline, not a timeout
        assertTrue(host.prepared.isEmpty());
        handshakeFromANewConnection();
    }

    @Test
    void shouldRefuseWhatHelloCannotAskForBeforeAnythingIsPrepared() throws Exception {
        record Case(int granule, long size, String expected) {}
        for (Case c : List.of(
                new Case(2048, DISK_SIZE, "bad granule size 2048: a power of two from 4096 to 16777216 is needed"),
                new Case(-2147483648, DISK_SIZE, "bad granule size 2147483648"),
                new Case(3 << 12, DISK_SIZE, "bad granule size 12288"),
                new Case(GRANULE, 0, "disk disk0: size 0 is out of range"),
                new Case(GRANULE, -1, "disk disk0: size 18446744073709551615 is out of range"),
                new Case(GRANULE, MigrationWire.MAX_DISK_SIZE + 1, "is out of range"),
                new Case(4096, 16L << 40, "would not fit one DISKS_DONE frame: migrate with granule-size 8192 or more"))) {
            Frame.Error error = assertInstanceOf(Frame.Error.class, offer(new Frame.Hello(MigrationWire.VERSION, "vm", c.granule(), true,
                    false, List.of(new Frame.DiskOffer("disk0", c.size(), "raw", Optional.empty())), ferry.migration.wire.VmFingerprint.of())));
            assertTrue(error.message().contains(c.expected()), c + ": " + error.message());
        }
        assertTrue(host.prepared.isEmpty(), "nothing may be prepared for an offer out of bounds");
    }

    @Test
    void shouldAnswerBusyAtOnceWhileASessionRunsAndServeTheNextSourceAfterIt() throws Exception {
        handshake();                                          // the first session holds the destination
        for (int i = 0; i < 3; i++) {
            SocketChannel other = SocketChannel.open(new InetSocketAddress("127.0.0.1", destination.port()));
            other.socket().setSoTimeout(20_000);
            new FrameWriter(other, new RateLimiter(Long.MAX_VALUE / 4)).send(hello(MigrationWire.VERSION));
            Frame.Error busy = assertInstanceOf(Frame.Error.class, new FrameReader(Channels.newChannel(other.socket().getInputStream())).next());
            assertTrue(busy.message().startsWith("busy: this destination is receiving another migration"), busy.message());
            assertTrue(destination.sessionRunning(), "busy must be answered while the first session still holds the destination");
            other.close();
        }
        assertEquals(1, host.prepared.size(), "a busy answer prepares nothing");
        writer.send(new Frame.Cancel("done"));
        assertNotNull(awaitAborted());
        handshakeFromANewConnection();
    }

    @Test
    void shouldGoOnListeningAfterRunningOutOfFileDescriptors() throws Exception {
        channel.close();
        handshakeFromANewConnection();                            // loads the session's classes before descriptors run out
        List<SocketChannel> held = new java.util.ArrayList<>();
        try {
            ferry.testkit.OpenFileLimit.withSpare(4, () -> {         // a few connections, then accept(2) fails with EMFILE
                for (int i = 0; i < 20; i++) {
                    try {
                        SocketChannel ch = SocketChannel.open();
                        held.add(ch);
                        ch.connect(new InetSocketAddress("127.0.0.1", destination.port()));
                    } catch (java.io.IOException emfile) {
                        break;
                    }
                }
                Thread.sleep(500);                                // the listener meets EMFILE, backs off, retries
            });
        } finally {
            for (SocketChannel ch : held) {
                ch.close();
            }
        }
        handshakeFromANewConnection();
    }

    /** A new source gets WELCOME: the listener is still there and free. */
    private void handshakeFromANewConnection() throws Exception {
        assertInstanceOf(Frame.Welcome.class, offer(hello(MigrationWire.VERSION)));
    }

    /** The answer to {@code hello} on a new connection, asking again while the previous session winds down ("busy"). */
    private Frame offer(Frame.Hello hello) throws Exception {
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (true) {
            try (SocketChannel ch = SocketChannel.open(new InetSocketAddress("127.0.0.1", destination.port()))) {
                ch.socket().setSoTimeout(20_000);
                new FrameWriter(ch, new RateLimiter(Long.MAX_VALUE / 4)).send(hello);
                Frame answer = new FrameReader(Channels.newChannel(ch.socket().getInputStream())).next();
                if (!(answer instanceof Frame.Error e && e.message().startsWith("busy"))) {
                    return answer;
                }
                assertTrue(System.nanoTime() < deadline, "still busy");
                Thread.sleep(20);
            }
        }
    }

    @Test
    void shouldRefuseBlocksThatAreNotWholeGranules() throws Exception {
        handshake();
        writer.send(new Frame.BlockZero(0, 4096, GRANULE));
        assertEquals("protocol error: block range offset=4096 length=65536 is not whole granules of 65536 inside disk 0 of 1048576 bytes",
                refusal());
        assertNotNull(awaitAborted(), "the prepared VM must be aborted");
    }

    @Test
    void shouldRefuseAZeroRangeWithTheTopBitSet() throws Exception {
        handshake();
        writer.send(new Frame.BlockZero(0, GRANULE, Long.MIN_VALUE + GRANULE));   // 2^63 + 64 KiB as u64
        String message = refusal();
        assertTrue(message.startsWith("protocol error: block range offset=65536"), message);
    }

    /** offset + length overflows a signed 64-bit sum: 2 * 64 KiB + (2^63 - 64 KiB) = 2^63 + 64 KiB. */
    private static final long WRAPPING_LENGTH = Long.MAX_VALUE - GRANULE + 1;

    @Test
    void shouldRefuseAZeroRangeWhoseEndWrapsAround() throws Exception {
        handshake();
        writer.send(new Frame.BlockZero(0, 2L * GRANULE, WRAPPING_LENGTH));
        refusal();
        assertNotNull(awaitAborted(), "the prepared VM must be aborted");
    }

    @Test
    void shouldRefuseAZeroRangeWhoseEndWrapsAroundAsAProtocolError() throws Exception {
        handshake();
        writer.send(new Frame.BlockZero(0, 2L * GRANULE, WRAPPING_LENGTH));
        String message = refusal();
        assertTrue(message.startsWith("protocol error: block range offset=131072"), message);
    }

    @Test
    void shouldRefuseASecondHello() throws Exception {
        handshake();
        writer.send(hello(MigrationWire.VERSION));
        assertEquals("protocol error: unexpected HELLO frame in state RECEIVING", refusal());
    }

    @Test
    void shouldRefuseDestinationFramesFromTheSource() throws Exception {
        handshake();
        writer.send(new Frame.Running());
        assertEquals("protocol error: unexpected RUNNING frame in state RECEIVING", refusal());
    }

    @Test
    void shouldRefuseBlocksAfterVerified() throws Exception {
        handshake();
        writer.send(new Frame.DisksDone(List.of(sendDisk())));
        assertInstanceOf(Frame.Verified.class, nextControl());
        writer.send(new Frame.BlockZero(0, 0, GRANULE));
        assertEquals("protocol error: block frame in state VERIFIED", refusal());
        assertFalse(host.last().resumed.get());
    }

    @Test
    void shouldRefuseMismatchedDigests() throws Exception {
        handshake();
        int[] groups = sendDisk();
        groups[0] ^= 1;
        writer.send(new Frame.DisksDone(List.of(groups)));
        assertEquals("disk 0 differs from the source at bytes 0x0..0x100000: digest mismatch, switchover aborted", refusal());
        assertNotNull(awaitAborted());
    }

    @Test
    void shouldEndTheAttemptOnCancel() throws Exception {
        handshake();
        writer.send(new Frame.Cancel("user said stop"));
        assertEquals("cancelled by the source: user said stop", awaitAborted());
    }

    @Test
    void shouldRefuseCommitBeforeTheDisksAreVerified() throws Exception {
        handshake();
        sendDisk();
        sendRamAndDeviceState();
        assertInstanceOf(Frame.DestReady.class, nextControl());
        writer.send(new Frame.Commit());
        Frame answer = nextControl();
        assertInstanceOf(Frame.Error.class, answer, "COMMIT without DISKS_DONE/VERIFIED was accepted: " + answer);
        assertFalse(host.last().resumed.get(), "the VM ran on unverified disks");
    }
}
