package ferry.testkit;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Temporary directories under the module's {@code target/}, on the real disk: /tmp may be tmpfs,
 * which does not show ext4's hole and block behaviour that image tests check.
 */
public final class DiskDirs {
    private DiskDirs() {}

    public static Path create(String prefix) throws IOException {
        Path target = Path.of("target").toAbsolutePath();
        Files.createDirectories(target);
        return Files.createTempDirectory(target, prefix);
    }

    /** Deletes the directory and everything in it. */
    public static void delete(Path dir) throws IOException {
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
