package ferry.testkit;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs the real peers the tests trust (qemu-img, qemu-io, nbdinfo, nbdcopy, qemu-system-x86_64).
 * {@link #require} skips a test locally when a tool is missing (like nbdkit's exit 77) but fails it
 * when {@code CI=true}, so a skip cannot hide a missing install step.
 */
public final class Tools {
    private Tools() {}

    /** The result of one tool run. */
    public record Result(List<String> command, int exitCode, String stdout, String stderr) {
        public Result orFail() {
            if (exitCode != 0) {
                fail(String.join(" ", command) + " exited " + exitCode + "\nstdout: " + stdout + "\nstderr: " + stderr);
            }
            return this;
        }
    }

    public static boolean onCi() {
        return "true".equalsIgnoreCase(System.getenv("CI"));
    }

    /** The tool's path; skips the test (or fails it on CI) when the tool is not installed. */
    public static Path require(String tool) {
        Path found = find(tool);
        if (found == null) {
            String message = tool + " is not installed (scripts/install-deps.sh installs it)";
            if (onCi()) {
                fail(message);
            }
            assumeTrue(false, message);
        }
        return found;
    }

    public static Path find(String tool) {
        String path = System.getenv().getOrDefault("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin";
        for (String dir : path.split(":")) {
            Path candidate = Path.of(dir, tool);
            if (Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        return null;
    }

    /** Runs a command with a time limit; never throws for a non-zero exit (see {@link Result#orFail()}). */
    public static Result run(long timeoutSeconds, String... command) {
        return run(timeoutSeconds, List.of(command));
    }

    public static Result run(long timeoutSeconds, List<String> command) {
        if (command.get(0).contains("/")) {
            if (!Files.isExecutable(Path.of(command.get(0)))) {
                fail(command.get(0) + " is not an executable file");
            }
        } else {
            require(command.get(0));
        }
        try {
            Path out = Files.createTempFile("tool-out", ".txt");
            Path err = Files.createTempFile("tool-err", ".txt");
            try {
                Process process = new ProcessBuilder(new ArrayList<>(command))
                        .redirectOutput(out.toFile()).redirectError(err.toFile()).start();
                if (!process.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                    process.destroyForcibly().waitFor();
                    fail(String.join(" ", command) + " did not finish within " + timeoutSeconds + " s");
                }
                return new Result(List.copyOf(command), process.exitValue(),
                        Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
            } finally {
                Files.deleteIfExists(out);
                Files.deleteIfExists(err);
            }
        } catch (IOException e) {
            throw new AssertionError("could not run " + command + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted running " + command, e);
        }
    }
}
