package ferry.migration;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtySnapshot;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;

/**
 * What the destination may lack, as the source knows it: per disk, the granules of the pass under
 * way that are not sent yet ("unsent"), and the granules sent since the last checkpoint the
 * destination confirmed ("unconfirmed"). With QEMU's dirty bitmap (guest writes since the last pass
 * began) that is everything a resume must send (DESIGN.md "Resume").
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Why it is enough: a granule outside all three sets was last written by the guest before the
 *       bitmap swap of some pass, was read after that swap (so the data sent is the latest), and the
 *       checkpoint it went out in was confirmed, so the destination holds that data durably.</li>
 *   <li>Sends are grouped into numbered intervals. {@link #checkpoint} closes the open interval;
 *       the CHECKPOINT frame with that number follows every block frame of the interval in the
 *       stream, and the destination answers CONFIRMED once they are on disk and journaled.
 *       {@link #confirmed} drops the intervals up to that number.</li>
 *   <li>Memory: the unsent bitmaps (one bit per granule, like QEMU's own) and the runs of the
 *       unconfirmed intervals, which the checkpoint rhythm keeps to a few times 64 MiB of sends.</li>
 * </ul>
 *
 * <p>Threads: {@code migration-send} only (CONFIRMED frames reach it as events).
 */
final class ResendLedger {
    /** A checkpoint is due after this many bytes sent since the last one ... */
    static final long CHECKPOINT_BYTES = 64L << 20;
    private final long checkpointBytes;
    /** ... or this long after it, when anything was sent since ... */
    static final long CHECKPOINT_INTERVAL_NS = 1_000_000_000L;
    /** ... or this long after it in any case: the destination's answer shows that the link lives (SourceStream). */
    static final long HEARTBEAT_NS = 2_000_000_000L;

    private final List<DirtyBitmap> unsent = new ArrayList<>();
    private final Deque<Interval> closed = new ArrayDeque<>();
    private Interval open;
    private long confirmed = -1;
    private long bytesSinceCheckpoint;
    private long lastCheckpointNs;

    /** One disk's size for each disk, in order; a checkpoint is due every {@code checkpointBytes} (or second). */
    ResendLedger(List<Long> diskSizes, int granuleSize, long checkpointBytes, long nowNs) {
        this.checkpointBytes = checkpointBytes;
        for (long size : diskSizes) {
            unsent.add(new DirtyBitmap(size, granuleSize));
        }
        open = new Interval(0, diskSizes.size());
        lastCheckpointNs = nowNs;
    }

    /** {@code granules} of {@code disk} are to be sent by the pass that begins. */
    void planned(int disk, DirtySnapshot granules) {
        unsent.get(disk).merge(granules);
    }

    /** Granules {@code [first, first + count)} of {@code disk} went out ({@code bytes} of payload). */
    void sent(int disk, long first, long count, long bytes) {
        unsent.get(disk).clearGranules(first, first + count);
        open.add(disk, first, count);
        bytesSinceCheckpoint += bytes;
    }

    /** True when a checkpoint should follow now. */
    boolean checkpointDue(long nowNs) {
        long since = nowNs - lastCheckpointNs;
        return open.isEmpty() ? since >= HEARTBEAT_NS
                : bytesSinceCheckpoint >= checkpointBytes || since >= CHECKPOINT_INTERVAL_NS;
    }

    /** Closes the open interval; its number goes out in a CHECKPOINT frame right after. */
    long checkpoint(long nowNs) {
        Interval done = open;
        closed.addLast(done);
        open = new Interval(done.number + 1, unsent.size());
        bytesSinceCheckpoint = 0;
        lastCheckpointNs = nowNs;
        return done.number;
    }

    /** The destination confirmed checkpoint {@code number} (and so every one before it). */
    void confirmed(long number) {
        while (!closed.isEmpty() && closed.peekFirst().number <= number) {
            closed.removeFirst();
        }
        confirmed = Math.max(confirmed, number);
    }

    /** The last checkpoint the destination confirmed; -1 before the first. */
    long lastConfirmed() {
        return confirmed;
    }

    /**
     * A new attempt begins: the destination's journal holds checkpoint {@code destinationCheckpoint}.
     * The intervals up to it are confirmed; everything sent after it goes back to unsent, and the
     * numbering goes on above both sides' last number.
     */
    void resumeAt(long destinationCheckpoint) {
        confirmed(destinationCheckpoint);
        long next = Math.max(open.number, destinationCheckpoint + 1);
        closed.addLast(open);
        for (Interval interval : closed) {
            interval.requeue(unsent);
            next = Math.max(next, interval.number + 1);
        }
        closed.clear();
        open = new Interval(next, unsent.size());
        bytesSinceCheckpoint = 0;
    }

    /** What a resume must send of {@code disk} besides QEMU's dirty bitmap: unsent and unconfirmed granules. */
    DirtySnapshot owed(int disk) {
        DirtyBitmap copy = new DirtyBitmap(unsent.get(disk).size(), unsent.get(disk).granuleSize());
        copy.merge(unsent.get(disk).peek());
        for (Interval interval : closed) {
            interval.mark(disk, copy);
        }
        open.mark(disk, copy);
        return copy.snapshotAndClear();
    }

    /** Bytes {@link #owed} covers over every disk (info migrate while a resume is pending). */
    long owedBytes() {
        long bytes = 0;
        for (int disk = 0; disk < unsent.size(); disk++) {
            bytes += owed(disk).bytes();
        }
        return bytes;
    }

    /** The unsent granules of {@code disk}, as a set to walk (the resume pass sends these). */
    DirtySnapshot unsent(int disk) {
        return unsent.get(disk).peek();
    }

    int disks() {
        return unsent.size();
    }

    /** The runs of one checkpoint interval, per disk, as (first, count) pairs. */
    private static final class Interval {
        final long number;
        private final long[][] runs;
        private final int[] lengths;

        Interval(long number, int disks) {
            this.number = number;
            this.runs = new long[disks][];
            this.lengths = new int[disks];
        }

        boolean isEmpty() {
            for (int length : lengths) {
                if (length > 0) {
                    return false;
                }
            }
            return true;
        }

        void add(int disk, long first, long count) {
            long[] r = runs[disk];
            int n = lengths[disk];
            if (n >= 2 && r[n - 2] + r[n - 1] == first) {
                r[n - 1] += count;                       // adjacent to the last run (the bulk pass): one run
                return;
            }
            if (r == null) {
                r = new long[16];
            } else if (n + 2 > r.length) {
                r = Arrays.copyOf(r, r.length * 2);
            }
            r[n] = first;
            r[n + 1] = count;
            runs[disk] = r;
            lengths[disk] = n + 2;
        }

        void mark(int disk, DirtyBitmap into) {
            long[] r = runs[disk];
            for (int i = 0; i < lengths[disk]; i += 2) {
                into.markGranules(r[i], r[i] + r[i + 1]);
            }
        }

        void requeue(List<DirtyBitmap> unsent) {
            for (int disk = 0; disk < runs.length; disk++) {
                mark(disk, unsent.get(disk));
            }
        }
    }
}
