package ferry.migration;

import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Sends sets of granules of one disk: reads each run of adjacent granules through the source's
 * block layer ({@link SourceBlocks}), sends all-zero granules as BLOCK_ZERO frames and the rest as BLOCK_DATA, and records
 * each granule's digest. Runs are at most {@link MigrationWire#MAX_BLOCK_PAYLOAD} long.
 *
 * <p>Threads: the {@code migration-send} thread only; owns one direct read buffer.
 */
final class BlockSender {
    private final int diskIndex;
    private final BlockImage image;
    private final GranuleDigests digests;
    private final FrameWriter writer;
    private final MigrationStats stats;
    private final int granuleSize;
    private final long maxRunGranules;
    private final ByteBuffer buffer;
    private final ByteBuffer zeroes;
    private final ResendLedger ledger;
    private AfterRun afterEachRun = () -> { };

    /** What runs after each run of granules is sent. */
    @FunctionalInterface
    interface AfterRun {
        void afterRun() throws IOException, InterruptedException;
    }

    /** {@code ledger} hears of every run sent (data or zeroes), so that a resume knows what went out since the last checkpoint. */
    BlockSender(int diskIndex, BlockImage image, GranuleDigests digests, FrameWriter writer, MigrationStats stats, ResendLedger ledger) {
        this.diskIndex = diskIndex;
        this.ledger = ledger;
        this.image = image;
        this.digests = digests;
        this.writer = writer;
        this.stats = stats;
        this.granuleSize = digests.granuleSize();
        this.maxRunGranules = Math.max(1, MigrationWire.MAX_BLOCK_PAYLOAD / granuleSize);
        this.buffer = ByteBuffer.allocateDirect((int) (maxRunGranules * granuleSize));
        this.zeroes = ByteBuffer.allocateDirect(granuleSize);
    }

    /** Reads and sends every granule in {@code set}. Returns the payload bytes sent. */
    long sendData(DirtySnapshot set) throws IOException, InterruptedException {
        long before = stats.diskTransferredBytes();
        set.forEachRun(maxRunGranules, this::sendRun);
        return stats.diskTransferredBytes() - before;
    }

    /** Sends every granule in {@code set} as zeroes, without reading. */
    void sendZeroes(DirtySnapshot set) throws IOException, InterruptedException {
        set.forEachRun(Long.MAX_VALUE, (first, count) -> sendZeroRun(first, count));
    }

    /** Runs after each run of granules is sent (the bulk pass uses it to check convergence while it lasts). */
    void afterEachRun(AfterRun hook) {
        this.afterEachRun = hook;
    }

    private void sendRun(long firstGranule, long granuleCount) throws ImageException, IOException, InterruptedException {
        sendRunOnly(firstGranule, granuleCount);
        afterEachRun.afterRun();
    }

    private void sendRunOnly(long firstGranule, long granuleCount) throws ImageException, IOException, InterruptedException {
        long offset = firstGranule * granuleSize;
        int length = (int) Math.min(granuleCount * granuleSize, image.size() - offset);
        buffer.clear().limit(length);
        image.read(offset, buffer);
        buffer.flip();
        // Split the run at zero/data boundaries so that zero granules cost a header, not a granule.
        long runStart = firstGranule;
        boolean runIsZero = isZero(0, digests.granuleLength(firstGranule));
        for (long g = firstGranule + 1; g <= firstGranule + granuleCount; g++) {
            boolean end = g == firstGranule + granuleCount;
            boolean zero = !end && isZero((int) ((g - firstGranule) * granuleSize), digests.granuleLength(g));
            if (end || zero != runIsZero) {
                emit(runStart, g - runStart, runIsZero, firstGranule);
                runStart = g;
                runIsZero = zero;
            }
        }
    }

    private boolean isZero(int position, int length) {
        ByteBuffer granule = buffer.slice(position, length);
        return granule.mismatch(zeroes.slice(0, length)) == -1;
    }

    private void emit(long first, long count, boolean zero, long bufferFirstGranule) throws IOException, InterruptedException {
        if (zero) {
            sendZeroRun(first, count);
            return;
        }
        int position = (int) ((first - bufferFirstGranule) * granuleSize);
        long offset = first * granuleSize;
        int length = (int) Math.min(count * granuleSize, image.size() - offset);
        ByteBuffer data = buffer.slice(position, length);
        writer.send(new Frame.BlockData(diskIndex, offset, data));
        digests.recordData(first, data);
        stats.addDiskBytes(length);
        ledger.sent(diskIndex, first, count, length);
    }

    private void sendZeroRun(long first, long count) throws IOException, InterruptedException {
        long offset = first * granuleSize;
        long length = Math.min(count * granuleSize, image.size() - offset);
        writer.send(new Frame.BlockZero(diskIndex, offset, length));
        digests.recordZero(first, count);
        ledger.sent(diskIndex, first, count, 0);
    }
}
