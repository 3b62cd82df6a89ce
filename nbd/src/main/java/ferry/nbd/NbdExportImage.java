package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A read-write {@link BlockImage} over an NBD export, for reading (and on the destination writing)
 * a disk that QEMU serves itself ({@code nbd-server-start} + {@code block-export-add}, or
 * {@code qemu-nbd}) on a unix socket.
 *
 * <p>Mapping: {@code read}/{@code write} are READ/WRITE split at the server's maximum block size;
 * {@code writeZeroes} is WRITE_ZEROES ({@code NO_HOLE} unless {@code mayUnmap}), {@code trim} is TRIM,
 * {@code flush} is FLUSH (nothing when the export does not offer it). {@link #extents} comes from
 * BLOCK_STATUS: with {@code qemu:allocation-depth} depth 0 is HOLE, depth 1 DATA (ZERO where
 * base:allocation says STATE_ZERO), depth 2 and more BACKING; without it base:allocation's HOLE|ZERO is
 * HOLE, ZERO alone ZERO, anything else DATA. The two contexts' descriptors have their own boundaries;
 * the extents are their intersection. Reads through the export already return the whole backing
 * chain's bytes, so {@link #backing()} is empty: a BACKING extent only says "not allocated in the
 * top layer" (which is what {@code -i} base identity needs), and this image must not be served by
 * {@link NbdServer}, which resolves BACKING through {@code backing()}.
 *
 * <p>Dirty bitmaps: the bitmaps named at {@link #open} are negotiated as
 * {@code qemu:dirty-bitmap:NAME}; {@link #dirtyExtents} reads one over the whole export. Every
 * negotiated context rides along in every BLOCK_STATUS reply (the protocol cannot ask for one), so
 * name only the bitmaps this connection reads.
 *
 * <p>Threads: any. One connection, one request at a time: a lock is held around each request and its
 * reply, so concurrent callers are served one after another (a large read or write is several
 * requests, and requests of other callers may fall between them). Good enough for one migration
 * stream; parallel readers would open one image each. After a protocol or socket failure the
 * connection is out of step and every later call fails; a refusal (an NBD error) leaves it usable.
 */
public final class NbdExportImage implements BlockImage {
    /** A dirty run {@code [offset, offset + length)}. */
    public record Range(long offset, long length) {
        public long end() {
            return offset + length;
        }
    }

    /**
     * The longest TRIM, WRITE_ZEROES or BLOCK_STATUS request sent: the wire length is a u32, and
     * 1 GiB stays aligned to any power-of-two minimum block size a server may ask for.
     */
    static final long MAX_UNPAYLOADED_LENGTH = 1L << 30;

    private final NbdClient client;
    private final Path socket;
    private final String export;
    private final String format;
    private final boolean allocationDepth;
    private final Object lock = new Object();
    private NbdException broken;   // guarded by lock: the failure that put the connection out of step

    private NbdExportImage(NbdClient client, Path socket, String export, String format, boolean allocationDepth) {
        this.client = client;
        this.socket = socket;
        this.export = export;
        this.format = format;
        this.allocationDepth = allocationDepth;
    }

    /** Opens {@code export} on the unix socket {@code socket}; see {@link #open(Path, String, String, boolean, List)}. */
    public static NbdExportImage open(Path socket, String export, String format, boolean allocationDepth)
            throws ImageException {
        return open(socket, export, format, allocationDepth, List.of());
    }

    /**
     * Connects and negotiates base:allocation, {@code qemu:allocation-depth} when
     * {@code allocationDepth}, and {@code qemu:dirty-bitmap:NAME} for each of {@code dirtyBitmaps}.
     * {@code format} is the QEMU format of the exported node, returned by {@link #format()}. Fails with
     * UNSUPPORTED when the server refuses a context asked for (the export was made without
     * {@code allocation-depth=true} or without that bitmap).
     */
    public static NbdExportImage open(Path socket, String export, String format, boolean allocationDepth,
            List<String> dirtyBitmaps) throws ImageException {
        List<String> wanted = new ArrayList<>();
        wanted.add(META_BASE_ALLOCATION);
        if (allocationDepth) {
            wanted.add(META_QEMU_ALLOCATION_DEPTH);
        }
        for (String bitmap : dirtyBitmaps) {
            wanted.add(dirtyBitmapContext(bitmap));
        }
        NbdClient client;
        try {
            client = NbdClient.unix(socket, export, wanted);
        } catch (NbdException e) {
            throw new ImageException(ImageException.Kind.IO, "nbd open failed: export=" + export + " socket=" + socket + ": " + e.getMessage(), e);
        }
        List<String> missing = wanted.stream()
                .filter(name -> !name.equals(META_BASE_ALLOCATION) && !client.metaContexts().contains(name)).toList();
        if (!client.structured() || !missing.isEmpty()) {
            ImageException e = new ImageException(ImageException.Kind.UNSUPPORTED, "nbd open failed: export=" + export
                    + " socket=" + socket + ": server did not accept " + (client.structured() ? "meta contexts=" + missing
                    : "structured replies") + " (export with allocation-depth=true and the bitmaps listed)");
            try {
                client.close();
            } catch (NbdException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
        return new NbdExportImage(client, socket, export, format, allocationDepth);
    }

    @Override
    public long size() {
        return client.size();
    }

    @Override
    public boolean readOnly() {
        return (client.transmissionFlags() & FLAG_READ_ONLY) != 0;
    }

    @Override
    public String describe() {
        return "nbd " + export + " on " + socket;
    }

    @Override
    public String format() {
        return format;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws ImageException {
        int length = dst.remaining();
        checkBounds("read", offset, length);
        int max = client.maximumBlockSize();
        for (int done = 0; done < length; ) {
            int n = Math.min(max, length - done);
            ByteBuffer piece = dst.slice(dst.position() + done, n);
            long at = offset + done;
            synchronized (lock) {
                checkUsable("read", at, n);
                try {
                    client.read(at, piece);
                } catch (NbdException e) {
                    throw failed("read", at, n, e);
                }
            }
            done += n;
        }
        dst.position(dst.limit());
    }

    @Override
    public void write(long offset, ByteBuffer src) throws ImageException {
        int length = src.remaining();
        checkWritable("write", offset, length);
        int max = client.maximumBlockSize();
        for (int done = 0; done < length; ) {
            int n = Math.min(max, length - done);
            ByteBuffer piece = src.slice(src.position() + done, n);
            long at = offset + done;
            synchronized (lock) {
                checkUsable("write", at, n);
                try {
                    client.write(at, piece, 0);
                } catch (NbdException e) {
                    throw failed("write", at, n, e);
                }
            }
            done += n;
        }
        src.position(src.limit());
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException {
        checkWritable("write zeroes", offset, length);
        if ((client.transmissionFlags() & FLAG_SEND_WRITE_ZEROES) == 0) {
            throw new ImageException(ImageException.Kind.UNSUPPORTED, "write zeroes failed: " + where(offset, length)
                    + ": the export does not offer WRITE_ZEROES");
        }
        int flags = mayUnmap ? 0 : CMD_FLAG_NO_HOLE;
        for (long done = 0; done < length; ) {
            long n = Math.min(MAX_UNPAYLOADED_LENGTH, length - done);
            long at = offset + done;
            synchronized (lock) {
                checkUsable("write zeroes", at, n);
                try {
                    client.writeZeroes(at, n, flags);
                } catch (NbdException e) {
                    throw failed("write zeroes", at, n, e);
                }
            }
            done += n;
        }
    }

    /** TRIM when the export offers it, else nothing (a hint); what a trimmed range reads as is the server's choice. */
    @Override
    public void trim(long offset, long length) throws ImageException {
        checkWritable("trim", offset, length);
        if ((client.transmissionFlags() & FLAG_SEND_TRIM) == 0) {
            return;
        }
        for (long done = 0; done < length; ) {
            long n = Math.min(MAX_UNPAYLOADED_LENGTH, length - done);
            long at = offset + done;
            synchronized (lock) {
                checkUsable("trim", at, n);
                try {
                    client.trim(at, n, 0);
                } catch (NbdException e) {
                    throw failed("trim", at, n, e);
                }
            }
            done += n;
        }
    }

    @Override
    public void flush() throws ImageException {
        if ((client.transmissionFlags() & FLAG_SEND_FLUSH) == 0) {
            return;
        }
        synchronized (lock) {
            checkUsable("flush", 0, 0);
            try {
                client.flush();
            } catch (NbdException e) {
                throw failed("flush", 0, 0, e);
            }
        }
    }

    /** One BLOCK_STATUS of at most 1 GiB; the server may describe less, and the caller asks again. */
    @Override
    public List<Extent> extents(long offset, long length) throws ImageException {
        checkBounds("extents", offset, length);
        if (length == 0) {
            return List.of();
        }
        long ask = Math.min(length, MAX_UNPAYLOADED_LENGTH);
        if (!client.metaContexts().contains(META_BASE_ALLOCATION) && !allocationDepth) {
            return List.of(new Extent(offset, ask, Extent.Type.DATA));   // no map: everything must be read
        }
        Map<String, List<NbdClient.StatusExtent>> all;
        synchronized (lock) {
            checkUsable("extents", offset, ask);
            try {
                all = client.blockStatusAll(offset, ask, 0);
            } catch (NbdException e) {
                throw failed("extents", offset, ask, e);
            }
        }
        return classify(offset, ask, all.get(META_BASE_ALLOCATION), allocationDepth ? all.get(META_QEMU_ALLOCATION_DEPTH) : null);
    }

    /**
     * The dirty runs of QEMU's bitmap {@code bitmap} over the whole export, in order, adjacent runs
     * merged. The bitmap must have been named at {@link #open}. Loops until the export's end, since
     * the server may describe less than asked per request.
     */
    public List<Range> dirtyExtents(String bitmap) throws ImageException {
        String context = dirtyBitmapContext(bitmap);
        if (!client.metaContexts().contains(context)) {
            throw new ImageException(ImageException.Kind.UNSUPPORTED, "dirty extents failed: bitmap=" + bitmap + " "
                    + where(0, size()) + ": the bitmap was not negotiated (name it when opening the image)");
        }
        List<Range> dirty = new ArrayList<>();
        long size = size();
        for (long pos = 0; pos < size; ) {
            long ask = Math.min(size - pos, MAX_UNPAYLOADED_LENGTH);
            List<NbdClient.StatusExtent> extents;
            synchronized (lock) {
                checkUsable("dirty extents", pos, ask);
                try {
                    extents = client.blockStatus(context, pos, ask, 0);
                } catch (NbdException e) {
                    throw failed("dirty extents", pos, ask, e);
                }
            }
            for (NbdClient.StatusExtent e : extents) {
                if ((e.flags() & STATE_DIRTY) != 0) {
                    addRun(dirty, pos, e.length());
                }
                pos += e.length();
            }
        }
        return dirty;
    }

    private static void addRun(List<Range> runs, long offset, long length) {
        if (!runs.isEmpty() && runs.getLast().end() == offset) {
            Range last = runs.removeLast();
            runs.add(new Range(last.offset(), last.length() + length));
        } else {
            runs.add(new Range(offset, length));
        }
    }

    /**
     * The extents of {@code [offset, offset + length)} from the two contexts' descriptors (either
     * may be null when not negotiated, not both), cut where either changes, adjacent equal types
     * merged. Ends where the shorter description ends: the caller asks again from there.
     */
    static List<Extent> classify(long offset, long length, List<NbdClient.StatusExtent> allocation,
            List<NbdClient.StatusExtent> depth) {
        List<Extent> out = new ArrayList<>();
        long end = offset + length;
        long pos = offset;
        int a = 0;
        int d = 0;
        long aEnd = allocation == null ? end : offset;   // end of the current descriptor of each context
        long dEnd = depth == null ? end : offset;
        while (pos < end) {
            if (pos == aEnd) {
                if (a == allocation.size()) {
                    break;
                }
                aEnd += allocation.get(a++).length();
            }
            if (pos == dEnd) {
                if (d == depth.size()) {
                    break;
                }
                dEnd += depth.get(d++).length();
            }
            int allocationFlags = allocation == null ? 0 : allocation.get(a - 1).flags();
            Extent.Type type = depth == null ? typeOfAllocation(allocationFlags)
                    : typeOfDepth(depth.get(d - 1).flags(), allocationFlags);
            long next = Math.min(end, Math.min(aEnd, dEnd));
            if (!out.isEmpty() && out.getLast().type() == type) {
                Extent last = out.removeLast();
                out.add(new Extent(last.offset(), next - last.offset(), type));
            } else {
                out.add(new Extent(pos, next - pos, type));
            }
            pos = next;
        }
        return out;
    }

    private static Extent.Type typeOfAllocation(int flags) {
        if ((flags & STATE_ZERO) == 0) {
            return Extent.Type.DATA;   // HOLE without ZERO: contents undefined, so read them
        }
        return (flags & STATE_HOLE) != 0 ? Extent.Type.HOLE : Extent.Type.ZERO;
    }

    private static Extent.Type typeOfDepth(int depth, int allocationFlags) {
        return switch (depth) {
            case DEPTH_UNALLOCATED -> Extent.Type.HOLE;
            case DEPTH_LOCAL -> (allocationFlags & STATE_ZERO) != 0 ? Extent.Type.ZERO : Extent.Type.DATA;
            default -> Extent.Type.BACKING;   // unsigned on the wire: every other value is a deeper layer
        };
    }

    private void checkBounds(String what, long offset, long length) throws ImageException {
        if (offset < 0 || length < 0 || offset > size() - length) {
            throw new ImageException(ImageException.Kind.OUT_OF_BOUNDS, what + " failed: " + where(offset, length)
                    + ": outside the export size=" + size());
        }
    }

    private void checkWritable(String what, long offset, long length) throws ImageException {
        if (readOnly()) {
            throw new ImageException(ImageException.Kind.READ_ONLY, what + " failed: " + where(offset, length)
                    + ": the export is read-only");
        }
        checkBounds(what, offset, length);
    }

    /** Called holding the lock. */
    private void checkUsable(String what, long offset, long length) throws ImageException {
        if (broken != null) {
            throw new ImageException(ImageException.Kind.IO, what + " failed: " + where(offset, length)
                    + ": the connection failed earlier: " + broken.getMessage(), broken);
        }
    }

    /** Called holding the lock: maps the NBD failure, remembering one that leaves the connection out of step. */
    private ImageException failed(String what, long offset, long length, NbdException e) {
        ImageException.Kind kind;
        if (e.kind() == NbdException.Kind.REFUSED) {
            kind = NbdWire.kindOf(e.error());
        } else {
            kind = ImageException.Kind.IO;
            broken = e;
        }
        return new ImageException(kind, what + " failed: " + where(offset, length) + ": " + e.getMessage(), e);
    }

    private String where(long offset, long length) {
        return "export=" + export + " socket=" + socket + " offset=0x" + Long.toHexString(offset) + " length=" + length;
    }

    /** Sends DISC and closes the socket; a failure that broke the connection earlier rides along as suppressed. */
    @Override
    public void close() throws ImageException {
        synchronized (lock) {
            try {
                client.close();
            } catch (NbdException e) {
                ImageException failure = new ImageException(ImageException.Kind.IO, "close failed: export=" + export
                        + " socket=" + socket + ": " + e.getMessage(), e);
                if (broken != null) {
                    failure.addSuppressed(broken);
                }
                throw failure;
            }
        }
    }

    @Override
    public String toString() {
        return describe();
    }
}
