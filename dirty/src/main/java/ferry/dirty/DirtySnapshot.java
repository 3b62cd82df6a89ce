package ferry.dirty;

/**
 * An immutable set of dirty granules taken from a {@link DirtyBitmap}, walked as runs of adjacent
 * granules so that a copy pass sends large frames.
 */
public final class DirtySnapshot {
    private final long[] words;
    private final long granuleCount;
    private final int granuleSize;
    private final long diskSize;

    DirtySnapshot(long[] words, long granuleCount, int granuleSize, long diskSize) {
        this.words = words;
        this.granuleCount = granuleCount;
        this.granuleSize = granuleSize;
        this.diskSize = diskSize;
    }

    /** The bits themselves, for {@link DirtyBitmap#merge} to read: no copy (a snapshot never changes, and no caller writes them). */
    long[] words() {
        return words;
    }

    public int granuleSize() {
        return granuleSize;
    }

    public long granuleCount() {
        return granuleCount;
    }

    public boolean isDirty(long granule) {
        return (words[(int) (granule >>> 6)] & (1L << (granule & 63))) != 0;
    }

    public long count() {
        long count = 0;
        for (long word : words) {
            count += Long.bitCount(word);
        }
        return count;
    }

    /** Bytes the set covers (the last granule may be short). */
    public long bytes() {
        long bytes = 0;
        for (long granule = nextDirty(0); granule >= 0; granule = nextDirty(granule + 1)) {
            bytes += Math.min(granuleSize, diskSize - granule * granuleSize);
        }
        return bytes;
    }

    /** The first dirty granule at or after {@code from}, or -1. */
    public long nextDirty(long from) {
        if (from >= granuleCount) {
            return -1;
        }
        int wordIndex = (int) (from >>> 6);
        long word = words[wordIndex] & (-1L << (from & 63));
        while (true) {
            if (word != 0) {
                long granule = ((long) wordIndex << 6) + Long.numberOfTrailingZeros(word);
                return granule < granuleCount ? granule : -1;
            }
            if (++wordIndex == words.length) {
                return -1;
            }
            word = words[wordIndex];
        }
    }

    /** The first clean granule at or after {@code from}, or {@link #granuleCount()}. */
    public long nextClean(long from) {
        if (from >= granuleCount) {
            return granuleCount;
        }
        int wordIndex = (int) (from >>> 6);
        long word = ~words[wordIndex] & (-1L << (from & 63));
        while (true) {
            if (word != 0) {
                return Math.min(granuleCount, ((long) wordIndex << 6) + Long.numberOfTrailingZeros(word));
            }
            if (++wordIndex == words.length) {
                return granuleCount;
            }
            word = ~words[wordIndex];
        }
    }

    /** Receives runs of adjacent dirty granules. */
    @FunctionalInterface
    public interface RunVisitor {
        void run(long firstGranule, long granuleCount) throws java.io.IOException, InterruptedException;
    }

    /** Visits runs of adjacent dirty granules in order, each at most {@code maxRunGranules} long. */
    public void forEachRun(long maxRunGranules, RunVisitor visitor) throws java.io.IOException, InterruptedException {
        long start = nextDirty(0);
        while (start >= 0) {
            long end = nextClean(start);
            for (long first = start; first < end; ) {
                long count = Math.min(maxRunGranules, end - first);   // no overflow for huge maxRunGranules
                visitor.run(first, count);
                first += count;
            }
            start = nextDirty(end);
        }
    }
}
