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
    private static final long WRITE_PHASE_MS = 2_500;
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
            AtomicLong bytesWritten = new AtomicLong();
            AtomicLong passes = new AtomicLong();
            AtomicLong bytesCopied = new AtomicLong();

            ThreadFactory writerThreads = Threads.platform("stress-writer");
            List<Thread> writers = new ArrayList<>();
            long deadlineNs = System.nanoTime() + WRITE_PHASE_MS * 1_000_000;
            for (int w = 0; w < WRITERS; w++) {
                long seed = 1000 + w;
                writers.add(writerThreads.newThread(() -> {
                    try {
                        write(tracked, new Random(seed), deadlineNs, bytesWritten);
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
            for (Thread writer : writers) {
                writer.join(WRITE_PHASE_MS + 10_000);
                assertFalse(writer.isAlive(), writer.getName() + " stopped");
            }
            writersDone.set(true);
            copier.join(10_000);
            assertFalse(copier.isAlive(), "copier stopped");
            assertNull(failure.get(), () -> "a worker failed: " + failure.get());

            long finalBytes = copyPass(bitmap, tracked, destination, ByteBuffer.allocateDirect(MAX_RUN_GRANULES * GRANULE));
            assertEquals(0, bitmap.dirtyCount(), "nothing writes after the final pass");

            assertTrue(bytesWritten.get() > 4L * 1024 * 1024, "writers wrote: " + bytesWritten.get());
            assertTrue(passes.get() >= 3, "copier made several non-empty passes while writers ran: " + passes.get());
            assertTrue(bytesCopied.get() > 0, "copier copied data while writers ran");
            System.out.printf("dirty stress: written=%d B passes=%d copiedDuringWrites=%d B finalPass=%d B%n",
                    bytesWritten.get(), passes.get(), bytesCopied.get(), finalBytes);
            source.flush();
            destination.flush();
            assertEquals(-1, Files.mismatch(source.path(), destination.path()), "source and destination are byte-identical");
        }
    }

    /** Random 4 KiB..128 KiB writes at random (unaligned) offsets until the deadline; bounded in count too. */
    private static void write(BlockImage image, Random random, long deadlineNs, AtomicLong bytesWritten) throws ImageException {
        byte[] data = new byte[128 * 1024];
        for (int i = 0; i < MAX_WRITES_PER_WRITER && System.nanoTime() < deadlineNs; i++) {
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
