package ferry.nbd;

import static ferry.nbd.NbdWire.*;
import static org.junit.jupiter.api.Assertions.*;

import ferry.image.Extent;
import ferry.image.Extent.Type;
import ferry.nbd.NbdClient.StatusExtent;
import ferry.nbd.NbdWireTest.PiecesChannel;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Several meta contexts at once: SET_META_CONTEXT encoding, BLOCK_STATUS decoding, extent classification. */
class NbdMetaContextTest {
    private static final HexFormat HEX = HexFormat.of();
    private static final Map<Integer, String> CONTEXTS = Map.of(1, META_BASE_ALLOCATION, 2, META_QEMU_ALLOCATION_DEPTH);

    // SET_META_CONTEXT for export "vda" asking three contexts:
    // IHAVEOPT 49484156454f5054, option 0000000a (SET_META_CONTEXT), length 0000004f (79 = 4+3 + 4 + 4+15 + 4+21 + 4+20)
    // export 00000003 "vda", 3 queries 00000003,
    // 0000000f "base:allocation", 00000015 "qemu:allocation-depth", 00000014 "qemu:dirty-bitmap:b0"
    private static final String SET_META_CONTEXT = "49484156454f5054" + "0000000a" + "0000004f"
            + "00000003" + "766461" + "00000003"
            + "0000000f" + "626173653a616c6c6f636174696f6e"
            + "00000015" + "71656d753a616c6c6f636174696f6e2d6465707468"
            + "00000014" + "71656d753a64697274792d6269746d61703a6230";

    // Reply to BLOCK_STATUS cookie 5 for 3 MiB with two contexts, in the order QEMU sends them:
    // chunk flags 0000, type 0005 (BLOCK_STATUS), cookie 05, length 0000001c (4 + 3 descriptors)
    //   context 00000001 (base:allocation): 1 MiB 00000000 (data), 1 MiB 00000003 (hole|zero), 1 MiB 00000002 (zero)
    // chunk flags 0001 (DONE), type 0005, cookie 05, length 00000014 (4 + 2 descriptors)
    //   context 00000002 (allocation-depth): 512 KiB depth 00000001 (local), 2560 KiB depth 00000002 (backing)
    private static final String BLOCK_STATUS_REPLY =
            "668e33ef" + "0000" + "0005" + "0000000000000005" + "0000001c"
            + "00000001" + "00100000" + "00000000" + "00100000" + "00000003" + "00100000" + "00000002"
            + "668e33ef" + "0001" + "0005" + "0000000000000005" + "00000014"
            + "00000002" + "00080000" + "00000001" + "00280000" + "00000002";

    // Reply to cookie 6: ERROR chunk (not DONE) error 00000016 (EINVAL), message length 0002 "no", then NONE with DONE.
    private static final String ERROR_REPLY =
            "668e33ef" + "0000" + "8001" + "0000000000000006" + "00000008" + "00000016" + "0002" + "6e6f"
            + "668e33ef" + "0001" + "0000" + "0000000000000006" + "00000000";

    @Test
    void shouldEncodeSetMetaContextWithSeveralNames() {
        ByteBuffer b = ByteBuffer.allocate(SET_META_CONTEXT.length() / 2);
        encodeMetaContextOption(b, OPT_SET_META_CONTEXT, "vda",
                List.of(META_BASE_ALLOCATION, META_QEMU_ALLOCATION_DEPTH, dirtyBitmapContext("b0")));
        assertFalse(b.hasRemaining());
        assertEquals(SET_META_CONTEXT, HEX.formatHex(b.array()));
    }

    @Test
    void shouldRefuseAMetaContextOptionThatDoesNotFit() {
        ByteBuffer b = ByteBuffer.allocate(32);
        assertThrows(IllegalArgumentException.class,
                () -> encodeMetaContextOption(b, OPT_SET_META_CONTEXT, "vda", List.of(META_BASE_ALLOCATION)));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 5, 7, 4096})
    void shouldDecodeBlockStatusOfTwoContextsDeliveredInPieces(int piece) throws IOException {
        WireIn in = new WireIn(new PiecesChannel(HEX.parseHex(BLOCK_STATUS_REPLY + ERROR_REPLY + BLOCK_STATUS_REPLY.replace(
                "0000000000000005", "0000000000000007")), piece), 64);
        Map<String, List<StatusExtent>> expected = Map.of(
                META_BASE_ALLOCATION, List.of(new StatusExtent(1 << 20, 0), new StatusExtent(1 << 20, STATE_HOLE | STATE_ZERO),
                        new StatusExtent(1 << 20, STATE_ZERO)),
                META_QEMU_ALLOCATION_DEPTH, List.of(new StatusExtent(512 << 10, DEPTH_LOCAL), new StatusExtent(2560 << 10, 2)));
        assertEquals(expected, NbdClient.readBlockStatus(in, 5, CONTEXTS));

        NbdException e = assertThrows(NbdException.class, () -> NbdClient.readBlockStatus(in, 6, CONTEXTS));
        assertEquals(NbdException.Kind.REFUSED, e.kind());
        assertEquals(EINVAL, e.error());
        assertEquals(expected, NbdClient.readBlockStatus(in, 7, CONTEXTS), "the refusal was read to its end");
        assertNull(in.need(1, true));
    }

    @Test
    void shouldRejectBlockStatusOfAContextNeverNegotiated() {
        WireIn in = new WireIn(new PiecesChannel(HEX.parseHex(BLOCK_STATUS_REPLY), 7), 64);
        NbdException e = assertThrows(NbdException.class,
                () -> NbdClient.readBlockStatus(in, 5, Map.of(1, META_BASE_ALLOCATION)));
        assertEquals(NbdException.Kind.PROTOCOL, e.kind());
        assertTrue(e.getMessage().contains("id=2"), e.getMessage());
    }

    @Test
    void shouldRejectADescriptorOfLengthZero() {
        // chunk DONE, BLOCK_STATUS, cookie 05, length 0000000c: context 00000001, descriptor length 00000000 flags 0
        String reply = "668e33ef" + "0001" + "0005" + "0000000000000005" + "0000000c" + "00000001" + "00000000" + "00000000";
        WireIn in = new WireIn(new PiecesChannel(HEX.parseHex(reply), 5), 64);
        assertEquals(NbdException.Kind.PROTOCOL, assertThrows(NbdException.class,
                () -> NbdClient.readBlockStatus(in, 5, CONTEXTS)).kind());
    }

    @Test
    void shouldIntersectAllocationAndDepthBoundaries() {
        // base:allocation: data 1 MiB | hole,zero 1 MiB | zero 1 MiB; depth: local 512 KiB | backing 2560 KiB
        List<StatusExtent> allocation = List.of(new StatusExtent(1 << 20, 0),
                new StatusExtent(1 << 20, STATE_HOLE | STATE_ZERO), new StatusExtent(1 << 20, STATE_ZERO));
        List<StatusExtent> depth = List.of(new StatusExtent(512 << 10, DEPTH_LOCAL), new StatusExtent(2560 << 10, 2));
        assertEquals(List.of(new Extent(4096, 512 << 10, Type.DATA), new Extent(4096 + (512 << 10), 2560 << 10, Type.BACKING)),
                NbdExportImage.classify(4096, 3 << 20, allocation, depth));

        // local zeroes where base:allocation says ZERO, unallocated everywhere -> HOLE; the shorter list ends the answer
        depth = List.of(new StatusExtent(1536 << 10, DEPTH_LOCAL), new StatusExtent(1 << 20, DEPTH_UNALLOCATED));
        assertEquals(List.of(new Extent(0, 1 << 20, Type.DATA), new Extent(1 << 20, 512 << 10, Type.ZERO),
                new Extent(1536 << 10, 1 << 20, Type.HOLE)), NbdExportImage.classify(0, 3 << 20, allocation, depth));
    }

    @Test
    void shouldClassifyBaseAllocationAloneAndStopAtTheRequestedLength() {
        List<StatusExtent> allocation = List.of(new StatusExtent(4096, STATE_HOLE | STATE_ZERO), new StatusExtent(4096, STATE_ZERO),
                new StatusExtent(4096, STATE_HOLE), new StatusExtent(4096, 0), new StatusExtent(4096, STATE_HOLE | STATE_ZERO));
        assertEquals(List.of(new Extent(0, 4096, Type.HOLE), new Extent(4096, 4096, Type.ZERO), new Extent(8192, 8192, Type.DATA),
                new Extent(16384, 1000, Type.HOLE)), NbdExportImage.classify(0, 17384, allocation, null));
        assertEquals(List.of(new Extent(0, 8192, Type.BACKING)),
                NbdExportImage.classify(0, 8192, null, List.of(new StatusExtent(8192, 3))));
    }
}
