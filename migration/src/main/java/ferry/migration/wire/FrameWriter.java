package ferry.migration.wire;

import ferry.migration.RateLimiter;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.GatheringByteChannel;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

/**
 * Writes frames to the one migration stream. Several threads send (the disk copier, the RAM tunnel,
 * the control logic): each frame goes out whole under a fair lock, after the shared {@link RateLimiter}
 * has granted its bytes (waited for outside the lock), so one bandwidth budget covers disks and RAM
 * together and a slow link never lets one sender starve the other: at 64 KiB/s one 256 KiB RAM chunk
 * holds 4 s of budget, and an unfair lock kept the disk copier out for minutes (MigrationIT).
 * BLOCK_DATA and RAM payloads are written from the caller's buffer without a copy.
 */
public final class FrameWriter {
    private final GatheringByteChannel channel;
    private final RateLimiter limiter;
    /** Fair: the disk copier and the RAM tunnel alternate frames; neither starves the other. */
    private final ReentrantLock lock = new ReentrantLock(true);
    private final ByteBuffer header = ByteBuffer.allocateDirect(MigrationWire.HEADER_LENGTH).order(ByteOrder.BIG_ENDIAN);
    private final ByteBuffer prefix = ByteBuffer.allocateDirect(MigrationWire.BLOCK_DATA_PREFIX).order(ByteOrder.BIG_ENDIAN);
    private final AtomicLong bytesWritten = new AtomicLong();

    public FrameWriter(GatheringByteChannel channel, RateLimiter limiter) {
        this.channel = channel;
        this.limiter = limiter;
    }

    /** Every byte this writer put on the wire, headers included. */
    public long bytesWritten() {
        return bytesWritten.get();
    }

    public void send(Frame frame) throws IOException, InterruptedException {
        switch (frame) {
            case Frame.BlockData block -> sendBlock(block);
            case Frame.Ram ram -> sendRaw(MigrationWire.Type.RAM, null, ram.data());
            default -> sendRaw(frame.type(), null, MigrationWire.encodePayload(frame));
        }
    }

    private void sendBlock(Frame.BlockData block) throws IOException, InterruptedException {
        // Tokens first, outside the lock: a sender waiting for bandwidth must not hold the stream.
        limiter.acquire(MigrationWire.HEADER_LENGTH + MigrationWire.BLOCK_DATA_PREFIX + block.data().remaining());
        lock.lockInterruptibly();
        try {
            prefix.clear();
            prefix.putShort((short) block.disk()).putLong(block.offset()).flip();
            writeLocked(MigrationWire.Type.BLOCK_DATA, prefix, block.data());
        } finally {
            lock.unlock();
        }
    }

    private void sendRaw(MigrationWire.Type type, ByteBuffer first, ByteBuffer payload) throws IOException, InterruptedException {
        limiter.acquire(MigrationWire.HEADER_LENGTH + (first == null ? 0 : first.remaining()) + payload.remaining());
        lock.lockInterruptibly();
        try {
            writeLocked(type, first, payload);
        } finally {
            lock.unlock();
        }
    }

    private void writeLocked(MigrationWire.Type type, ByteBuffer first, ByteBuffer payload) throws IOException, InterruptedException {
        int firstLength = first == null ? 0 : first.remaining();
        long length = (long) firstLength + payload.remaining();
        if (length > MigrationWire.MAX_PAYLOAD) {
            throw new IllegalArgumentException("frame payload too large: type=" + type + " length=" + length);
        }
        header.clear();
        header.putInt(MigrationWire.MAGIC_OFFSET, MigrationWire.MAGIC);
        header.putShort(MigrationWire.TYPE_OFFSET, (short) type.code);
        header.putShort(MigrationWire.FLAGS_OFFSET, (short) 0);
        header.putInt(MigrationWire.LENGTH_OFFSET, (int) length);
        CRC32C crc = new CRC32C();
        header.limit(MigrationWire.CRC_OFFSET);
        crc.update(header.duplicate());
        if (first != null) {
            crc.update(first.duplicate());
        }
        crc.update(payload.duplicate());
        header.limit(MigrationWire.HEADER_LENGTH);
        header.putInt(MigrationWire.CRC_OFFSET, (int) crc.getValue());
        header.position(0);

        long total = MigrationWire.HEADER_LENGTH + length;
        ByteBuffer data = payload.duplicate();
        ByteBuffer[] parts = first == null ? new ByteBuffer[] {header, data} : new ByteBuffer[] {header, first, data};
        long left = total;
        while (left > 0) {
            long n = channel.write(parts);
            if (n < 0) {
                throw new IOException("migration stream closed while writing " + type);
            }
            left -= n;
        }
        bytesWritten.addAndGet(total);
    }
}
