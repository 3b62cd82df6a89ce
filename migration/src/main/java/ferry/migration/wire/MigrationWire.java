package ferry.migration.wire;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.zip.CRC32C;

/**
 * Ferry's migration stream: constants and codecs, big-endian. Session, states and versioning:
 * docs/migration-protocol.md.
 * <pre>
 *  | magic "FERY" u32 | type u16 | flags u16 | payload length u32 | crc32c u32 | payload ...
 *  0                  4          6           8                    12           16
 * </pre>
 * The CRC32C covers header bytes 0..11 and the whole payload, so a flipped bit anywhere in a frame
 * is caught before the frame is acted on. Type 0 is reserved (never valid).
 */
public final class MigrationWire {
    private MigrationWire() {}

    public static final int MAGIC = 0x46455259;                 // "FERY"
    public static final int HEADER_LENGTH = 16;
    public static final int MAGIC_OFFSET = 0, TYPE_OFFSET = 4, FLAGS_OFFSET = 6, LENGTH_OFFSET = 8, CRC_OFFSET = 12;
    /**
     * Protocol version carried in HELLO. A receiver refuses a version it does not know. Version 2 added
     * the VM fingerprint at the end of HELLO; version 3 the migration id and resume claim after it, the
     * journal checkpoint in WELCOME, and CHECKPOINT/CONFIRMED. Older HELLOs still decode (without what
     * they lack), so that the refusal can name the version.
     */
    public static final int VERSION = 3;
    /** The first version whose HELLO carries a migration id and may carry a resume claim. */
    public static final int VERSION_RESUME = 3;
    /** Most sampled granules per disk a resume claim may carry. */
    public static final int MAX_SAMPLES = 256;
    /** The first version whose HELLO carries a VM fingerprint. */
    public static final int VERSION_FINGERPRINT = 2;
    /** Most items a HELLO's fingerprint may carry (a machine with every PCI slot and function used has 256). */
    public static final int MAX_FINGERPRINT_ITEMS = 1024;
    /** Largest payload a receiver accepts; BLOCK_DATA frames carry at most {@link #MAX_BLOCK_PAYLOAD}. */
    public static final int MAX_PAYLOAD = 16 << 20;
    public static final int MAX_BLOCK_PAYLOAD = 1 << 20;
    public static final int BLOCK_DATA_PREFIX = 2 + 8;          // disk u16, offset u64
    public static final int MAX_STRING = 4096;
    public static final int MAX_DISKS = 64;
    /** Granule sizes: powers of two in this range (the source's {@code granule-size} parameter has the same bounds). */
    public static final int MIN_GRANULE_SIZE = 4096, MAX_GRANULE_SIZE = 16 << 20;
    /**
     * Largest disk a HELLO may offer: 1 PiB, far above QEMU's raw images on ext4 (16 TiB) and anything
     * migrated over one stream, well below where sizes overflow in offset arithmetic.
     */
    public static final long MAX_DISK_SIZE = 1L << 50;

    /** Payload bytes of a DISKS_DONE for disks of these sizes at {@code granuleSize}. */
    public static long disksDoneLength(List<Long> diskSizes, int granuleSize) {
        long bytes = 2;
        for (long size : diskSizes) {
            long granules = (size + granuleSize - 1) / granuleSize;
            bytes += 4 + 4 * ((granules + 1023) / 1024);   // GranuleDigests.GROUP_GRANULES
        }
        return bytes;
    }

    /**
     * The smallest granule size, from {@code wanted} up by doubling, whose DISKS_DONE fits in one frame
     * ({@link #MAX_PAYLOAD}); at 4 KiB granules that holds about 16 TiB of disks. -1 when even
     * {@link #MAX_GRANULE_SIZE} is too small.
     */
    public static int smallestGranuleFor(List<Long> diskSizes, int wanted) {
        for (long granule = wanted; granule <= MAX_GRANULE_SIZE; granule *= 2) {
            if (disksDoneLength(diskSizes, (int) granule) <= MAX_PAYLOAD) {
                return (int) granule;
            }
        }
        return -1;
    }

    /** Largest payload of each type; frames of fixed layout are refused from the header alone, before a payload buffer is sized. */
    static int maxPayload(Type type) {
        return switch (type) {
            case INVALID, RAM_EOF, VERIFIED, DEST_READY, COMMIT, RUNNING -> 0;
            case CHECKPOINT, CONFIRMED -> 8;
            case BLOCK_ZERO -> 2 + 8 + 8;
            case PASS_END -> 4 + 8;
            case WELCOME -> 2 + MAX_DISKS + 8;
            case ERROR -> 2 * (2 + MAX_STRING);
            case CANCEL -> 2 + MAX_STRING;
            case HELLO, BLOCK_DATA, RAM, DISKS_DONE -> MAX_PAYLOAD;
        };
    }

    /** Frame types. The numbers are the wire values; 0 is reserved. */
    public enum Type {
        INVALID(0), HELLO(1), WELCOME(2), BLOCK_DATA(3), BLOCK_ZERO(4), PASS_END(5), RAM(6), RAM_EOF(7),
        DISKS_DONE(8), VERIFIED(9), DEST_READY(10), COMMIT(11), RUNNING(12), ERROR(13), CANCEL(14),
        CHECKPOINT(15), CONFIRMED(16);

        public final int code;

        Type(int code) {
            this.code = code;
        }

        private static final Type[] BY_CODE = new Type[17];
        static {
            for (Type t : values()) {
                BY_CODE[t.code] = t;
            }
        }

        /** The type for a wire value, or null when unknown (the caller refuses the frame). */
        public static Type of(int code) {
            return code > 0 && code < BY_CODE.length ? BY_CODE[code] : null;
        }
    }

    /** A malformed frame: which check failed and where. */
    public static final class WireException extends Exception {
        public WireException(String message) {
            super(message);
        }
    }

    /** A decoded header. */
    public record Header(Type type, int flags, int payloadLength, int crc) { }

    /** Checks magic, type and length; the CRC is checked once the payload is in ({@link #checkCrc}). */
    public static Header decodeHeader(ByteBuffer header) throws WireException {
        ByteBuffer h = header.duplicate().order(ByteOrder.BIG_ENDIAN);
        int base = h.position();
        int magic = h.getInt(base + MAGIC_OFFSET);
        if (magic != MAGIC) {
            throw new WireException(String.format("bad frame magic: got 0x%08x, want 0x%08x (not a Ferry migration stream, or it lost sync)", magic, MAGIC));
        }
        int code = Short.toUnsignedInt(h.getShort(base + TYPE_OFFSET));
        Type type = Type.of(code);
        if (type == null) {
            throw new WireException("unknown frame type: " + code + " (peer speaks a newer protocol?)");
        }
        int flags = Short.toUnsignedInt(h.getShort(base + FLAGS_OFFSET));
        int length = h.getInt(base + LENGTH_OFFSET);
        if (length < 0 || length > maxPayload(type)) {
            throw new WireException("frame too large: type=" + type + " length=" + Integer.toUnsignedString(length) + " max="
                    + maxPayload(type));
        }
        return new Header(type, flags, length, h.getInt(base + CRC_OFFSET));
    }

    /** Verifies the frame's CRC32C over header bytes 0..11 and the payload. */
    public static void checkCrc(ByteBuffer header, Header decoded, ByteBuffer payload) throws WireException {
        int actual = crc(header, payload);
        if (actual != decoded.crc()) {
            throw new WireException(String.format("frame checksum mismatch: type=%s length=%d crc=0x%08x expected=0x%08x (corrupted in transit)",
                    decoded.type(), decoded.payloadLength(), actual, decoded.crc()));
        }
    }

    static int crc(ByteBuffer header, ByteBuffer payload) {
        CRC32C crc = new CRC32C();
        ByteBuffer h = header.duplicate();
        h.limit(h.position() + CRC_OFFSET);
        crc.update(h);
        crc.update(payload.duplicate());
        return (int) crc.getValue();
    }

    /** Writes the header for {@code payload} (position..limit) into {@code header} at its position. */
    public static void encodeHeader(ByteBuffer header, Type type, int flags, ByteBuffer payload) {
        int base = header.position();
        header.order(ByteOrder.BIG_ENDIAN);
        header.putInt(base + MAGIC_OFFSET, MAGIC);
        header.putShort(base + TYPE_OFFSET, (short) type.code);
        header.putShort(base + FLAGS_OFFSET, (short) flags);
        header.putInt(base + LENGTH_OFFSET, payload.remaining());
        header.putInt(base + CRC_OFFSET, 0);
        ByteBuffer view = header.duplicate();
        view.position(base).limit(base + HEADER_LENGTH);
        header.putInt(base + CRC_OFFSET, crc(view.slice(), payload));
    }

    // ---- payloads -------------------------------------------------------------------------------

    /**
     * Encodes every frame's payload except BLOCK_DATA and RAM, whose bulk bytes the writer sends
     * without copying (see {@code FrameWriter}). Returns a buffer ready to read.
     */
    public static ByteBuffer encodePayload(Frame frame) {
        Out out = new Out();
        switch (frame) {
            case Frame.Hello h -> {
                out.u16(h.version()).string(h.vmName()).u32(h.granuleSize()).u8(h.copyDisks() ? 1 : 0).u8(h.incremental() ? 1 : 0)
                        .u16(h.disks().size());
                for (Frame.DiskOffer d : h.disks()) {
                    out.string(d.id()).u64(d.size()).string(d.format()).u8(d.base().isPresent() ? 1 : 0);
                    d.base().ifPresent(b -> out.string(b.fileName()).u64(b.size()).bytes(b.sha256()));
                }
                if (h.version() >= VERSION_FINGERPRINT) {
                    out.u16(h.fingerprint().items().size());
                    h.fingerprint().items().forEach(item -> out.string(item.key()).string(item.value()));
                }
                if (h.version() >= VERSION_RESUME) {
                    out.u64(h.migrationId().getMostSignificantBits()).u64(h.migrationId().getLeastSignificantBits());
                    out.u8(h.resume().isPresent() ? 1 : 0);
                    h.resume().ifPresent(claim -> {
                        out.u64(claim.confirmedCheckpoint()).u16(claim.samples().size());
                        for (List<Frame.Sample> disk : claim.samples()) {
                            out.u16(disk.size());
                            disk.forEach(sample -> out.u64(sample.granule()).u32(sample.digest()));
                        }
                    });
                }
            }
            case Frame.Welcome w -> {
                out.u16(w.freshDisks().size());
                w.freshDisks().forEach(f -> out.u8(f ? 1 : 0));
                out.u64(w.checkpoint());
            }
            case Frame.Checkpoint c -> out.u64(c.number());
            case Frame.Confirmed c -> out.u64(c.number());
            case Frame.BlockData b -> {
                out.u16(b.disk()).u64(b.offset());
                out.buffer(b.data());
            }
            case Frame.BlockZero z -> out.u16(z.disk()).u64(z.offset()).u64(z.length());
            case Frame.PassEnd p -> out.u32(p.pass()).u64(p.dirtyBytesLeft());
            case Frame.Ram r -> out.buffer(r.data());
            case Frame.RamEof e -> { }
            case Frame.DisksDone d -> {
                out.u16(d.groupDigests().size());
                for (int[] digests : d.groupDigests()) {
                    out.u32(digests.length);
                    for (int digest : digests) {
                        out.u32(digest);
                    }
                }
            }
            case Frame.Verified v -> { }
            case Frame.DestReady r -> { }
            case Frame.Commit c -> { }
            case Frame.Running r -> { }
            case Frame.Error e -> out.string(e.phase()).string(e.message());
            case Frame.Cancel c -> out.string(c.reason());
        }
        return out.done();
    }

    /** Decodes a payload whose CRC has been checked. BLOCK_DATA and RAM keep a view of {@code payload}. */
    public static Frame decodePayload(Type type, ByteBuffer payload) throws WireException {
        In in = new In(type, payload.duplicate().order(ByteOrder.BIG_ENDIAN));
        Frame frame = switch (type) {
            case INVALID -> throw new WireException("frame type 0 is reserved");
            case HELLO -> {
                int version = in.u16();
                String name = in.string();
                int granule = in.u32();
                boolean copyDisks = in.u8() != 0;
                boolean incremental = in.u8() != 0;
                int count = in.u16();
                if (count > MAX_DISKS) {
                    throw new WireException("HELLO offers " + count + " disks, max " + MAX_DISKS);
                }
                List<Frame.DiskOffer> disks = new ArrayList<>(count);
                for (int i = 0; i < count; i++) {
                    String id = in.string();
                    long size = in.u64();
                    String format = in.string();
                    Optional<Frame.BaseIdentity> base = in.u8() != 0
                            ? Optional.of(new Frame.BaseIdentity(in.string(), in.u64(), in.bytes(32)))
                            : Optional.empty();
                    disks.add(new Frame.DiskOffer(id, size, format, base));
                }
                List<VmFingerprint.Item> items = new ArrayList<>();
                if (version >= VERSION_FINGERPRINT) {
                    int itemCount = in.u16();
                    if (itemCount > MAX_FINGERPRINT_ITEMS) {
                        throw new WireException("HELLO's fingerprint has " + itemCount + " items, max " + MAX_FINGERPRINT_ITEMS);
                    }
                    for (int i = 0; i < itemCount; i++) {
                        items.add(new VmFingerprint.Item(in.string(), in.string()));
                    }
                }
                java.util.UUID id = new java.util.UUID(0, 0);
                Optional<Frame.ResumeClaim> resume = Optional.empty();
                if (version >= VERSION_RESUME) {
                    id = new java.util.UUID(in.u64(), in.u64());
                    if (in.u8() != 0) {
                        long confirmed = in.u64();
                        int sampledDisks = in.u16();
                        if (sampledDisks > MAX_DISKS) {
                            throw new WireException("HELLO's resume claim samples " + sampledDisks + " disks, max " + MAX_DISKS);
                        }
                        List<List<Frame.Sample>> samples = new ArrayList<>(sampledDisks);
                        for (int d = 0; d < sampledDisks; d++) {
                            int sampleCount = in.u16();
                            if (sampleCount > MAX_SAMPLES) {
                                throw new WireException("HELLO's resume claim has " + sampleCount + " samples for a disk, max " + MAX_SAMPLES);
                            }
                            List<Frame.Sample> disk = new ArrayList<>(sampleCount);
                            for (int i = 0; i < sampleCount; i++) {
                                disk.add(new Frame.Sample(in.u64(), in.u32()));
                            }
                            samples.add(List.copyOf(disk));
                        }
                        resume = Optional.of(new Frame.ResumeClaim(confirmed, List.copyOf(samples)));
                    }
                }
                yield new Frame.Hello(version, name, granule, copyDisks, incremental, disks, new VmFingerprint(items), id, resume);
            }
            case WELCOME -> {
                int count = in.u16();
                if (count > MAX_DISKS) {
                    throw new WireException("WELCOME lists " + count + " disks, max " + MAX_DISKS);
                }
                List<Boolean> fresh = new ArrayList<>(count);
                for (int i = 0; i < count; i++) {
                    fresh.add(in.u8() != 0);
                }
                yield new Frame.Welcome(fresh, in.u64());
            }
            case CHECKPOINT -> new Frame.Checkpoint(in.u64());
            case CONFIRMED -> new Frame.Confirmed(in.u64());
            case BLOCK_DATA -> {
                int disk = in.u16();
                long offset = in.u64();
                yield new Frame.BlockData(disk, offset, in.rest());
            }
            case BLOCK_ZERO -> new Frame.BlockZero(in.u16(), in.u64(), in.u64());
            case PASS_END -> new Frame.PassEnd(in.u32(), in.u64());
            case RAM -> new Frame.Ram(in.rest());
            case RAM_EOF -> new Frame.RamEof();
            case DISKS_DONE -> {
                int disks = in.u16();
                if (disks > MAX_DISKS) {
                    throw new WireException("DISKS_DONE lists " + disks + " disks, max " + MAX_DISKS);
                }
                List<int[]> all = new ArrayList<>(disks);
                for (int d = 0; d < disks; d++) {
                    int count = in.u32();
                    if (count < 0 || (long) count * 4 > in.remaining()) {
                        throw new WireException("DISKS_DONE digest count " + count + " exceeds the payload");
                    }
                    int[] digests = new int[count];
                    for (int i = 0; i < count; i++) {
                        digests[i] = in.u32();
                    }
                    all.add(digests);
                }
                yield new Frame.DisksDone(all);
            }
            case VERIFIED -> new Frame.Verified();
            case DEST_READY -> new Frame.DestReady();
            case COMMIT -> new Frame.Commit();
            case RUNNING -> new Frame.Running();
            case ERROR -> new Frame.Error(in.string(), in.string());
            case CANCEL -> new Frame.Cancel(in.string());
        };
        in.end();
        return frame;
    }

    private static final class Out {
        private ByteBuffer buffer = ByteBuffer.allocate(256);

        private Out need(int bytes) {
            if (buffer.remaining() < bytes) {
                ByteBuffer bigger = ByteBuffer.allocate(Math.max(buffer.capacity() * 2, buffer.position() + bytes));
                buffer.flip();
                bigger.put(buffer);
                buffer = bigger;
            }
            return this;
        }

        Out u8(int v) { need(1).buffer.put((byte) v); return this; }
        Out u16(int v) { need(2).buffer.putShort((short) v); return this; }
        Out u32(int v) { need(4).buffer.putInt(v); return this; }
        Out u64(long v) { need(8).buffer.putLong(v); return this; }

        Out bytes(byte[] v) { need(v.length).buffer.put(v); return this; }

        Out buffer(ByteBuffer v) { need(v.remaining()).buffer.put(v.duplicate()); return this; }

        Out string(String s) {
            byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
            if (utf8.length > MAX_STRING) {
                utf8 = java.util.Arrays.copyOf(utf8, MAX_STRING);
            }
            return u16(utf8.length).bytes(utf8);
        }

        ByteBuffer done() {
            return buffer.flip();
        }
    }

    private static final class In {
        private final Type type;
        private final ByteBuffer buffer;

        In(Type type, ByteBuffer buffer) {
            this.type = type;
            this.buffer = buffer;
        }

        private void need(int bytes) throws WireException {
            if (buffer.remaining() < bytes) {
                throw new WireException("truncated " + type + " payload: needs " + bytes + " more bytes at payload offset "
                        + buffer.position() + ", has " + buffer.remaining());
            }
        }

        int remaining() { return buffer.remaining(); }
        int u8() throws WireException { need(1); return Byte.toUnsignedInt(buffer.get()); }
        int u16() throws WireException { need(2); return Short.toUnsignedInt(buffer.getShort()); }
        int u32() throws WireException { need(4); return buffer.getInt(); }
        long u64() throws WireException { need(8); return buffer.getLong(); }

        byte[] bytes(int length) throws WireException {
            need(length);
            byte[] out = new byte[length];
            buffer.get(out);
            return out;
        }

        String string() throws WireException {
            int length = u16();
            if (length > MAX_STRING) {
                throw new WireException(type + " string of " + length + " bytes exceeds " + MAX_STRING);
            }
            return new String(bytes(length), StandardCharsets.UTF_8);
        }

        ByteBuffer rest() {
            ByteBuffer rest = buffer.slice();
            buffer.position(buffer.limit());
            return rest;
        }

        void end() throws WireException {
            if (buffer.hasRemaining()) {
                throw new WireException(type + " payload has " + buffer.remaining() + " unexpected trailing bytes");
            }
        }
    }
}
