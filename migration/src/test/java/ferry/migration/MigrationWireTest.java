package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import ferry.migration.wire.VmFingerprint;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The migration stream's codec against docs/migration-protocol.md: exact bytes for the header, HELLO
 * and BLOCK_ZERO; every frame type through encode/decode and through writer and reader with the
 * bytes arriving in uneven pieces; and a clear refusal of every malformed frame.
 */
class MigrationWireTest {

    /** One sample of every frame type (HELLO twice: with and without a base image). */
    private static List<Frame> samples() {
        byte[] sha = new byte[32];
        for (int i = 0; i < sha.length; i++) {
            sha[i] = (byte) (i * 7 + 1);
        }
        byte[] block = new byte[8192];
        for (int i = 0; i < block.length; i++) {
            block[i] = (byte) (i * 31);
        }
        return List.of(
                new Frame.Hello(MigrationWire.VERSION, "vm-ä", 65536, true, true, List.of(
                        new Frame.DiskOffer("disk0", 10L << 30, "qcow2",
                                Optional.of(new Frame.BaseIdentity("base.qcow2", 2L << 30, sha))),
                        new Frame.DiskOffer("disk1", 4096, "raw", Optional.empty())),
                        VmFingerprint.of(new VmFingerprint.Item("machine", "pc-i440fx-7.2"),
                                new VmFingerprint.Item("pci 00:02.0", "1af4:1001 SCSI controller"))),
                new Frame.Hello(MigrationWire.VERSION, "ram-only", 4096, false, false, List.of(), VmFingerprint.of()),
                new Frame.Hello(MigrationWire.VERSION, "resuming", 4096, true, false, List.of(
                        new Frame.DiskOffer("disk0", 1L << 30, "raw", Optional.empty()),
                        new Frame.DiskOffer("disk1", 8192, "qcow2", Optional.empty())), VmFingerprint.of(),
                        new java.util.UUID(0x0123456789abcdefL, 0xfedcba9876543210L), Optional.of(new Frame.ResumeClaim(41,
                        List.of(List.of(new Frame.Sample(0, 7), new Frame.Sample((1L << 18) - 1, -1)), List.of())))),
                new Frame.Welcome(List.of(true, false, true)),
                new Frame.Welcome(List.of(false, false), 1L << 40),
                new Frame.Checkpoint(0),
                new Frame.Confirmed(Long.MAX_VALUE),
                new Frame.BlockData(3, 1L << 40, ByteBuffer.wrap(block)),
                new Frame.BlockZero(1, 0x2000, 0x10000),
                new Frame.PassEnd(7, 123_456_789_012L),
                new Frame.Ram(ByteBuffer.wrap(Arrays.copyOf(block, 1000))),
                new Frame.RamEof(),
                new Frame.DisksDone(List.of(new int[] {1, -2, 0x7fffffff, 0}, new int[0], new int[] {42})),
                new Frame.Verified(),
                new Frame.DestReady(),
                new Frame.Commit(),
                new Frame.Running(),
                new Frame.Error("switchover", "disk 0 differs: ☹"),
                new Frame.Cancel("user said stop"));
    }

    @Test
    void samplesShouldCoverEveryFrameType() {
        Set<MigrationWire.Type> covered = samples().stream().map(Frame::type).collect(Collectors.toSet());
        Set<MigrationWire.Type> all = EnumSet.allOf(MigrationWire.Type.class);
        all.remove(MigrationWire.Type.INVALID);
        assertEquals(all, covered);
    }

    @Test
    void shouldRoundTripEveryFrameThroughThePayloadCodec() throws Exception {
        for (Frame frame : samples()) {
            ByteBuffer payload = MigrationWire.encodePayload(frame);
            Frame decoded = MigrationWire.decodePayload(frame.type(), payload);
            assertFrameEquals(frame, decoded);
        }
    }

    @Test
    void shouldEncodeHelloExactly() throws Exception {
        Frame.Hello hello = new Frame.Hello(2, "vm", 4096, true, false,
                List.of(new Frame.DiskOffer("d0", 1 << 20, "raw", Optional.empty())),
                VmFingerprint.of(new VmFingerprint.Item("memory", "256 MiB")));
        byte[] expected = {
                0x00, 0x02,                                     // version 2
                0x00, 0x02, 'v', 'm',                           // vm name: u16 length + UTF-8
                0x00, 0x00, 0x10, 0x00,                         // granule size 4096
                0x01,                                           // copy disks
                0x00,                                           // not incremental
                0x00, 0x01,                                     // one disk
                0x00, 0x02, 'd', '0',                           //   id
                0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, //   size 1 MiB
                0x00, 0x03, 'r', 'a', 'w',                      //   format
                0x00,                                           //   no base image
                0x00, 0x01,                                     // one fingerprint item (from version 2)
                0x00, 0x06, 'm', 'e', 'm', 'o', 'r', 'y',       //   key
                0x00, 0x07, '2', '5', '6', ' ', 'M', 'i', 'B',  //   value
        };
        assertArrayEquals(expected, bytes(MigrationWire.encodePayload(hello)));
        assertFrameEquals(hello, MigrationWire.decodePayload(MigrationWire.Type.HELLO, ByteBuffer.wrap(expected)));
    }

    /** A version 1 HELLO has no fingerprint; it still decodes, so that the destination can say which version it refuses. */
    @Test
    void shouldDecodeAVersionOneHelloWithoutAFingerprint() throws Exception {
        byte[] v1 = {
                0x00, 0x01,                                     // version 1
                0x00, 0x02, 'v', 'm',
                0x00, 0x00, 0x10, 0x00,
                0x01, 0x00,
                0x00, 0x01,
                0x00, 0x02, 'd', '0',
                0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,
                0x00, 0x03, 'r', 'a', 'w',
                0x00,                                           // ends after the disks
        };
        Frame.Hello hello = (Frame.Hello) MigrationWire.decodePayload(MigrationWire.Type.HELLO, ByteBuffer.wrap(v1));
        assertEquals(1, hello.version());
        assertEquals(List.of(), hello.fingerprint().items());
    }

    @Test
    void shouldWriteBlockZeroFrameExactly() throws Exception {
        byte[] expected = {
                0x46, 0x45, 0x52, 0x59,                         // magic "FERY"
                0x00, 0x04,                                     // type 4 = BLOCK_ZERO
                0x00, 0x00,                                     // flags
                0x00, 0x00, 0x00, 0x12,                         // payload length 18
                (byte) 0xb0, 0x7c, (byte) 0xbb, 0x32,           // CRC32C of bytes 0..11 and the payload
                0x00, 0x01,                                     // disk 1
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, // offset 0x2000
                0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // length 0x10000
        };
        assertArrayEquals(expected, written(new Frame.BlockZero(1, 0x2000, 0x10000)));
        assertFrameEquals(new Frame.BlockZero(1, 0x2000, 0x10000), new FrameReader(new ChunkedChannel(expected, 64)).next());
    }

    @Test
    void shouldEncodeHeaderExactly() throws Exception {
        byte[] expected = {
                0x46, 0x45, 0x52, 0x59,                         // magic "FERY"
                0x00, 0x0b,                                     // type 11 = COMMIT
                0x00, 0x00,                                     // flags
                0x00, 0x00, 0x00, 0x00,                         // empty payload
                0x67, 0x75, (byte) 0x8f, 0x70,                  // CRC32C of bytes 0..11
        };
        ByteBuffer header = ByteBuffer.allocate(MigrationWire.HEADER_LENGTH);
        MigrationWire.encodeHeader(header, MigrationWire.Type.COMMIT, 0, ByteBuffer.allocate(0));
        assertArrayEquals(expected, header.array());
        assertArrayEquals(expected, written(new Frame.Commit()));
        MigrationWire.Header decoded = MigrationWire.decodeHeader(ByteBuffer.wrap(expected));
        assertEquals(new MigrationWire.Header(MigrationWire.Type.COMMIT, 0, 0, 0x67758f70), decoded);
    }

    @Test
    void encodeHeaderShouldAgreeWithTheWriter() throws Exception {
        Frame frame = new Frame.Cancel("because");
        ByteBuffer payload = MigrationWire.encodePayload(frame);
        ByteBuffer header = ByteBuffer.allocate(MigrationWire.HEADER_LENGTH);
        MigrationWire.encodeHeader(header, frame.type(), 0, payload);
        byte[] wire = written(frame);
        assertArrayEquals(Arrays.copyOf(wire, MigrationWire.HEADER_LENGTH), header.array());
    }

    @ParameterizedTest(name = "pieces of at most {0} bytes")
    @ValueSource(ints = {1, 5, 7})
    void shouldReadEveryFrameWhenBytesArriveInPieces(int piece) throws Exception {
        List<Frame> frames = samples();
        ByteArrayChannel out = new ByteArrayChannel();
        FrameWriter writer = new FrameWriter(out, new RateLimiter(Long.MAX_VALUE / 4));
        for (Frame frame : frames) {
            writer.send(frame);
        }
        byte[] wire = out.bytes();
        assertEquals(wire.length, writer.bytesWritten());
        FrameReader reader = new FrameReader(new ChunkedChannel(wire, piece));
        for (Frame frame : frames) {
            assertFrameEquals(frame, reader.next());
        }
        assertEquals(wire.length, reader.bytesRead());
        EOFException end = assertThrows(EOFException.class, reader::next);
        assertTrue(end.getMessage().contains("closed by peer after " + frames.size() + " frames"), end.getMessage());
    }

    @Test
    void writerShouldNotConsumeTheCallersBuffers() throws Exception {
        ByteBuffer data = ByteBuffer.wrap(new byte[4096]);
        ByteArrayChannel out = new ByteArrayChannel();
        FrameWriter writer = new FrameWriter(out, new RateLimiter(Long.MAX_VALUE / 4));
        writer.send(new Frame.BlockData(0, 0, data));
        writer.send(new Frame.Ram(data));
        assertEquals(4096, data.remaining());
        assertEquals(2 * (MigrationWire.HEADER_LENGTH + 4096) + MigrationWire.BLOCK_DATA_PREFIX, out.bytes().length);
    }

    // ---- refusals ---------------------------------------------------------------------------------

    @Test
    void shouldRejectBadMagic() {
        byte[] wire = written(new Frame.Commit());
        wire[0] = 'X';
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class, () -> read(wire));
        assertTrue(e.getMessage().startsWith("bad frame magic: got 0x58455259, want 0x46455259"), e.getMessage());
    }

    @Test
    void shouldRejectUnknownType() {
        byte[] wire = written(new Frame.Commit());
        wire[5] = 17;
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class, () -> read(wire));
        assertTrue(e.getMessage().startsWith("unknown frame type: 17"), e.getMessage());
        wire[4] = (byte) 0xff;
        wire[5] = (byte) 0xff;
        e = assertThrows(MigrationWire.WireException.class, () -> read(wire));
        assertTrue(e.getMessage().startsWith("unknown frame type: 65535"), e.getMessage());
    }

    @Test
    void shouldRejectReservedTypeZero() {
        byte[] wire = written(new Frame.Commit());
        wire[5] = 0;
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class, () -> read(wire));
        assertTrue(e.getMessage().startsWith("unknown frame type: 0"), e.getMessage());
        assertEquals(null, MigrationWire.Type.of(0));
        MigrationWire.WireException reserved = assertThrows(MigrationWire.WireException.class,
                () -> MigrationWire.decodePayload(MigrationWire.Type.INVALID, ByteBuffer.allocate(0)));
        assertEquals("frame type 0 is reserved", reserved.getMessage());
    }

    @Test
    void shouldRejectOversizedLength() {
        for (long length : new long[] {MigrationWire.MAX_PAYLOAD + 1L, 0x80000000L, 0xffffffffL}) {
            ByteBuffer header = ByteBuffer.wrap(written(new Frame.RamEof()));
            header.putShort(MigrationWire.TYPE_OFFSET, (short) MigrationWire.Type.RAM.code);
            header.putInt(MigrationWire.LENGTH_OFFSET, (int) length);
            MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class, () -> read(header.array()));
            assertEquals("frame too large: type=RAM length=" + length + " max=" + MigrationWire.MAX_PAYLOAD, e.getMessage());
        }
    }

    @Test
    void shouldRefuseAFrameTrickledSlowerThanTheFrameTimeout() throws Exception {
        byte[] frame = written(new Frame.Cancel("a reason of some length"));
        ChunkedChannel oneByte = new ChunkedChannel(frame, 1);
        java.nio.channels.ReadableByteChannel slow = new java.nio.channels.ReadableByteChannel() {
            @Override public int read(ByteBuffer dst) throws IOException {
                try {
                    Thread.sleep(5);                       // each read returns well within any socket timeout
                } catch (InterruptedException e) {
                    throw new java.io.InterruptedIOException();
                }
                return oneByte.read(dst);
            }
            @Override public boolean isOpen() { return true; }
            @Override public void close() { }
        };
        java.io.InterruptedIOException e = assertThrows(java.io.InterruptedIOException.class,
                () -> new FrameReader(slow).frameTimeoutMs(50).next());
        assertTrue(e.getMessage().startsWith("the peer took more than 50 ms to send one frame (frame 1)"), e.getMessage());
        assertInstanceOf(Frame.Cancel.class, new FrameReader(new ChunkedChannel(frame, 1)).frameTimeoutMs(50).next(), "a quick frame passes");
    }

    @Test
    void shouldRefuseAFixedSizeFrameLongerThanItsLayoutFromTheHeaderAlone() {
        record Case(Frame frame, int length, int max) {}
        for (Case c : List.of(new Case(new Frame.Commit(), 1, 0), new Case(new Frame.PassEnd(1, 0), 13, 12),
                new Case(new Frame.BlockZero(0, 0, 4096), 19, 18), new Case(new Frame.Cancel("x"), 2 + 4097, 2 + 4096),
                new Case(new Frame.Checkpoint(1), 9, 8), new Case(new Frame.Confirmed(1), 9, 8),
                new Case(new Frame.Welcome(List.of()), 2 + 65 + 8, 2 + 64 + 8))) {
            ByteBuffer header = ByteBuffer.wrap(java.util.Arrays.copyOf(written(c.frame()), MigrationWire.HEADER_LENGTH));
            header.putInt(MigrationWire.LENGTH_OFFSET, c.length());
            MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class, () -> read(header.array()));
            assertEquals("frame too large: type=" + c.frame().type() + " length=" + c.length() + " max=" + c.max(), e.getMessage());
        }
    }

    @Test
    void shouldPickTheSmallestGranuleWhoseDigestsFitOneDisksDone() {
        long tib = 1L << 40;
        assertEquals(4096, MigrationWire.smallestGranuleFor(List.of(tib), 4096));
        assertEquals(8192, MigrationWire.smallestGranuleFor(List.of(16 * tib), 4096), "16 TiB at 4 KiB: 4 Mi groups, 6 bytes too many");
        assertTrue(MigrationWire.disksDoneLength(List.of(16 * tib), 4096) > MigrationWire.MAX_PAYLOAD);
        assertEquals(65536, MigrationWire.smallestGranuleFor(List.of(16 * tib), 65536));
        assertEquals(-1, MigrationWire.smallestGranuleFor(List.of(Long.MAX_VALUE / 2), 4096));
    }

    @Test
    void shouldAcceptTheLargestPayload() throws Exception {
        ByteBuffer big = ByteBuffer.allocate(MigrationWire.MAX_PAYLOAD);
        big.put(MigrationWire.MAX_PAYLOAD - 1, (byte) 9);
        ByteArrayChannel out = new ByteArrayChannel();
        new FrameWriter(out, new RateLimiter(Long.MAX_VALUE / 4)).send(new Frame.Ram(big));
        Frame.Ram ram = assertInstanceOf(Frame.Ram.class, new FrameReader(new ChunkedChannel(out.bytes(), 1 << 20)).next());
        assertEquals(MigrationWire.MAX_PAYLOAD, ram.data().remaining());
        assertEquals(9, ram.data().get(MigrationWire.MAX_PAYLOAD - 1));
        ByteBuffer tooBig = ByteBuffer.allocate(MigrationWire.MAX_PAYLOAD + 1);
        assertThrows(IllegalArgumentException.class,
                () -> new FrameWriter(new ByteArrayChannel(), new RateLimiter(Long.MAX_VALUE / 4)).send(new Frame.Ram(tooBig)));
    }

    @Test
    void shouldRejectEveryFlippedByte() {
        byte[] good = written(new Frame.Cancel("stop"));
        for (int i = 0; i < good.length; i++) {
            byte[] bad = good.clone();
            bad[i] ^= (byte) 0xff;
            int index = i;
            Exception e = assertThrows(Exception.class, () -> read(bad), () -> "flipped byte " + index + " was accepted");
            assertTrue(e instanceof MigrationWire.WireException || e instanceof EOFException,
                    "flipped byte " + i + ": " + e);
            if (i >= MigrationWire.CRC_OFFSET) {
                assertTrue(e.getMessage().startsWith("frame checksum mismatch: type=CANCEL length=6"), e.getMessage());
            }
        }
    }

    @Test
    void shouldRejectEofInsideAFrame() throws Exception {
        byte[] wire = written(new Frame.Cancel("stop"));
        EOFException inPayload = assertThrows(EOFException.class, () -> read(Arrays.copyOf(wire, wire.length - 1)));
        assertEquals("migration stream closed by peer in the middle of a frame", inPayload.getMessage());
        EOFException inHeader = assertThrows(EOFException.class, () -> read(Arrays.copyOf(wire, 9)));
        assertEquals("migration stream closed by peer in the middle of a frame", inHeader.getMessage());
        EOFException between = assertThrows(EOFException.class, () -> read(new byte[0]));
        assertTrue(between.getMessage().contains("after 0 frames"), between.getMessage());
    }

    @Test
    void shouldRejectTruncatedPayload() {
        byte[] hello = bytes(MigrationWire.encodePayload(samples().get(0)));
        for (int cut = 0; cut < hello.length; cut++) {
            ByteBuffer shortPayload = ByteBuffer.wrap(hello, 0, cut);
            MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class,
                    () -> MigrationWire.decodePayload(MigrationWire.Type.HELLO, shortPayload));
            assertTrue(e.getMessage().startsWith("truncated HELLO payload: needs "), e.getMessage());
        }
        MigrationWire.WireException zero = assertThrows(MigrationWire.WireException.class,
                () -> MigrationWire.decodePayload(MigrationWire.Type.BLOCK_ZERO, ByteBuffer.allocate(17)));
        assertEquals("truncated BLOCK_ZERO payload: needs 8 more bytes at payload offset 10, has 7", zero.getMessage());
        // A frame whose CRC is right but whose payload is too short for its type is refused the same way.
        ByteBuffer payload = ByteBuffer.wrap(new byte[] {0, 1, 0});
        byte[] frame = frameBytes(MigrationWire.Type.PASS_END, payload);
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class, () -> read(frame));
        assertTrue(e.getMessage().startsWith("truncated PASS_END payload"), e.getMessage());
    }

    @Test
    void shouldRejectTrailingBytes() {
        for (Frame frame : samples()) {
            if (frame instanceof Frame.BlockData || frame instanceof Frame.Ram) {
                continue;     // their payload ends with the bulk bytes: nothing can trail
            }
            ByteBuffer payload = MigrationWire.encodePayload(frame);
            ByteBuffer longer = ByteBuffer.allocate(payload.remaining() + 2).put(payload).put((byte) 1).put((byte) 2).flip();
            MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class,
                    () -> MigrationWire.decodePayload(frame.type(), longer), frame::toString);
            assertEquals(frame.type() + " payload has 2 unexpected trailing bytes", e.getMessage());
        }
    }

    @Test
    void shouldRejectTooManyDisks() {
        List<Frame.DiskOffer> disks = new ArrayList<>();
        List<Boolean> fresh = new ArrayList<>();
        List<int[]> digests = new ArrayList<>();
        for (int i = 0; i <= MigrationWire.MAX_DISKS; i++) {
            disks.add(new Frame.DiskOffer("d" + i, 4096, "raw", Optional.empty()));
            fresh.add(true);
            digests.add(new int[0]);
        }
        assertRefused(new Frame.Hello(MigrationWire.VERSION, "vm", 4096, true, false, disks, VmFingerprint.of()),
                "HELLO offers 65 disks, max 64");
        assertRefused(new Frame.Welcome(fresh), "WELCOME lists 65 disks, max 64");
        assertRefused(new Frame.DisksDone(digests), "DISKS_DONE lists 65 disks, max 64");
    }

    @Test
    void shouldRejectDigestCountBeyondThePayload() {
        ByteBuffer payload = ByteBuffer.allocate(2 + 4 + 4).putShort((short) 1).putInt(2).putInt(7).flip();
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class,
                () -> MigrationWire.decodePayload(MigrationWire.Type.DISKS_DONE, payload));
        assertEquals("DISKS_DONE digest count 2 exceeds the payload", e.getMessage());
    }

    @Test
    void shouldRejectOverlongString() {
        ByteBuffer payload = ByteBuffer.allocate(2 + 5000).putShort((short) 5000).flip().limit(5002);
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class,
                () -> MigrationWire.decodePayload(MigrationWire.Type.CANCEL, payload));
        assertEquals("CANCEL string of 5000 bytes exceeds 4096", e.getMessage());
    }

    // ---- helpers ----------------------------------------------------------------------------------

    private static void assertRefused(Frame frame, String message) {
        ByteBuffer payload = MigrationWire.encodePayload(frame);
        MigrationWire.WireException e = assertThrows(MigrationWire.WireException.class,
                () -> MigrationWire.decodePayload(frame.type(), payload));
        assertEquals(message, e.getMessage());
    }

    private static Frame read(byte[] wire) throws IOException, MigrationWire.WireException {
        return new FrameReader(new ChunkedChannel(wire, wire.length + 1)).next();
    }

    private static byte[] written(Frame frame) {
        ByteArrayChannel out = new ByteArrayChannel();
        try {
            new FrameWriter(out, new RateLimiter(Long.MAX_VALUE / 4)).send(frame);
        } catch (IOException | InterruptedException e) {
            throw new AssertionError(e);
        }
        return out.bytes();
    }

    private static byte[] frameBytes(MigrationWire.Type type, ByteBuffer payload) {
        ByteBuffer header = ByteBuffer.allocate(MigrationWire.HEADER_LENGTH);
        MigrationWire.encodeHeader(header, type, 0, payload);
        return ByteBuffer.allocate(MigrationWire.HEADER_LENGTH + payload.remaining())
                .put(header.array()).put(payload.duplicate()).array();
    }

    private static byte[] bytes(ByteBuffer buffer) {
        byte[] out = new byte[buffer.remaining()];
        buffer.duplicate().get(out);
        return out;
    }

    static void assertFrameEquals(Frame expected, Frame actual) {
        assertEquals(expected.type(), actual.type());
        switch (expected) {
            case Frame.Hello h -> {
                Frame.Hello a = (Frame.Hello) actual;
                assertEquals(List.of(h.version(), h.vmName(), h.granuleSize(), h.copyDisks(), h.incremental(), h.disks().size()),
                        List.of(a.version(), a.vmName(), a.granuleSize(), a.copyDisks(), a.incremental(), a.disks().size()));
                for (int i = 0; i < h.disks().size(); i++) {
                    Frame.DiskOffer e = h.disks().get(i);
                    Frame.DiskOffer d = a.disks().get(i);
                    assertEquals(List.of(e.id(), e.size(), e.format(), e.base().isPresent()),
                            List.of(d.id(), d.size(), d.format(), d.base().isPresent()));
                    if (e.base().isPresent()) {
                        assertEquals(e.base().get().fileName(), d.base().get().fileName());
                        assertEquals(e.base().get().size(), d.base().get().size());
                        assertArrayEquals(e.base().get().sha256(), d.base().get().sha256());
                    }
                }
                assertEquals(h.fingerprint(), a.fingerprint());
                assertEquals(h.migrationId(), a.migrationId());
                assertEquals(h.resume(), a.resume());
            }
            case Frame.BlockData b -> {
                Frame.BlockData a = (Frame.BlockData) actual;
                assertEquals(List.of(b.disk(), b.offset()), List.of(a.disk(), a.offset()));
                assertArrayEquals(bytes(b.data()), bytes(a.data()));
            }
            case Frame.Ram r -> assertArrayEquals(bytes(r.data()), bytes(((Frame.Ram) actual).data()));
            case Frame.DisksDone d -> {
                List<int[]> a = ((Frame.DisksDone) actual).groupDigests();
                assertEquals(d.groupDigests().size(), a.size());
                for (int i = 0; i < a.size(); i++) {
                    assertArrayEquals(d.groupDigests().get(i), a.get(i));
                }
            }
            case Frame.Welcome w -> assertEquals(w, actual);
            case Frame.BlockZero z -> assertEquals(z, actual);
            case Frame.PassEnd p -> assertEquals(p, actual);
            case Frame.RamEof e -> assertEquals(e, actual);
            case Frame.Verified v -> assertEquals(v, actual);
            case Frame.DestReady r -> assertEquals(r, actual);
            case Frame.Commit c -> assertEquals(c, actual);
            case Frame.Running r -> assertEquals(r, actual);
            case Frame.Error e -> assertEquals(e, actual);
            case Frame.Cancel c -> assertEquals(c, actual);
            case Frame.Checkpoint c -> assertEquals(c, actual);
            case Frame.Confirmed c -> assertEquals(c, actual);
        }
    }

    /** Hands out the bytes at most {@code piece} at a time, then EOF: TCP's uneven segments. */
    static final class ChunkedChannel implements ReadableByteChannel {
        private final ByteBuffer source;
        private final int piece;
        private boolean open = true;

        ChunkedChannel(byte[] bytes, int piece) {
            this.source = ByteBuffer.wrap(bytes);
            this.piece = piece;
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            if (!open) {
                throw new ClosedChannelException();
            }
            if (!source.hasRemaining()) {
                return -1;
            }
            int n = Math.min(piece, Math.min(dst.remaining(), source.remaining()));
            dst.put(source.slice(source.position(), n));
            source.position(source.position() + n);
            return n;
        }

        @Override public boolean isOpen() { return open; }
        @Override public void close() { open = false; }
    }

    /** Collects what a FrameWriter writes; takes at most 3 bytes per call, so the writer must loop over short writes. */
    static final class ByteArrayChannel implements GatheringByteChannel {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();
        private boolean open = true;

        byte[] bytes() {
            return out.toByteArray();
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            if (!open) {
                throw new ClosedChannelException();
            }
            int n = Math.min(3, src.remaining());
            byte[] chunk = new byte[n];
            src.get(chunk);
            out.write(chunk);
            return n;
        }

        @Override
        public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
            long total = 0;
            for (int i = offset; i < offset + length; i++) {
                if (srcs[i].hasRemaining()) {
                    total += write(srcs[i]);
                    break;                      // like a socket under pressure: one short write per call
                }
            }
            return total;
        }

        @Override
        public long write(ByteBuffer[] srcs) throws IOException {
            return write(srcs, 0, srcs.length);
        }

        @Override public boolean isOpen() { return open; }
        @Override public void close() { open = false; }
    }

    @Test
    void headerConstantsShouldMatchTheSpec() {
        assertEquals(0x46455259, MigrationWire.MAGIC);
        assertEquals("FERY", new String(ByteBuffer.allocate(4).order(ByteOrder.BIG_ENDIAN).putInt(MigrationWire.MAGIC).array(),
                java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(List.of(0, 4, 6, 8, 12, 16), List.of(MigrationWire.MAGIC_OFFSET, MigrationWire.TYPE_OFFSET,
                MigrationWire.FLAGS_OFFSET, MigrationWire.LENGTH_OFFSET, MigrationWire.CRC_OFFSET, MigrationWire.HEADER_LENGTH));
        int code = 0;
        for (MigrationWire.Type type : MigrationWire.Type.values()) {
            assertEquals(code++, type.code, type::name);
            if (type != MigrationWire.Type.INVALID) {
                assertEquals(type, MigrationWire.Type.of(type.code));
            }
        }
        if (code != 17) {
            fail("the spec lists types 0..16; the code has " + code + ": update docs/migration-protocol.md");
        }
    }
}
