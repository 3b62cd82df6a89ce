package ferry.nbd;

import java.lang.foreign.Arena;
import java.nio.ByteBuffer;

/**
 * One in-flight request's buffers, owned by its connection: {@code data} (grown to the largest
 * payload seen, released after use when above {@link #KEEP_LENGTH}) and {@code meta} for reply
 * headers and block-status descriptors. Hand-over: the reader fills it, one worker uses it and
 * returns it to the connection's idle queue; nobody else touches it meanwhile.
 */
final class Slot {
    /** Data buffers up to this size stay allocated between requests (qemu's 2 MiB convert buffers fit). */
    static final int KEEP_LENGTH = 4 << 20;
    static final int MIN_LENGTH = 128 << 10;
    /** Room for the header and up to MAX_DESCRIPTORS block-status descriptors. */
    static final int MAX_DESCRIPTORS = 8192;
    static final int META_CAPACITY = 64 + 8 * MAX_DESCRIPTORS;

    final ByteBuffer meta = ByteBuffer.allocateDirect(META_CAPACITY);
    final ByteBuffer[] pair = new ByteBuffer[2];
    private Arena arena;
    private ByteBuffer data;

    /** The data buffer cleared to exactly {@code length} bytes. */
    ByteBuffer data(int length) {
        if (data == null || data.capacity() < length) {
            free();
            int capacity = Math.max(MIN_LENGTH, Integer.highestOneBit(Math.max(1, length - 1)) << 1);
            capacity = Math.min(capacity, NbdWire.MAX_PAYLOAD_LENGTH);
            // A shared arena because the reader fills the buffer and a worker drains it; closing it
            // frees the memory now rather than at some later GC.
            arena = Arena.ofShared();
            data = arena.allocate(capacity, 4096).asByteBuffer();
        }
        return data.clear().limit(length);
    }

    /** After the reply is sent: drop a large buffer so that idle connections stay small. */
    void release() {
        if (data != null && data.capacity() > KEEP_LENGTH) {
            free();
        }
    }

    void free() {
        if (arena != null) {
            arena.close();
            arena = null;
            data = null;
        }
    }
}
