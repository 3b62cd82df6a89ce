package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Executes validated requests against one export's image and sends their replies. Replies are
 * serialized by one lock, and each reply (all its chunks) goes out under it in one gathering write,
 * so replies of concurrent requests never interleave. Called by the connection's workers (and by the
 * reader for rejected requests); the image accepts concurrent calls.
 */
final class Responder {
    private static final System.Logger LOG = System.getLogger(Responder.class.getName());
    /** Reads at least this long look for holes (OFFSET_HOLE chunks) when structured replies are on. */
    static final int SPARSE_READ_MIN_LENGTH = 64 << 10;
    private static final int MAX_READ_CHUNKS = 64;
    private static final int BASE_ALLOCATION_ID = 1;

    private final GatheringByteChannel out;
    private final BlockImage image;
    private final boolean structured;
    private final String peer;
    private final ReentrantLock sending = new ReentrantLock();

    Responder(GatheringByteChannel out, BlockImage image, boolean structured, String peer) {
        this.out = out;
        this.image = image;
        this.structured = structured;
        this.peer = peer;
    }

    /** Runs one request and sends its reply; an image failure becomes an error reply. */
    void execute(NbdRequest request, Slot slot) throws IOException {
        try {
            switch (request) {
                case NbdRequest.Read r -> read(r, slot);
                case NbdRequest.Write w -> {
                    image.write(w.offset(), slot.data(w.length()).position(0).limit(w.length()));
                    done(w.cookie(), w.fua(), slot);
                }
                case NbdRequest.Flush f -> done(f.cookie(), true, slot);
                case NbdRequest.Trim t -> {
                    if (t.length() > 0) {
                        image.trim(t.offset(), t.length());
                    }
                    done(t.cookie(), t.fua(), slot);
                }
                case NbdRequest.WriteZeroes z -> writeZeroes(z, slot);
                case NbdRequest.BlockStatus b -> blockStatus(b, slot);
                case NbdRequest.Disconnect d -> throw new IllegalStateException("DISC is the reader's, not a worker's");
            }
        } catch (ImageException e) {
            int error = errorOf(e.kind());
            LOG.log(error == EIO ? Level.WARNING : Level.DEBUG, () -> "request failed: peer=" + peer
                    + " command=" + nameOfCommand(typeOf(request)) + " error=" + nameOfError(error) + ": " + e.getMessage());
            replyError(request.cookie(), typeOf(request), error, slot.meta);
        }
    }

    private void done(long cookie, boolean flush, Slot slot) throws IOException {
        if (flush) {
            image.flush();
        }
        ByteBuffer header = slot.meta.clear();
        encodeSimpleReply(header, OK, cookie);
        send(header.flip());
    }

    private void writeZeroes(NbdRequest.WriteZeroes z, Slot slot) throws IOException {
        // Punching a hole is a metadata update; zeroing with NO_HOLE may have to write every byte,
        // so a FAST_ZERO request with NO_HOLE is refused as the spec allows, and the client writes instead.
        if (z.fastZero() && z.noHole()) {
            replyError(z.cookie(), CMD_WRITE_ZEROES, ENOTSUP, slot.meta);
            return;
        }
        if (z.length() > 0) {
            image.writeZeroes(z.offset(), z.length(), !z.noHole());
        }
        done(z.cookie(), z.fua(), slot);
    }

    private void read(NbdRequest.Read r, Slot slot) throws IOException {
        ByteBuffer data = slot.data(r.length());
        ByteBuffer header = slot.meta.clear();
        if (!structured) {
            image.read(r.offset(), data);
            encodeSimpleReply(header, OK, r.cookie());
            slot.pair[0] = header.flip();
            slot.pair[1] = data.flip();
            send(slot.pair);
            return;
        }
        if (r.length() == 0) {
            encodeChunkHeader(header, REPLY_FLAG_DONE, REPLY_TYPE_NONE, r.cookie(), 0);
            send(header.flip());
            return;
        }
        List<Extent> extents = !r.df() && r.length() >= SPARSE_READ_MIN_LENGTH ? image.extents(r.offset(), r.length()) : List.of();
        if (extents.size() <= 1 && (extents.isEmpty() || !extents.getFirst().readsAsZero())) {
            image.read(r.offset(), data);
            encodeChunkHeader(header, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, r.cookie(), 8L + r.length());
            header.putLong(r.offset());
            slot.pair[0] = header.flip();
            slot.pair[1] = data.flip();
            send(slot.pair);
            return;
        }
        sparseRead(r, extents, data, header);
    }

    /** One chunk per extent: OFFSET_HOLE for zero runs, OFFSET_DATA for the rest (at most MAX_READ_CHUNKS). */
    private void sparseRead(NbdRequest.Read r, List<Extent> extents, ByteBuffer data, ByteBuffer header) throws IOException {
        long end = r.offset() + r.length();
        ByteBuffer[] parts = new ByteBuffer[2 * MAX_READ_CHUNKS];
        int count = 0;
        long pos = r.offset();
        for (int i = 0; pos < end; i++) {
            boolean last = i >= extents.size() - 1 || i == MAX_READ_CHUNKS - 1;
            Extent e = i < extents.size() ? extents.get(i) : null;
            long chunkEnd = last || e == null ? end : Math.min(end, e.end());
            int length = (int) (chunkEnd - pos);
            int flags = chunkEnd == end ? REPLY_FLAG_DONE : 0;
            int start = header.position();
            if (e != null && e.readsAsZero() && chunkEnd <= e.end()) {
                encodeChunkHeader(header, flags, REPLY_TYPE_OFFSET_HOLE, r.cookie(), 12);
                header.putLong(pos).putInt(length);
                parts[count++] = header.slice(start, header.position() - start);
            } else {
                int at = (int) (pos - r.offset());
                ByteBuffer slice = data.slice(at, length);
                image.read(pos, slice);
                encodeChunkHeader(header, flags, REPLY_TYPE_OFFSET_DATA, r.cookie(), 8L + length);
                header.putLong(pos);
                parts[count++] = header.slice(start, header.position() - start);
                parts[count++] = data.slice(at, length);
            }
            pos = chunkEnd;
        }
        send(java.util.Arrays.copyOf(parts, count));
    }

    private void blockStatus(NbdRequest.BlockStatus b, Slot slot) throws IOException {
        ByteBuffer reply = slot.meta.clear();
        reply.position(STRUCTURED_HEADER_LENGTH + 4);
        Descriptors d = new Descriptors(reply, b.reqOne() ? 1 : Slot.MAX_DESCRIPTORS);
        describe(image, b.offset(), b.offset() + b.length(), d);
        int length = reply.position() - STRUCTURED_HEADER_LENGTH;
        reply.flip();
        encodeChunkHeader(reply, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, b.cookie(), length);
        reply.putInt(BASE_ALLOCATION_ID);
        send(reply.position(0));
    }

    /** Block-status descriptors collected in a reply buffer, merged while adjacent states match. */
    private static final class Descriptors {
        private final ByteBuffer reply;
        private final int max;
        private int count;
        private int lastFlags = -1;

        Descriptors(ByteBuffer reply, int max) {
            this.reply = reply;
            this.max = max;
        }

        /** False when the reply is full and the run could not be described. */
        boolean add(long length, int flags) {
            if (flags == lastFlags) {
                int at = reply.position() - 8;
                reply.putInt(at, (int) (Integer.toUnsignedLong(reply.getInt(at)) + length));
                return true;
            }
            if (count == max) {
                return false;
            }
            reply.putInt((int) length).putInt(flags);
            lastFlags = flags;
            count++;
            return true;
        }
    }

    /**
     * Describes {@code [offset, end)} of {@code layer}, resolving BACKING runs through the backing
     * chain; returns how far it got (short of {@code end} once the reply is full).
     */
    private static long describe(BlockImage layer, long offset, long end, Descriptors d) throws ImageException {
        long pos = offset;
        while (pos < end) {
            long before = pos;
            for (Extent e : layer.extents(pos, end - pos)) {
                long to = Math.min(e.end(), end);
                if (e.offset() > pos || to <= pos) {
                    break;
                }
                long reached = e.type() == Extent.Type.BACKING
                        ? backing(layer, pos, to, d)
                        : (d.add(to - pos, stateOf(e.type())) ? to : pos);
                if (reached < to) {
                    return reached;
                }
                pos = to;
            }
            if (pos == before) {
                throw new ImageException(ImageException.Kind.IO,
                        "extents made no progress: offset=" + pos + " image=" + layer.describe());
            }
        }
        return pos;
    }

    /** The merged view of a BACKING run: the backing image's state, and holes past its end. */
    private static long backing(BlockImage layer, long from, long to, Descriptors d) throws ImageException {
        BlockImage backing = layer.backing().orElse(null);
        long inside = backing == null ? from : Math.max(from, Math.min(to, backing.size()));
        long pos = from;
        if (inside > from) {
            pos = describe(backing, from, inside, d);
            if (pos < inside) {
                return pos;
            }
        }
        return pos < to && d.add(to - pos, STATE_HOLE | STATE_ZERO) ? to : pos;
    }

    static int stateOf(Extent.Type type) {
        return switch (type) {
            case HOLE -> STATE_HOLE | STATE_ZERO;
            case ZERO -> STATE_ZERO;
            case DATA -> 0;
            case BACKING -> throw new IllegalArgumentException("BACKING is resolved through the backing image");
        };
    }

    /** An error reply: a structured ERROR chunk for READ and BLOCK_STATUS when negotiated, else simple. */
    void replyError(long cookie, int type, int error, ByteBuffer scratch) throws IOException {
        ByteBuffer header = scratch.clear();
        if (structured && (type == CMD_READ || type == CMD_BLOCK_STATUS)) {
            encodeChunkHeader(header, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, 6);
            header.putInt(error).putShort((short) 0);
        } else {
            encodeSimpleReply(header, error, cookie);
        }
        send(header.flip());
    }

    private void send(ByteBuffer... buffers) throws IOException {
        sending.lock();
        try {
            long left = 0;
            for (ByteBuffer b : buffers) {
                left += b.remaining();
            }
            while (left > 0) {
                left -= out.write(buffers);
            }
        } finally {
            sending.unlock();
        }
    }

    private static int typeOf(NbdRequest request) {
        return switch (request) {
            case NbdRequest.Read r -> CMD_READ;
            case NbdRequest.Write w -> CMD_WRITE;
            case NbdRequest.Flush f -> CMD_FLUSH;
            case NbdRequest.Trim t -> CMD_TRIM;
            case NbdRequest.WriteZeroes z -> CMD_WRITE_ZEROES;
            case NbdRequest.BlockStatus b -> CMD_BLOCK_STATUS;
            case NbdRequest.Disconnect d -> CMD_DISC;
        };
    }
}
