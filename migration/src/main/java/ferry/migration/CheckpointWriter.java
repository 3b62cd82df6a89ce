package ferry.migration;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.linux.Threads;
import ferry.migration.wire.Frame;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Consumer;

/**
 * Makes the destination's checkpoints durable, off the session's thread: for each CHECKPOINT, the
 * images are synced, the changed digest pages and then the journals' headers are written and synced
 * ({@link PartialMigration#commit}), and only then does CONFIRMED go back to the source. The order is
 * the crash-safety argument of DESIGN.md "Resume": a journal never describes data that is not on disk.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>The session thread goes on writing blocks meanwhile: the images' sync covers at least every
 *       block before the checkpoint (more is harmless, the source sends everything after the last
 *       confirmed checkpoint again), and the digest pages were copied on the session thread at the
 *       checkpoint, so they describe exactly the blocks before it.</li>
 *   <li>Checkpoints that queue up while a sync runs are written as one: their pages merged (a later
 *       copy of a page wins) under the highest number.</li>
 * </ul>
 *
 * <p>Threads: {@link #start} starts {@code migration-journal}; {@link #finish} and {@link #stop} end and
 * join it. {@link #submit} comes from the session's thread.
 */
final class CheckpointWriter {
    private static final System.Logger LOG = System.getLogger(CheckpointWriter.class.getName());

    private record Job(long number, List<List<GranuleDigests.Page>> pages) { }

    private static final Job END = new Job(Long.MIN_VALUE, List.of());

    private final List<BlockImage> images;
    private final PartialMigration journal;
    private final Consumer<Frame> replies;
    private final Consumer<String> failed;
    private final BlockingQueue<Job> jobs = new LinkedBlockingQueue<>();
    private Thread thread;
    private volatile boolean stopping;

    /**
     * @param replies where CONFIRMED frames go (the session's reply thread)
     * @param failed told once, in one line, when a checkpoint cannot be made durable (the session then ends)
     */
    CheckpointWriter(List<BlockImage> images, PartialMigration journal, Consumer<Frame> replies, Consumer<String> failed) {
        this.images = List.copyOf(images);
        this.journal = journal;
        this.replies = replies;
        this.failed = failed;
    }

    void start() {
        thread = Threads.unstartedVirtual("migration-journal", this::run);
        thread.start();
    }

    /** Checkpoint {@code number}: the digest pages changed since the previous one, per disk. */
    void submit(long number, List<List<GranuleDigests.Page>> pages) {
        jobs.add(new Job(number, pages));
    }

    /** Writes every checkpoint submitted so far, then ends. */
    void finish() throws InterruptedException {
        jobs.add(END);
        if (thread != null) {
            thread.join();
        }
    }

    /** Ends after the checkpoint being written now, dropping the queued ones. */
    void stop() throws InterruptedException {
        stopping = true;
        finish();
    }

    private void run() {
        try {
            while (true) {
                List<Job> batch = new ArrayList<>();
                batch.add(jobs.take());
                jobs.drainTo(batch);
                boolean end = batch.removeIf(job -> job == END);
                if (!batch.isEmpty() && !stopping) {
                    write(batch);
                }
                if (end) {
                    return;
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void write(List<Job> batch) {
        long number = batch.getLast().number();
        List<List<GranuleDigests.Page>> merged = new ArrayList<>();
        for (int disk = 0; disk < images.size(); disk++) {
            Map<Integer, GranuleDigests.Page> byGroup = new TreeMap<>();
            for (Job job : batch) {
                for (GranuleDigests.Page page : job.pages().get(disk)) {
                    byGroup.put(page.group(), page);
                }
            }
            merged.add(List.copyOf(byGroup.values()));
        }
        try {
            for (BlockImage image : images) {
                image.flush();
            }
            journal.commit(number, merged);
            replies.accept(new Frame.Confirmed(number));
            LOG.log(System.Logger.Level.DEBUG, "checkpoint " + number + " durable");
        } catch (ImageException e) {
            stopping = true;
            failed.accept("syncing the received disks for checkpoint " + number + " failed: " + e.kind() + " (" + e.getMessage() + ")");
        } catch (IOException e) {
            stopping = true;
            failed.accept("writing the resume journal for checkpoint " + number + " failed: " + e.getMessage());
        }
    }
}
