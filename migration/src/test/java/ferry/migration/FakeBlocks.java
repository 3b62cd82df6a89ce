package ferry.migration;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtySnapshot;
import ferry.dirty.DirtyTrackingImage;
import ferry.image.BlockImage;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Stand-in for the source QEMU's block layer in the in-process protocol tests: the guest writes
 * through {@link DirtyTrackingImage}s, whose bitmaps play QEMU's dirty bitmaps, and a
 * {@link WriteThrottle} plays {@code block_set_io_throttle}. The VM tests use the real QEMU.
 */
final class FakeBlocks implements SourceBlocks {
    private final List<DirtyTrackingImage> images;
    private final List<DirtyBitmap> bitmaps = new ArrayList<>();
    private final WriteThrottle throttle = new WriteThrottle();
    /** The highest write limit the migration set, 0 if it never throttled. */
    final AtomicLong highestLimit = new AtomicLong();
    volatile boolean stopped;
    /** Counted down once every image is tracked: from here on a guest write is a write during the migration. */
    final java.util.concurrent.CountDownLatch tracking = new java.util.concurrent.CountDownLatch(1);

    FakeBlocks(List<DirtyTrackingImage> images) {
        this.images = List.copyOf(images);
    }

    static FakeBlocks of(DirtyTrackingImage image) {
        return new FakeBlocks(List.of(image));
    }

    /** The HELLO's disk list for these images. */
    List<SourceDisk> disks() {
        List<SourceDisk> disks = new ArrayList<>();
        for (int i = 0; i < images.size(); i++) {
            disks.add(new SourceDisk("disk" + i, images.get(i).size(), images.get(i).format(), java.util.Optional.empty()));
        }
        return disks;
    }

    @Override
    public List<BlockImage> start(int granuleSize, boolean incremental) {
        List<BlockImage> readers = new ArrayList<>();
        for (DirtyTrackingImage image : images) {
            DirtyBitmap bitmap = new DirtyBitmap(image.size(), granuleSize);
            bitmaps.add(bitmap);
            image.gate(throttle);
            image.track(bitmap);
            readers.add(image);
        }
        tracking.countDown();
        return readers;
    }

    @Override
    public List<DirtySnapshot> takeDirty() {
        return bitmaps.stream().map(DirtyBitmap::snapshotAndClear).toList();
    }

    @Override
    public long dirtyBytes() {
        return bitmaps.stream().mapToLong(DirtyBitmap::dirtyBytes).sum();
    }

    @Override
    public void throttleWrites(long bytesPerSec) {
        throttle.limit(bytesPerSec);
        highestLimit.accumulateAndGet(bytesPerSec, Math::max);
    }

    /** Times {@link #suspend} was called (an attempt ended and another may follow). */
    final AtomicLong suspends = new AtomicLong();

    /** Runs in each {@link #suspend}: the guest writing while the link is down, at a known moment. */
    volatile Runnable whileSuspended = () -> { };

    @Override
    public void suspend() {
        throttle.limit(0);                       // tracking goes on: the bitmaps stay on the images
        suspends.incrementAndGet();
        whileSuspended.run();
    }

    @Override
    public List<BlockImage> reopen() {
        return List.copyOf(images);
    }

    @Override
    public void stop() {
        throttle.limit(0);
        for (DirtyTrackingImage image : images) {
            image.untrack();
            image.gate(DirtyTrackingImage.WriteGate.OPEN);
        }
        stopped = true;
    }
}
