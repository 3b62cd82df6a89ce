package ferry.image.qcow2;

import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import ferry.image.ImageException.Kind;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A qcow2 image (versions 2 and 3) behind {@link BlockImage}: reads through L1/L2 tables, the backing
 * chain and compressed clusters; writes allocate clusters with crash-safe metadata ordering; zero and
 * trim set the zero flag or deallocate. What is and is not supported, and the write order that keeps a
 * killed writer's image consistent: docs/qcow2.md.
 *
 * <p>Threads: any number of threads may call at once. A read-write lock guards the metadata: reads,
 * extent queries and writes that land in already allocated clusters (the common case once a disk is
 * populated) share the read lock and do their data I/O concurrently; anything that changes metadata
 * (allocation, zeroing, trim) takes the write lock. Freeing a cluster therefore waits for every I/O that
 * might still use it.
 *
 * <p>Size: about 600 lines because read, write, zero and extents share the per-cluster walk and the
 * lock discipline; the parts with a job of their own live beside it (WritePlan, ClusterMap,
 * RefcountTable, FeaturePolicy, Qcow2Layout, BackingChain).
 */
public final class Qcow2Image implements BlockImage {
    /** Extents returned by one {@link #extents} call at most; the caller asks again from the last end. */
    static final int MAX_EXTENTS = 8192;
    /** Explicit zeroes (version 2 images) are written in pieces of this many bytes. */
    private static final int ZERO_CHUNK = 1 << 20;

    private final Path path;
    private final HostFile file;
    private final Qcow2Header header;
    private final boolean readOnly;
    private final int clusterBits;
    private final int clusterSize;
    private final boolean zeroFlag;
    private final ClusterMap map;
    private final RefcountTable refcounts;
    private final Optional<BlockImage> backing;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed;

    private Qcow2Image(Path path, HostFile file, Qcow2Header header, boolean readOnly, ClusterMap map,
            RefcountTable refcounts, Optional<BlockImage> backing) {
        this.path = path;
        this.file = file;
        this.header = header;
        this.readOnly = readOnly;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.zeroFlag = header.version() >= 3;
        this.map = map;
        this.refcounts = refcounts;
        this.backing = backing;
    }

    /** Opens an image and its whole backing chain (backing images always read-only). */
    public static Qcow2Image open(Path path, boolean readOnly) throws ImageException {
        return open(path, readOnly, 0);
    }

    static Qcow2Image open(Path path, boolean readOnly, int depth) throws ImageException {
        HostFile file = HostFile.open(path, readOnly);
        Optional<BlockImage> backing = Optional.empty();
        try {
            ByteBuffer first = ByteBuffer.allocate(1 << Qcow2Header.MAX_CLUSTER_BITS);
            first.limit((int) Math.min(first.capacity(), file.length()));
            file.read(0, first);
            first.flip();
            Qcow2Header header = Qcow2Header.parse(first, path.toString());
            FeaturePolicy.check(header, path, readOnly);
            if (!readOnly && header.autoclearFeatures() != 0) {
                // qcow2.txt: a writer that does not know an autoclear feature clears its bit first.
                file.write(Qcow2Header.AUTOCLEAR_FEATURES_OFFSET, ByteBuffer.allocate(8));
                file.sync();
            }
            ClusterMap map = ClusterMap.load(file, header);
            RefcountTable refcounts = readOnly ? null : RefcountTable.load(file, header);
            if (header.backingFile().isPresent()) {
                backing = Optional.of(BackingChain.open(path, header.backingFile().get(), header.backingFormat(),
                        depth + 1));
            }
            return new Qcow2Image(path, file, header, readOnly, map, refcounts, backing);
        } catch (ImageException | RuntimeException e) {
            closeQuietlyInto(e, file, backing);
            throw e;
        }
    }

    /**
     * Creates a version 3 image (16-bit refcounts, no features) of {@code size} bytes and opens it for
     * writing. {@code size} must be a multiple of 512; {@code clusterSize} a power of two from 512 B to
     * 2 MiB (QEMU's default is 65536). The file must not exist yet.
     */
    public static Qcow2Image create(Path path, long size, int clusterSize, Optional<Backing> backing)
            throws ImageException {
        Qcow2Layout.create(path, size, clusterSize, backing);
        return open(path, false);
    }

    private static void closeQuietlyInto(Exception failure, HostFile file, Optional<BlockImage> backing) {
        try {
            file.close();
        } catch (ImageException e) {
            failure.addSuppressed(e);
        }
        if (backing.isPresent()) {
            try {
                backing.get().close();
            } catch (ImageException e) {
                failure.addSuppressed(e);
            }
        }
    }

    public Qcow2Header header() {
        return header;
    }

    public int clusterSize() {
        return clusterSize;
    }

    public Path path() {
        return path;
    }

    @Override
    public long size() {
        return header.size();
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public String describe() {
        return "qcow2 " + path + backing.map(b -> " (backing " + b.describe() + ")").orElse("");
    }

    @Override
    public String format() {
        return Backing.QCOW2;
    }

    @Override
    public Optional<BlockImage> backing() {
        return backing;
    }

    // ---------------------------------------------------------------- read

    @Override
    public void read(long offset, ByteBuffer dst) throws ImageException {
        checkRange("read", offset, dst.remaining());
        lock.readLock().lock();
        try {
            checkOpen("read", offset, dst.remaining());
            long end = offset + dst.remaining();
            long pos = offset;
            while (pos < end) {
                long cluster = pos >>> clusterBits;
                int within = (int) (pos & (clusterSize - 1));
                long entry = map.entry(cluster);
                L2Entry.Kind kind = L2Entry.kind(entry, zeroFlag);
                int n = (int) Math.min(clusterSize - within, end - pos);
                if (kind == L2Entry.Kind.NORMAL) {
                    n = contiguousRun(cluster, entry, within, end - pos);
                }
                ByteBuffer part = dst.slice(dst.position(), n);
                readCluster(kind, entry, pos, within, part);
                dst.position(dst.position() + n);
                pos += n;
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Bytes from {@code within} of guest cluster {@code cluster} whose host clusters follow each other. */
    private int contiguousRun(long cluster, long entry, int within, long remaining) throws ImageException {
        long host = L2Entry.hostOffset(entry);
        long run = clusterSize - within;
        long next = cluster + 1;
        while (run < remaining && run < Integer.MAX_VALUE - clusterSize) {
            long e = map.entry(next);
            if (L2Entry.kind(e, zeroFlag) != L2Entry.Kind.NORMAL
                    || L2Entry.hostOffset(e) != host + ((next - cluster) << clusterBits)) {
                break;
            }
            run += clusterSize;
            next++;
        }
        return (int) Math.min(run, remaining);
    }

    private void readCluster(L2Entry.Kind kind, long entry, long pos, int within, ByteBuffer part)
            throws ImageException {
        switch (kind) {
            case NORMAL -> file.read(checkedHost(entry, pos) + within, part);
            case ZERO_PLAIN, ZERO_ALLOCATED -> fillZero(part);
            case UNALLOCATED -> readBacking(pos, part);
            case COMPRESSED -> part.put(CompressedCluster.inflate(file, entry, clusterBits).position(within)
                    .limit(within + part.remaining()));
        }
    }

    private long checkedHost(long entry, long guestOffset) throws ImageException {
        long host = L2Entry.hostOffset(entry);
        if ((host & (clusterSize - 1)) != 0) {
            throw new ImageException(Kind.CORRUPT, "map failed: path=" + path + " offset=0x"
                    + Long.toHexString(guestOffset) + ": host offset 0x" + Long.toHexString(host)
                    + " is not cluster aligned");
        }
        return host;
    }

    /** Reads from the backing image; past its end (or without one) the overlay reads zeroes. */
    private void readBacking(long pos, ByteBuffer part) throws ImageException {
        long available = backing.isPresent() ? Math.max(0, backing.get().size() - pos) : 0;
        int fromBacking = (int) Math.min(available, part.remaining());
        if (fromBacking > 0) {
            backing.get().read(pos, part.slice(part.position(), fromBacking));
            part.position(part.position() + fromBacking);
        }
        fillZero(part);
    }

    private static void fillZero(ByteBuffer part) {
        while (part.hasRemaining()) {
            part.put((byte) 0);
        }
    }

    // ---------------------------------------------------------------- write

    @Override
    public void write(long offset, ByteBuffer src) throws ImageException {
        checkWritable("write", offset, src.remaining());
        if (!src.hasRemaining()) {
            return;
        }
        lock.readLock().lock();
        try {
            checkOpen("write", offset, src.remaining());
            if (allocatedInPlace(offset, src.remaining())) {
                writeInPlace(offset, src);
                return;
            }
        } finally {
            lock.readLock().unlock();
        }
        lock.writeLock().lock();
        try {
            checkOpen("write", offset, src.remaining());
            writeLocked(offset, src);
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** True when every cluster of the range is a standard cluster with refcount one (no COW needed). */
    private boolean allocatedInPlace(long offset, long length) throws ImageException {
        for (long c = offset >>> clusterBits; c <= (offset + length - 1) >>> clusterBits; c++) {
            long entry = map.entry(c);
            if (L2Entry.kind(entry, zeroFlag) != L2Entry.Kind.NORMAL || !L2Entry.copied(entry)) {
                return false;
            }
        }
        return true;
    }

    private void writeInPlace(long offset, ByteBuffer src) throws ImageException {
        long end = offset + src.remaining();
        long pos = offset;
        while (pos < end) {
            long cluster = pos >>> clusterBits;
            int within = (int) (pos & (clusterSize - 1));
            long entry = map.entry(cluster);
            int n = contiguousRun(cluster, entry, within, end - pos);
            file.write(checkedHost(entry, pos) + within, src.slice(src.position(), n));
            src.position(src.position() + n);
            pos += n;
        }
    }

    /**
     * The allocating write, under the write lock. Order (docs/qcow2.md): new L2 tables and data clusters
     * get refcount 1 and L2 tables their zeroed content; sync; L1 entries for new tables; data; L2
     * entries; and only if old clusters lost their reference: sync, then their refcounts drop.
     */
    private void writeLocked(long offset, ByteBuffer src) throws ImageException {
        WritePlan plan = WritePlan.of(this, offset, src.remaining());
        boolean allocated = false;
        TreeMap<Long, Long> newTables = new TreeMap<>();
        for (int i = 0; i < plan.count(); i++) {
            long l1Index = plan.cluster(i) / map.l2Entries();
            if (!plan.inPlace(i) && map.l2Offset(plan.cluster(i)) == 0 && !newTables.containsKey(l1Index)) {
                long table = refcounts.allocate();
                map.writeNewTable(table);
                newTables.put(l1Index, table);
                allocated = true;
            }
        }
        for (int i = 0; i < plan.count(); i++) {
            if (plan.host(i) == 0) {
                plan.setHost(i, refcounts.allocate());
                allocated = true;
            }
        }
        if (allocated) {
            file.sync();
        }
        for (var table : newTables.entrySet()) {
            map.setL1(table.getKey() * map.l2Entries(), table.getValue());
        }
        long pos = offset;
        for (int i = 0; i < plan.count(); i++) {
            int within = (int) (pos & (clusterSize - 1));
            int n = Math.min(clusterSize - within, src.remaining());
            ByteBuffer part = src.slice(src.position(), n);
            if (plan.inPlace(i) || n == clusterSize) {
                file.write(plan.host(i) + within, part);
            } else {
                ByteBuffer whole = clusterBase(plan.kind(i), plan.entry(i), plan.cluster(i));
                whole.put(within, part, 0, n);
                file.write(plan.host(i), whole.clear());
            }
            src.position(src.position() + n);
            pos += n;
        }
        for (int i = 0; i < plan.count(); i++) {
            if (!plan.inPlace(i)) {
                map.setEntry(plan.cluster(i), L2Entry.normal(plan.host(i)));
            }
        }
        releaseAfterSync(plan.releases());
    }

    /** The current content of a whole guest cluster that is about to move to a new host cluster. */
    private ByteBuffer clusterBase(L2Entry.Kind kind, long entry, long cluster) throws ImageException {
        long start = cluster << clusterBits;
        ByteBuffer whole = ByteBuffer.allocate(clusterSize);
        switch (kind) {
            case UNALLOCATED -> readBacking(start, whole.limit((int) Math.min(clusterSize, size() - start)));
            case ZERO_PLAIN, ZERO_ALLOCATED -> { }
            case NORMAL -> file.read(checkedHost(entry, start), whole);
            case COMPRESSED -> whole.put(CompressedCluster.inflate(file, entry, clusterBits));
        }
        return whole.clear();
    }

    /** Syncs the L2 changes that dropped references, then drops the refcounts (a crash leaks at worst). */
    private void releaseAfterSync(List<long[]> releases) throws ImageException {
        if (releases.isEmpty()) {
            return;
        }
        file.sync();
        for (long[] r : releases) {
            refcounts.release(r[0], r[1]);
        }
    }

    /** The host range an L2 entry holds a reference to, or null when it holds none. */
    long[] reference(long entry) {
        return switch (L2Entry.kind(entry, zeroFlag)) {
            case NORMAL, ZERO_ALLOCATED -> new long[] {L2Entry.hostOffset(entry), clusterSize};
            case COMPRESSED -> {
                long offset = L2Entry.compressedOffset(entry, clusterBits);
                long start = offset & ~(long) (L2Entry.COMPRESSED_SECTOR_SIZE - 1);
                yield new long[] {start, (long) L2Entry.compressedSectors(entry, clusterBits)
                        * L2Entry.COMPRESSED_SECTOR_SIZE};
            }
            case UNALLOCATED, ZERO_PLAIN -> null;
        };
    }

    // ---------------------------------------------------------------- zero, trim

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws ImageException {
        checkWritable("write zeroes", offset, length);
        if (length == 0) {
            return;
        }
        lock.writeLock().lock();
        try {
            checkOpen("write zeroes", offset, length);
            long end = offset + length;
            long wholeStart = roundUp(offset);
            long wholeEnd = end == size() ? roundUp(end) : end & ~(long) (clusterSize - 1);
            if (wholeStart >= wholeEnd) {
                explicitZeroes(offset, end);
                return;
            }
            explicitZeroes(offset, wholeStart);
            zeroClusters(wholeStart >>> clusterBits, wholeEnd >>> clusterBits, mayUnmap);
            explicitZeroes(Math.min(wholeEnd, end), end);
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Trim reads back as zeroes in Ferry's images: deallocate, or set the zero flag over a backing file. */
    @Override
    public void trim(long offset, long length) throws ImageException {
        writeZeroes(offset, length, true);
    }

    private long roundUp(long offset) {
        return (offset + clusterSize - 1) & ~(long) (clusterSize - 1);
    }

    /** Writes zero bytes into {@code [from, to)} where the range does not already read as zeroes. */
    private void explicitZeroes(long from, long to) throws ImageException {
        long pos = from;
        while (pos < to) {
            long chunkEnd = Math.min(to, pos + ZERO_CHUNK);
            long next = Math.min(chunkEnd, ((pos >>> clusterBits) + 1) << clusterBits);
            L2Entry.Kind kind = L2Entry.kind(map.entry(pos >>> clusterBits), zeroFlag);
            boolean alreadyZero = kind == L2Entry.Kind.ZERO_PLAIN || kind == L2Entry.Kind.ZERO_ALLOCATED
                    || (kind == L2Entry.Kind.UNALLOCATED && backing.isEmpty());
            if (alreadyZero) {
                pos = next;
                continue;
            }
            writeLocked(pos, ByteBuffer.allocate((int) (chunkEnd - pos)));
            pos = chunkEnd;
        }
    }

    /** Zeroes whole clusters {@code [first, end)}: zero flag (v3) or deallocation, never data writes where avoidable. */
    private void zeroClusters(long first, long end, boolean mayUnmap) throws ImageException {
        if (!zeroFlag && (backing.isPresent() || !mayUnmap)) {
            explicitZeroes(first << clusterBits, Math.min(size(), end << clusterBits));
            return;
        }
        long target = zeroFlag && backing.isPresent() ? L2Entry.ZERO : 0;
        for (long c = first; c < end; c += map.l2Entries() - c % map.l2Entries()) {
            if (target != 0 && map.l2Offset(c) == 0) {
                long table = refcounts.allocate();
                map.writeNewTable(table);
                file.sync();
                map.setL1(c, table);
            }
        }
        List<long[]> releases = new ArrayList<>();
        for (long c = first; c < end; c++) {
            if (map.l2Offset(c) == 0) {
                c += map.l2Entries() - c % map.l2Entries() - 1; // no table, no backing: the whole table reads zero
                continue;
            }
            long entry = map.entry(c);
            long updated = zeroedEntry(entry, target, mayUnmap);
            if (updated != entry) {
                map.setEntry(c, updated);
                long[] ref = reference(entry);
                if (ref != null && (L2Entry.kind(updated, zeroFlag) != L2Entry.Kind.ZERO_ALLOCATED)) {
                    releases.add(ref);
                }
            }
        }
        releaseAfterSync(releases);
    }

    /** The L2 entry a cluster gets when zeroed; {@code entry} itself when nothing needs to change. */
    private long zeroedEntry(long entry, long target, boolean mayUnmap) {
        return switch (L2Entry.kind(entry, zeroFlag)) {
            case UNALLOCATED -> target;
            case ZERO_PLAIN -> entry;
            case ZERO_ALLOCATED -> mayUnmap ? target : entry;
            case NORMAL -> !mayUnmap && zeroFlag && L2Entry.copied(entry) ? entry | L2Entry.ZERO : target;
            case COMPRESSED -> target;
        };
    }

    // ---------------------------------------------------------------- flush, extents, close

    @Override
    public void flush() throws ImageException {
        lock.readLock().lock();
        try {
            checkOpen("flush", 0, 0);
            if (!readOnly) {
                file.sync();
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    @Override
    public List<Extent> extents(long offset, long length) throws ImageException {
        checkRange("extents", offset, length);
        List<Extent> out = new ArrayList<>();
        if (length == 0) {
            return out;
        }
        Extent.Type unallocated = backing.isPresent() ? Extent.Type.BACKING : Extent.Type.HOLE;
        long span = (long) map.l2Entries() << clusterBits;
        lock.readLock().lock();
        try {
            checkOpen("extents", offset, length);
            long end = offset + length;
            long pos = offset;
            while (pos < end && out.size() < MAX_EXTENTS) {
                long cluster = pos >>> clusterBits;
                long runEnd;
                Extent.Type type;
                if (map.l2Offset(cluster) == 0) {
                    runEnd = Math.min(end, (pos / span + 1) * span);
                    type = unallocated;
                } else {
                    runEnd = Math.min(end, (cluster + 1) << clusterBits);
                    type = switch (L2Entry.kind(map.entry(cluster), zeroFlag)) {
                        case NORMAL, COMPRESSED -> Extent.Type.DATA;
                        case ZERO_PLAIN, ZERO_ALLOCATED -> Extent.Type.ZERO;
                        case UNALLOCATED -> unallocated;
                    };
                }
                Extent last = out.isEmpty() ? null : out.getLast();
                if (last != null && last.type() == type) {
                    out.set(out.size() - 1, new Extent(last.offset(), runEnd - last.offset(), type));
                } else {
                    out.add(new Extent(pos, runEnd - pos, type));
                }
                pos = runEnd;
            }
        } finally {
            lock.readLock().unlock();
        }
        return out;
    }

    @Override
    public void close() throws ImageException {
        lock.writeLock().lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            ImageException failure = null;
            try {
                if (!readOnly) {
                    file.sync();
                }
            } catch (ImageException e) {
                failure = e;
            }
            try {
                file.close();
            } catch (ImageException e) {
                failure = chain(failure, e);
            }
            if (backing.isPresent()) {
                try {
                    backing.get().close();
                } catch (ImageException e) {
                    failure = chain(failure, e);
                }
            }
            if (failure != null) {
                throw failure;
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    private static ImageException chain(ImageException first, ImageException next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    // ---------------------------------------------------------------- checks and plan access

    private void checkRange(String what, long offset, long length) throws ImageException {
        if (offset < 0 || length < 0 || offset > size() - length) {
            throw new ImageException(Kind.OUT_OF_BOUNDS, what + " failed: path=" + path + " offset=" + offset
                    + " length=" + length + ": outside the image (size=" + size() + ")");
        }
    }

    private void checkWritable(String what, long offset, long length) throws ImageException {
        if (readOnly) {
            throw new ImageException(Kind.READ_ONLY, what + " failed: path=" + path + " offset=" + offset
                    + " length=" + length + ": image is open read-only");
        }
        checkRange(what, offset, length);
    }

    private void checkOpen(String what, long offset, long length) throws ImageException {
        if (closed) {
            throw new ImageException(Kind.IO, what + " failed: path=" + path + " offset=" + offset + " length="
                    + length + ": image is closed");
        }
    }

    ClusterMap map() {
        return map;
    }

    boolean zeroFlag() {
        return zeroFlag;
    }

    int clusterBits() {
        return clusterBits;
    }
}
