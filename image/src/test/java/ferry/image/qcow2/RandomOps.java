package ferry.image.qcow2;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Random;

/**
 * A seeded mix of writes, zero writes and trims applied to an image and to an in-memory model of
 * what the image must read back; sizes and offsets mix cluster-aligned and unaligned ranges.
 */
final class RandomOps {
    private final Random random;
    private final byte[] model;
    private final int clusterSize;

    RandomOps(long seed, byte[] model, int clusterSize) {
        this.random = new Random(seed);
        this.model = model;
        this.clusterSize = clusterSize;
    }

    void run(BlockImage image, int count) throws ImageException {
        for (int i = 0; i < count; i++) {
            step(image);
        }
    }

    void step(BlockImage image) throws ImageException {
        int size = model.length;
        boolean aligned = random.nextBoolean();
        int maxLength = Math.min(size, clusterSize * 6);
        int offset, length;
        if (aligned) {
            int clusters = size / clusterSize;
            offset = random.nextInt(clusters) * clusterSize;
            length = Math.min(size - offset, (1 + random.nextInt(4)) * clusterSize);
        } else {
            offset = random.nextInt(size - 1);
            length = 1 + random.nextInt(Math.min(maxLength, size - offset));
        }
        int op = random.nextInt(10);
        if (op < 6) {
            byte[] data = new byte[length];
            random.nextBytes(data);
            image.write(offset, ByteBuffer.wrap(data));
            System.arraycopy(data, 0, model, offset, length);
        } else if (op < 8) {
            image.writeZeroes(offset, length, random.nextBoolean());
            Arrays.fill(model, offset, offset + length, (byte) 0);
        } else {
            image.trim(offset, length);
            Arrays.fill(model, offset, offset + length, (byte) 0);
        }
    }

    static byte[] readAll(BlockImage image) throws ImageException {
        ByteBuffer all = ByteBuffer.allocate((int) image.size());
        image.read(0, all);
        return all.array();
    }
}
