package ferry.dirty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.image.raw.RawImage;
import ferry.linux.Threads;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Writers change a raw image through a {@link DirtyTrackingImage} while a copier repeatedly takes
 * {@code snapshotAndClear()} and copies the dirty runs to a second raw image, as the migration's
 * iterate phase does. After the writers stop and one final pass, the two files must be equal: a
 * mark placed before the data is visible, or a clear after the read, loses writes here.
 */
class DirtyStressTest {
    private static final int GRANULE = 4096;
    private static final long SIZE = 16L * 1024 * 1024 + 1000;   // a short last granule
    private static final int WRITERS = 4;
    /** The writers run at least this long, and until the copier made a few passes while they wrote. */
    private static final long WRITE_PHASE_MS = 2_500;
    private static final int MIN_PASSES_WHILE_WRITING = 3;
    private static final long MIN_BYTES_WRITTEN = 4L << 20;
    /** Only bounds the wait for the two minimums above, so that a broken copier cannot hang the build. */
    private static final long WRITE_PHASE_LIMIT_MS = 60_000;
    private static final int MAX_WRITES_PER_WRITER = 200_000;
    private static final int MAX_RUN_GRANULES = 32;             // 128 KiB frames

    private Path dir;

    @BeforeEach
    void makeDir() throws IOException {
        dir = ferry.testkit.DiskDirs.create("dirty-stress");
    }

    @AfterEach
    void removeDir() throws IOException {
        ferry.testkit.DiskDirs.delete(dir);
    }

    @Test
    void shouldEndWithEqualImagesWhenCopyingWhileWritersRun() throws Exception {
        try (RawImage source = RawImage.create(dir.resolve("source.raw"), SIZE);
             RawImage destination = RawImage.create(dir.resolve("destination.raw"), SIZE)) {
            DirtyBitmap bitmap = new DirtyBitmap(SIZE, GRANULE);
            DirtyTrackingImage tracked = new DirtyTrackingImage(source, bitmap);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            AtomicBoolean writersDone = new AtomicBoolean();
            AtomicBoolean stopWriting = new AtomicBoolean();
            AtomicLong bytesWritten = new AtomicLong();
            AtomicLong passes = new AtomicLong();
            AtomicLong bytesCopied = new AtomicLong();

            ThreadFactory writerThreads = Threads.platform("stress-writer");
            List<Thread> writers = new ArrayList<>();
            for (int w = 0; w < WRITERS; w++) {
                long seed = 1000 + w;
                writers.add(writerThreads.newThread(() -> {
                    try {
                        write(tracked, new Random(seed), stopWriting, bytesWritten);
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }));
            }
            Thread copier = Threads.platform("stress-copier").newThread(() -> {
                try {
                    ByteBuffer buffer = ByteBuffer.allocateDirect(MAX_RUN_GRANULES * GRANULE);
                    while (!writersDone.get() && failure.get() == null) {
                        long copied = copyPass(bitmap, tracked, destination, buffer);
                        if (copied > 0) {
                            bytesCopied.addAndGet(copied);
                            passes.incrementAndGet();
                        } else {
                            Thread.sleep(1);   // nothing dirty yet: do not spin a core away from the writers
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });

            copier.start();
            writers.forEach(Thread::start);
            // Stop the writers once the stress did what it is for, however fast the machine: a minimum time,
            // several copier passes while they wrote, and some megabytes written.
            long startNs = System.nanoTime();
            long limitNs = startNs + WRITE_PHASE_LIMIT_MS * 1_000_000;
            while (failure.get() == null && System.nanoTime() < limitNs && writers.stream().allMatch(Thread::isAlive)
                    && !(System.nanoTime() - startNs >= WRITE_PHASE_MS * 1_000_000
                         && passes.get() >= MIN_PASSES_WHILE_WRITING && bytesWritten.get() >= MIN_BYTES_WRITTEN)) {
                Thread.sleep(10);
            }
            stopWriting.set(true);
            for (Thread writer : writers) {
                writer.join(10_000);
                assertFalse(writer.isAlive(), writer.getName() + " stopped");
            }
            writersDone.set(true);
            copier.join(10_000);
            assertFalse(copier.isAlive(), "copier stopped");
            assertNull(failure.get(), () -> "a worker failed: " + failure.get());

            long finalBytes = copyPass(bitmap, tracked, destination, ByteBuffer.allocateDirect(MAX_RUN_GRANULES * GRANULE));
            assertEquals(0, bitmap.dirtyCount(), "nothing writes after the final pass");

            assertTrue(bytesWritten.get() >= MIN_BYTES_WRITTEN, "writers wrote " + bytesWritten.get() + " bytes before the"
                    + " writes' count or the " + WRITE_PHASE_LIMIT_MS + " ms limit ran out");
            assertTrue(passes.get() >= MIN_PASSES_WHILE_WRITING, "the copier made " + passes.get() + " non-empty passes"
                    + " while the writers ran (within " + WRITE_PHASE_LIMIT_MS + " ms): is it stuck?");
            assertTrue(bytesCopied.get() > 0, "copier copied data while writers ran");
            System.out.printf("dirty stress: written=%d B passes=%d copiedDuringWrites=%d B finalPass=%d B%n",
                    bytesWritten.get(), passes.get(), bytesCopied.get(), finalBytes);
            source.flush();
            destination.flush();
            assertEquals(-1, Files.mismatch(source.path(), destination.path()), "source and destination are byte-identical");
        }
    }

    /** Random 4 KiB..128 KiB writes at random (unaligned) offsets until told to stop; bounded in count too. */
    private static void write(BlockImage image, Random random, AtomicBoolean stop, AtomicLong bytesWritten) throws ImageException {
        byte[] data = new byte[128 * 1024];
        for (int i = 0; i < MAX_WRITES_PER_WRITER && !stop.get(); i++) {
            int length = 4096 + random.nextInt(128 * 1024 - 4096 + 1);
            long offset = (long) (random.nextDouble() * (SIZE - length));
            random.nextBytes(data);
            image.write(offset, ByteBuffer.wrap(data, 0, length));
            bytesWritten.addAndGet(length);
        }
    }

    /** One iterate pass: clear the dirty set, then copy each dirty run (clear before read: DirtyBitmap). */
    private static long copyPass(DirtyBitmap bitmap, BlockImage source, BlockImage destination, ByteBuffer buffer)
            throws java.io.IOException, InterruptedException {
        DirtySnapshot snapshot = bitmap.snapshotAndClear();
        long[] copied = {0};
        snapshot.forEachRun(MAX_RUN_GRANULES, (first, count) -> {
            long offset = first * GRANULE;
            int length = (int) Math.min(count * GRANULE, SIZE - offset);
            buffer.clear().limit(length);
            source.read(offset, buffer);
            buffer.flip();
            destination.write(offset, buffer);
            copied[0] += length;
        });
        return copied[0];
    }
}
