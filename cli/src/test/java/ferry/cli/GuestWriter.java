package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.BlockImage;
import ferry.vm.guest.GuestRecord;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * The demo guest's writer ({@code guest/ferry-disk.c}), replayed on the host: its offsets come from
 * xorshift64 seeded with {@code bootId ^ 0x5DEECE66D} (guest/README.md "Which block each record
 * goes to"), so after the guest wrote records 1..N each 4 KiB block must hold exactly the newest
 * record that went there, and every other block must still be zero. A lost write shows up as an
 * older record (or zero) where a newer one belongs; a torn one as a bad block; a write lost at the
 * end as N below the last seq the guest reported. Exact, whatever the machine's speed.
 *
 * <p>Only for a disk that no one else wrote, and that was all zero when the workload started except
 * for a {@link Prefill}: records the host wrote before the boot, which must still be there wherever
 * the guest did not write.
 */
final class GuestWriter {
    private static final long RNG_SALT = 0x5DEECE66DL;
    private static final int CHUNK = 1 << 20;

    /** What a disk holds of one run of the writer. */
    record Replay(long bootId, long lastSeq, long records, List<String> mismatches, long mismatchCount) {
        boolean exact() {
            return mismatchCount == 0;
        }
    }

    /**
     * Records of boot id {@code bootId} that the host wrote over {@code [offset, offset + length)} before the
     * guest booted, the one at {@code offset + i * 4096} with seq {@code i + 1}: data for a bulk pass to move
     * that {@link ferry.vm.guest.RecordVerifier} and the replay still check block by block.
     */
    record Prefill(long bootId, long offset, long length) {
        static final Prefill NONE = new Prefill(0, 0, 0);

        void write(BlockImage image) throws IOException {
            ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK);
            for (long at = offset; at < offset + length; at += CHUNK) {
                int bytes = (int) Math.min(CHUNK, offset + length - at);
                chunk.clear().limit(bytes);
                for (int i = 0; i < bytes; i += GuestRecord.SIZE) {
                    GuestRecord.encode(chunk.position(i), seqAt(at + i), at + i, bootId, 0);
                }
                image.write(at, chunk.position(0));
            }
        }

        boolean holds(long blockOffset) {
            return blockOffset >= offset && blockOffset < offset + length;
        }

        long seqAt(long blockOffset) {
            return (blockOffset - offset) / GuestRecord.SIZE + 1;
        }
    }

    private GuestWriter() {}

    /** The boot id the guest printed on its serial console ({@code phase=write-start ... boot-id=HEX}). */
    static long bootId(LocalHost host) throws IOException {
        String line = host.lastSerialLine("phase=write-start");
        assertTrue(line != null, host.role() + ": the guest never started writing; see " + host.serialLog());
        return Long.parseUnsignedLong(line.replaceAll(".*boot-id=([0-9a-f]+).*", "$1"), 16);
    }

    /**
     * Checks that {@code image} holds exactly what the writer with {@code bootId} left after its last
     * record on the disk, and that this last record is at least {@code reportedSeq} (the seq the guest
     * reported as written, which it had synced).
     */
    static Replay assertHoldsEveryWrite(BlockImage image, long bootId, long reportedSeq) throws IOException {
        return assertHoldsEveryWrite(image, bootId, reportedSeq, Prefill.NONE);
    }

    /** As above, on a disk that held {@code prefill} when the guest booted. */
    static Replay assertHoldsEveryWrite(BlockImage image, long bootId, long reportedSeq, Prefill prefill) throws IOException {
        Replay replay = replay(image, bootId, prefill);
        assertTrue(replay.exact(), replay.mismatchCount() + " blocks do not hold the writer's newest record (lost or"
                + " torn writes), first ones: " + replay.mismatches() + "; " + replay);
        assertTrue(replay.lastSeq() >= reportedSeq, "the guest reported record " + reportedSeq + " written, but the disk's"
                + " newest is " + replay.lastSeq() + ": the last writes were lost; " + replay);
        return replay;
    }

    static Replay replay(BlockImage image, long bootId) throws IOException {
        return replay(image, bootId, Prefill.NONE);
    }

    static Replay replay(BlockImage image, long bootId, Prefill prefill) throws IOException {
        long blocks = image.size() / GuestRecord.SIZE;
        assertTrue(blocks <= Integer.MAX_VALUE, "disk too large to replay: " + image.size());
        long lastSeq = highestSeq(image, bootId);
        long[] newest = new long[(int) blocks];              // newest seq written to each block, 0 for none
        long rng = bootId ^ RNG_SALT;
        for (long seq = 1; seq <= lastSeq; seq++) {
            rng ^= rng << 13;
            rng ^= rng >>> 7;
            rng ^= rng << 17;
            newest[(int) Long.remainderUnsigned(rng, blocks)] = seq;
        }
        List<String> mismatches = new ArrayList<>();
        long count = 0;
        long records = 0;
        ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK);
        for (long offset = 0; offset < blocks * GuestRecord.SIZE; offset += CHUNK) {
            chunk.clear().limit((int) Math.min(CHUNK, blocks * GuestRecord.SIZE - offset));
            image.read(offset, chunk);
            for (int at = 0; at < chunk.limit(); at += GuestRecord.SIZE) {
                long blockOffset = offset + at;
                long want = newest[(int) (blockOffset / GuestRecord.SIZE)];
                if (want == 0 && prefill.holds(blockOffset)) {
                    String found = GuestRecord.check(chunk.position(at), blockOffset) instanceof GuestRecord.Block.Valid v
                            && v.bootId() == prefill.bootId() && v.seq() == prefill.seqAt(blockOffset) ? null : "not the prefill's record";
                    if (found != null && count++ < 10) {
                        mismatches.add("offset=" + blockOffset + " holds " + found + ", want the prefill's seq "
                                + prefill.seqAt(blockOffset));
                    }
                    continue;
                }
                String found = switch (GuestRecord.check(chunk.position(at), blockOffset)) {
                    case GuestRecord.Block.Zero z -> want == 0 ? null : "zero";
                    case GuestRecord.Block.Valid v when v.bootId() == bootId && v.seq() == want -> null;
                    case GuestRecord.Block.Valid v -> "seq " + v.seq() + (v.bootId() == bootId ? "" : " of boot id "
                            + Long.toHexString(v.bootId()));
                    case GuestRecord.Block.Bad b -> "a bad block (" + b.reason() + ")";
                };
                records += want == 0 ? 0 : 1;
                if (found != null && count++ < 10) {
                    mismatches.add("offset=" + blockOffset + " holds " + found + ", want " + (want == 0 ? "zero" : "seq " + want));
                }
            }
        }
        return new Replay(bootId, lastSeq, records, mismatches, count);
    }

    private static long highestSeq(BlockImage image, long bootId) throws IOException {
        long highest = 0;
        ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK);
        long usable = image.size() / GuestRecord.SIZE * GuestRecord.SIZE;
        for (long offset = 0; offset < usable; offset += CHUNK) {
            chunk.clear().limit((int) Math.min(CHUNK, usable - offset));
            image.read(offset, chunk);
            for (int at = 0; at < chunk.limit(); at += GuestRecord.SIZE) {
                if (GuestRecord.check(chunk.position(at), offset + at) instanceof GuestRecord.Block.Valid v && v.bootId() == bootId) {
                    highest = Math.max(highest, v.seq());
                }
            }
        }
        assertTrue(highest > 0, "no record of boot id " + Long.toHexString(bootId) + " on " + image.describe());
        return highest;
    }
}
