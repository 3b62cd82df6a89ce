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
    void shouldTakeTlsCredsAsADirectoryOrAsQemusObject() throws Exception {
        ServeCommand.Options dir = ServeCommand.parse(List.of("--image", "d.raw", "--socket", "/run/s.sock", "--export", "vda",
                "--tls-creds", "/etc/pki/ferry"));
        assertEquals(new ServeCommand.Tls(Path.of("/etc/pki/ferry"), true), dir.tls());
        assertEquals("nbds+unix:///vda?socket=/run/s.sock", dir.uri());
        // qemu-nbd's spelling, with a comma in the directory written twice as QEMU does
        ServeCommand.Options object = ServeCommand.parse(List.of("--image", "d.raw", "--listen", "127.0.0.1:10809",
                "--object", "tls-creds-x509,id=tls0,dir=/srv/a,,b,endpoint=server,verify-peer=off", "--tls-creds=tls0"));
        assertEquals(new ServeCommand.Tls(Path.of("/srv/a,b"), false), object.tls());
        assertEquals("nbds://127.0.0.1:10809/", object.uri());
        ServeCommand.Options typed = ServeCommand.parse(List.of("--image=d.raw", "--socket=s", "--tls-creds", "t",
                "--object=qom-type=tls-creds-x509,id=t,endpoint=server,dir=/d,verify-peer=yes"));
        assertEquals(new ServeCommand.Tls(Path.of("/d"), true), typed.tls());
        assertNull(ServeCommand.parse(List.of("--image", "d", "--socket", "s")).tls());
    }

    @Test
    void shouldRefuseTlsSettingsThatAreWrongOrUnusedWithOneLine() {
        record Case(String expected, List<String> extra) {}
        for (Case c : List.of(
                new Case("needs endpoint=server (QEMU's default is client)", List.of("--object", "tls-creds-x509,id=t,dir=/d", "--tls-creds", "t")),
                new Case("needs endpoint=server, got endpoint=client",
                        List.of("--object", "tls-creds-x509,id=t,dir=/d,endpoint=client", "--tls-creds", "t")),
                new Case("is not used: add --tls-creds t", List.of("--object", "tls-creds-x509,id=t,dir=/d,endpoint=server")),
                new Case("names no --object", List.of("--object", "tls-creds-x509,id=t,dir=/d,endpoint=server", "--tls-creds", "u")),
                new Case("unsupported --object type: secret", List.of("--object", "secret,id=s,data=x", "--tls-creds", "s")),
                new Case("unsupported properties: [priority]",
                        List.of("--object", "tls-creds-x509,id=t,dir=/d,endpoint=server,priority=NORMAL", "--tls-creds", "t")),
                new Case("verify-peer must be on or off",
                        List.of("--object", "tls-creds-x509,id=t,dir=/d,endpoint=server,verify-peer=maybe", "--tls-creds", "t")),
                new Case("needs id=ID and dir=DIR", List.of("--object", "tls-creds-x509,id=t,endpoint=server", "--tls-creds", "t")),
                new Case("two --object with id=t", List.of("--object", "tls-creds-x509,id=t,dir=/d,endpoint=server",
                        "--object", "tls-creds-x509,id=t,dir=/e,endpoint=server", "--tls-creds", "t")),
                new Case("expected key=value", List.of("--object", "tls-creds-x509,id=t,dir", "--tls-creds", "t")))) {
            List<String> args = new java.util.ArrayList<>(List.of("--image", "d", "--socket", "s"));
            args.addAll(c.extra());
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            assertEquals(2, ServeCommand.run(args, new PrintStream(new ByteArrayOutputStream()), new PrintStream(err)), c.expected());
            String first = err.toString().lines().findFirst().orElse("");
            assertTrue(first.startsWith("ferry serve: ") && first.contains(c.expected()), c.expected() + " <> " + first);
        }
    }

    @Test
    void shouldFailCleanlyOnUnusableCredentialsBeforeOpeningTheImage() throws Exception {
        Path disk = Files.write(tmp.resolve("d.raw"), new byte[1 << 20]);
        Path creds = Files.createDirectory(tmp.resolve("pki"));
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = ServeCommand.run(List.of("--image", disk.toString(), "--socket", tmp.resolve("s.sock").toString(),
                "--tls-creds", creds.toString()), new PrintStream(new ByteArrayOutputStream()), new PrintStream(err));
        assertEquals(1, code);
        assertEquals(1, err.toString().lines().count(), err.toString());
        assertTrue(err.toString().startsWith("ferry serve: Unable to access credentials " + creds.resolve("ca-cert.pem") + ": no such file"),
                err.toString());   // QEMU's words, from the tls module's loader
        assertFalse(Files.exists(tmp.resolve("s.sock")));
    }

    @Test
    void shouldPrintUsageOnHelp() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertEquals(0, ServeCommand.run(List.of("--help"), new PrintStream(out), new PrintStream(new ByteArrayOutputStream())));
        assertTrue(out.toString().startsWith("usage: ferry serve") && out.toString().contains("--tls-creds"), out.toString());
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

    @Test
    void shouldTakeQemuNbdsOptionsBesideItsOwn() throws Exception {
        ServeCommand.Options o = ServeCommand.parse(List.of("-k", "/run/s.sock", "-x", "vda", "-f", "qcow2", "-r", "-t",
                "-e", "4", "--fork", "--pid-file", "/run/serve.pid", "/srv/d.qcow2"));
        assertEquals(Path.of("/srv/d.qcow2"), o.image());
        assertEquals("qcow2", o.format());
        assertTrue(o.readOnly());
        assertEquals("nbd+unix:///vda?socket=/run/s.sock", o.uri());
        assertEquals(new ServeCommand.Process(4, true, java.util.Optional.of(Path.of("/run/serve.pid"))), o.process());
        ServeCommand.Options longForms = ServeCommand.parse(List.of("--socket=/s", "--export-name=x", "--persistent",
                "--shared=0", "d.raw"));
        assertEquals(0, longForms.process().maxConnections());
        assertFalse(longForms.process().fork());
        assertEquals("nbd+unix:///x?socket=/s", longForms.uri());
    }

    @Test
    void shouldRefuseBadQemuNbdOptionsWithOneLine() {
        for (List<String> args : List.of(List.of("-k", "/s", "-e", "many", "d.raw"), List.of("-k", "/s", "a.raw", "b.raw"),
                List.of("-k", "/s", "-e", "-1", "d.raw"), List.of("-k", "/s", "--fork=yes", "d.raw"))) {
            assertThrows(ServeCommand.UsageException.class, () -> ServeCommand.parse(args), args.toString());
        }
    }

    @Test
    void shouldRefuseAnImageAnotherProcessLocksWithOneLineNamingIt() throws Exception {
        Path disk = tmp.resolve("held.raw");
        Files.write(disk, new byte[1 << 20]);
        try (ferry.image.ImageLock held = ferry.image.ImageLock.forServing(disk, true)) {   // a read-only user, as qemu-img
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            int code = ServeCommand.run(List.of("-k", tmp.resolve("s.sock").toString(), disk.toString()),
                    new PrintStream(new ByteArrayOutputStream()), new PrintStream(err));
            assertEquals(1, code);
            String line = err.toString();
            assertTrue(line.startsWith("ferry serve: image is in use: path=" + disk + ": Failed to get \"write\" lock"), line);
            assertEquals(1, line.lines().count(), line);
            assertFalse(Files.exists(tmp.resolve("s.sock")), "no server started");
        }
    }
}
