package ferry.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ServeCommandTest {
    @TempDir Path tmp;

    @Test
    void shouldParseSocketAndBuildTheUnixUri() throws Exception {
        ServeCommand.Options o = ServeCommand.parse(List.of("--image", "/d.raw", "--socket", "/run/s.sock", "--export", "vda", "--read-only"));
        assertEquals(Path.of("/d.raw"), o.image());
        assertTrue(o.readOnly());
        assertEquals("nbd+unix:///vda?socket=/run/s.sock", o.uri());
    }

    @Test
    void shouldParseListenAddress() throws Exception {
        ServeCommand.Options o = ServeCommand.parse(List.of("--image", "d.raw", "--listen", "127.0.0.1:10809"));
        assertEquals("127.0.0.1", o.host());
        assertEquals(10809, o.port());
        assertEquals("nbd://127.0.0.1:10809/", o.uri());
    }

    @Test
    void shouldRefuseBadOptionsWithOneLineAndExitCode2() {
        for (List<String> args : List.<List<String>>of(List.of(), List.of("--image"), List.of("--image", "d", "--bogus"),
                List.of("--image", "d", "--socket", "s", "--listen", "h:1"), List.of("--image", "d"),
                List.of("--image", "d", "--listen", "nohost"), List.of("--image", "d", "--listen", "h:99999"),
                List.of("--image", "d", "--socket", "s", "--format", "qcow9"))) {
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            int code = ServeCommand.run(args, new PrintStream(new ByteArrayOutputStream()), new PrintStream(err));
            assertEquals(2, code, "args " + args);
            String first = err.toString().lines().findFirst().orElse("");
            assertTrue(first.startsWith("ferry serve: "), first);
            assertFalse(err.toString().contains("Exception"), err.toString());
        }
    }

    @Test
    void shouldFailCleanlyOnMissingImage() {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = ServeCommand.run(List.of("--image", "/nonexistent/x.raw", "--socket", "/tmp/x.sock"),
                new PrintStream(new ByteArrayOutputStream()), new PrintStream(err));
        assertEquals(1, code);
        assertTrue(err.toString().startsWith("ferry serve: cannot open image"), err.toString());
    }

    @Test
    void shouldNeverReplaceAFileOrDirectoryGivenAsSocket() throws Exception {
        Path disk = Files.write(tmp.resolve("d.raw"), new byte[1 << 20]);
        Path file = Files.writeString(tmp.resolve("important.txt"), "keep me");
        Path dir = Files.createDirectory(tmp.resolve("dir"));
        for (Path socket : List.of(file, dir)) {
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            int code = ServeCommand.run(List.of("--image", disk.toString(), "--socket", socket.toString()),
                    new PrintStream(new ByteArrayOutputStream()), new PrintStream(err));
            assertEquals(1, code, err.toString());
            assertTrue(err.toString().startsWith("ferry serve: nbd listen failed: path=" + socket + " exists and is a "), err.toString());
            assertEquals(1, err.toString().lines().count(), err.toString());
        }
        assertEquals("keep me", Files.readString(file));
        assertTrue(Files.isDirectory(dir));
    }
}
