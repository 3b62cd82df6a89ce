package ferry.image.qcow2;

import java.nio.file.Path;

/**
 * Child process of {@link Qcow2CrashIT}: opens a qcow2 image for writing, says {@code ready} on
 * stdout, then writes, zeroes and trims at random until it is killed (or 60 s pass, so an orphan
 * cannot run on).
 *
 * <p>Usage: {@code CrashWriter IMAGE SEED}
 */
public final class CrashWriter {
    private CrashWriter() {}

    public static void main(String[] args) throws Exception {
        Path path = Path.of(args[0]);
        long seed = Long.parseLong(args[1]);
        long deadlineNs = System.nanoTime() + 60_000_000_000L;
        try (Qcow2Image image = Qcow2Image.open(path, false)) {
            RandomOps ops = new RandomOps(seed, new byte[(int) image.size()], image.clusterSize());
            System.out.println("ready");
            System.out.flush();
            for (int i = 0; i < 1_000_000 && System.nanoTime() < deadlineNs; i++) {
                ops.step(image);
                if (i % 25 == 0) {
                    image.flush();
                }
            }
        }
    }
}
