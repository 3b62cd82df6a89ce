package ferry.dirty;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Which granules of a disk changed since the last copy pass.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>One bit per granule in a {@code long[]} accessed through a {@link VarHandle}: marking is a lock-free {@code getAndBitwiseOr}
 *       per 64-granule word, so the write path never blocks on the copier.</li>
 *   <li>{@link #snapshotAndClear()} swaps each word with zero ({@code getAndSet}), so every mark lands in
 *       exactly one snapshot: either the one being taken or the next.</li>
 *   <li>The invariant that makes copying safe (DESIGN.md): a writer marks <em>after</em> its data is
 *       visible in the image, and the copier clears a granule <em>before</em> it reads it. A write that
 *       races with a copy then either was already visible to the copier's read, or sets the bit again
 *       for the next pass. QEMU's block layer does the marking half (its own bitmaps); Ferry builds these from their extents.</li>
 *   <li>Memory: with 4 KiB granules, 32 KiB per GiB of disk. Granule size is a power of two.</li>
 * </ul>
 *
 * <p>Threads: any thread may mark; one copier thread at a time takes snapshots.
 */
public final class DirtyBitmap {
    private final long size;
    private final int granuleSize;
    private final int granuleShift;
    private final long granuleCount;
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private final long[] words;

    public DirtyBitmap(long size, int granuleSize) {
        if (size < 0) {
            throw new IllegalArgumentException("negative size: " + size);
        }
        if (granuleSize < 512 || Integer.bitCount(granuleSize) != 1) {
            throw new IllegalArgumentException("granule size must be a power of two >= 512: " + granuleSize);
        }
        this.size = size;
        this.granuleSize = granuleSize;
        this.granuleShift = Integer.numberOfTrailingZeros(granuleSize);
        this.granuleCount = (size + granuleSize - 1) >>> granuleShift;
        long wordCount = (granuleCount + 63) >>> 6;
        if (wordCount > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("disk too large for granule size: size=" + size + " granule=" + granuleSize);
        }
        this.words = new long[(int) wordCount];
    }

    public long size() {
        return size;
    }

    public int granuleSize() {
        return granuleSize;
    }

    public long granuleCount() {
        return granuleCount;
    }

    /** Marks every granule that {@code [offset, offset + length)} touches. Out-of-range parts are ignored. */
    public void markRange(long offset, long length) {
        if (length <= 0 || offset >= size) {
            return;
        }
        long end = Math.min(size, offset + length);
        markGranules(Math.max(0, offset) >>> granuleShift, ((end - 1) >>> granuleShift) + 1);
    }

    /** Marks every granule. */
    public void markAll() {
        markGranules(0, granuleCount);
    }

    /** Marks granules {@code [first, endExclusive)}. */
    public void markGranules(long first, long endExclusive) {
        setGranules(first, endExclusive, true);
    }

    /** Clears granules {@code [first, endExclusive)} (a pass sent them). */
    public void clearGranules(long first, long endExclusive) {
        setGranules(first, endExclusive, false);
    }

    /** Sets or clears {@code [first, endExclusive)}, a word's worth of bits per atomic operation. */
    private void setGranules(long first, long endExclusive, boolean dirty) {
        long granule = first;
        while (granule < endExclusive) {
            int word = (int) (granule >>> 6);
            int bit = (int) (granule & 63);
            int bits = (int) Math.min(64 - bit, endExclusive - granule);
            long mask = bits == 64 ? -1L : ((1L << bits) - 1) << bit;
            if (dirty) {
                WORD.getAndBitwiseOr(words, word, mask);
            } else {
                WORD.getAndBitwiseAnd(words, word, ~mask);
            }
            granule += bits;
        }
    }

    public boolean isDirty(long granule) {
        return ((long) WORD.getVolatile(words, (int) (granule >>> 6)) & (1L << (granule & 63))) != 0;
    }

    /** Number of dirty granules now (a moving target while writers run). */
    public long dirtyCount() {
        long count = 0;
        for (int i = 0; i < words.length; i++) {
            count += Long.bitCount((long) WORD.getVolatile(words, i));
        }
        return count;
    }

    /** Bytes the dirty granules cover (the last granule may be short). */
    public long dirtyBytes() {
        long bytes = dirtyCount() * granuleSize;
        long lastGranule = granuleCount - 1;
        if (granuleCount > 0 && isDirty(lastGranule)) {
            bytes -= granuleCount * granuleSize - size;      // the short tail of the last granule
        }
        return bytes;
    }

    /** Takes the dirty set and clears it, word by word, atomically per word. */
    public DirtySnapshot snapshotAndClear() {
        long[] taken = new long[words.length];
        for (int i = 0; i < taken.length; i++) {
            taken[i] = (long) WORD.getAndSet(words, i, 0L);
        }
        return new DirtySnapshot(taken, granuleCount, granuleSize, size);
    }

    /** A copy of the dirty set without clearing it (for statistics and persistence). */
    public DirtySnapshot peek() {
        long[] copy = new long[words.length];
        for (int i = 0; i < copy.length; i++) {
            copy[i] = (long) WORD.getVolatile(words, i);
        }
        return new DirtySnapshot(copy, granuleCount, granuleSize, size);
    }

    /** Puts back granules a failed pass did not send, so that the next pass sends them. */
    public void merge(DirtySnapshot snapshot) {
        long[] bits = snapshot.words();
        for (int i = 0; i < bits.length; i++) {
            if (bits[i] != 0) {
                WORD.getAndBitwiseOr(words, i, bits[i]);
            }
        }
    }
}
