package ferry.cli;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ferry.testkit.Tools;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Drives {@code bin/ferry serve} as a process (needs cli/target/ferry.jar, which `mvn verify` packages first). */
@Tag("interop")
class ServeIT {
    @TempDir Path tmp;

    @Test
    void servesAnImageUntilSigtermThenFlushesAndRemovesTheSocket() throws Exception {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        Path root = Path.of(System.getProperty("user.dir")).getParent();
        Path launcher = root.resolve("bin/ferry");
        assumeTrue(Files.exists(root.resolve("cli/target/ferry.jar")), "cli/target/ferry.jar not built");
        Path disk = tmp.resolve("d.raw");
        Path socket = tmp.resolve("s.sock");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "16M").orFail();
        Process p = new ProcessBuilder(launcher.toString(), "serve", "--image", disk.toString(), "--socket", socket.toString(),
                "--export", "vda").redirectError(tmp.resolve("err.txt").toFile()).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()));
            String ready = out.readLine();
            assertNotNull(ready, "no ready line");
            String uri = "nbd+unix:///vda?socket=" + socket;
            assertTrue(ready.contains(uri), ready);
            Tools.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x6b 1M 1M", uri).orFail();
            Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x6b 1M 1M", uri).orFail();
        } finally {
            p.destroy();   // SIGTERM
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        }
        assertEquals(0, p.exitValue(), "SIGTERM is a clean stop, exit 0 as qemu-nbd's");
        String err = Files.readString(tmp.resolve("err.txt"));
        assertTrue(err.contains("nbd connection opened"), err);
        assertTrue(err.contains("image flushed and closed"), err);
        assertFalse(Files.exists(socket), "socket removed");
        Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x6b 1M 1M", disk.toString()).orFail();
    }

    @Test
    void goesOnAcceptingAfterRunningOutOfFileDescriptors() throws Exception {
        Tools.require("qemu-io");
        Tools.require("prlimit");
        Path root = Path.of(System.getProperty("user.dir")).getParent();
        assumeTrue(Files.exists(root.resolve("cli/target/ferry.jar")), "cli/target/ferry.jar not built");
        Path disk = tmp.resolve("d.raw");
        Path socket = tmp.resolve("s.sock");
        Path errors = tmp.resolve("err.txt");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "16M").orFail();
        Process p = new ProcessBuilder(root.resolve("bin/ferry").toString(), "serve", "--image", disk.toString(),
                "--socket", socket.toString(), "--export", "vda").redirectError(errors.toFile()).start();
        List<SocketChannel> clients = new ArrayList<>();
        try {
            assertNotNull(new BufferedReader(new InputStreamReader(p.getInputStream())).readLine(), "no ready line");
            // Leave the server a few descriptors more than it holds now, then connect more clients than that.
            long open;
            try (var fds = Files.list(Path.of("/proc/" + p.pid() + "/fd"))) {
                open = fds.count();
            }
            Tools.run(10, "prlimit", "--pid", Long.toString(p.pid()), "--nofile=" + (open + 6) + ":" + (open + 6)).orFail();
            for (int i = 0; i < 20; i++) {
                SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX);
                c.connect(UnixDomainSocketAddress.of(socket));
                clients.add(c);
            }
            waitFor(errors, "Too many open files", 20);
            for (SocketChannel c : clients) {
                c.close();
            }
            // The server must serve again once descriptors are free: before, its accept thread had ended for good.
            String uri = "nbd+unix:///vda?socket=" + socket;
            Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0x3c 1M 1M", "-c", "read -P 0x3c 1M 1M", uri).orFail();
            String log = Files.readString(errors);
            assertTrue(log.contains("nbd accept failed, retrying") && log.contains("nbd accepting again after failures="), log);
        } finally {
            for (SocketChannel c : clients) {
                c.close();
            }
            p.destroy();
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        }
    }

    @Test
    void servesThroughTlsWithQemuNbdsOptions() throws Exception {
        Tools.require("qemu-io");
        Tools.require("openssl");
        Path root = Path.of(System.getProperty("user.dir")).getParent();
        assumeTrue(Files.exists(root.resolve("cli/target/ferry.jar")), "cli/target/ferry.jar not built");
        Path pki = certificates(tmp.resolve("pki"));
        Path disk = tmp.resolve("d.raw");
        Path socket = tmp.resolve("s.sock");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "16M").orFail();
        Process p = new ProcessBuilder(root.resolve("bin/ferry").toString(), "serve", "--image", disk.toString(),
                "--socket", socket.toString(), "--export", "vda",
                "--object", "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=server", "--tls-creds", "tls0")
                .redirectError(tmp.resolve("err.txt").toFile()).start();
        try {
            String ready = new BufferedReader(new InputStreamReader(p.getInputStream())).readLine();
            assertNotNull(ready, "no ready line");
            assertTrue(ready.contains("nbds+unix:///vda?socket=" + socket) && ready.contains("verify-peer=on"), ready);
            List<String> tls = List.of("qemu-io", "--object", "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=client", "--image-opts",
                    "driver=nbd,server.type=unix,server.path=" + socket + ",export=vda,tls-creds=tls0,tls-hostname=localhost");
            List<String> io = new ArrayList<>(tls);
            io.addAll(List.of("-c", "write -P 0x6c 2M 1M", "-c", "read -P 0x6c 2M 1M"));
            Tools.run(60, io).orFail();
            Tools.Result plain = Tools.run(60, "qemu-io", "-f", "raw", "-c", "read 0 4k", "nbd+unix:///vda?socket=" + socket);
            assertTrue(plain.stderr().contains("TLS negotiation required"), plain.stderr());
        } finally {
            p.destroy();
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        }
        String err = Files.readString(tmp.resolve("err.txt"));
        assertTrue(err.contains("nbd tls established") && err.contains("refused for want of TLS"), err);
        Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x6c 2M 1M", disk.toString()).orFail();
    }

    /** One directory for both ends, in QEMU's layout: a CA, an RSA server pair for localhost, an ECDSA client pair. */
    private static Path certificates(Path dir) throws IOException {
        Files.createDirectories(dir);
        Path work = Files.createDirectories(dir.resolveSibling("pki-work"));
        String ca = work.resolve("ca-key.pem").toString();
        String caCert = dir.resolve("ca-cert.pem").toString();
        Tools.run(60, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca, "-out", caCert, "-days", "2",
                "-subj", "/CN=ServeIT CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign").orFail();
        for (String role : List.of("server", "client")) {
            String key = dir.resolve(role + "-key.pem").toString();
            Path ext = Files.writeString(work.resolve(role + ".cnf"), "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                    + (role.equals("server") ? "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n" : "extendedKeyUsage=clientAuth\n"));
            Tools.run(60, "openssl", "genpkey", "-algorithm", role.equals("server") ? "RSA" : "EC",
                    "-pkeyopt", role.equals("server") ? "rsa_keygen_bits:2048" : "ec_paramgen_curve:prime256v1", "-out", key).orFail();
            String csr = work.resolve(role + ".csr").toString();
            Tools.run(60, "openssl", "req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + (role.equals("server") ? "localhost" : "ServeIT")).orFail();
            Tools.run(60, "openssl", "x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", ca, "-set_serial", role.equals("server") ? "1" : "2",
                    "-days", "2", "-extfile", ext.toString(), "-out", dir.resolve(role + "-cert.pem").toString()).orFail();
        }
        return dir;
    }

    private static void waitFor(Path log, String text, int seconds) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!Files.readString(log).contains(text)) {
            if (System.nanoTime() > deadline) {
                fail("no '" + text + "' in the server's log within " + seconds + " s:\n" + Files.readString(log));
            }
            Thread.sleep(50);
        }
    }

    @Test
    void locksTheImageAsQemuDoesSoQemuIoCannotWriteItWhileServed() throws Exception {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        Path root = Path.of(System.getProperty("user.dir")).getParent();
        assumeTrue(Files.exists(root.resolve("cli/target/ferry.jar")), "cli/target/ferry.jar not built");
        Path disk = tmp.resolve("d.raw");
        Path socket = tmp.resolve("s.sock");
        Path pidFile = tmp.resolve("serve.pid");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "16M").orFail();
        // qemu-nbd's spelling: -k SOCKET -x NAME -f FORMAT -t --pid-file FILE IMAGE
        Process p = new ProcessBuilder(root.resolve("bin/ferry").toString(), "serve", "-k", socket.toString(), "-x", "vda",
                "-f", "raw", "-t", "--pid-file", pidFile.toString(), disk.toString())
                .redirectError(tmp.resolve("err.txt").toFile()).start();
        try {
            assertNotNull(new BufferedReader(new InputStreamReader(p.getInputStream())).readLine(), "no ready line");
            assertEquals(p.pid() + "\n", Files.readString(pidFile));
            Tools.Result write = Tools.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", disk.toString());
            assertNotEquals(0, write.exitCode());
            assertTrue(write.stderr().contains("Failed to get \"write\" lock"), write.stderr());
            Tools.Result secondServer = Tools.run(60, "qemu-nbd", "-k", tmp.resolve("q.sock").toString(), "-f", "raw", disk.toString());
            assertNotEquals(0, secondServer.exitCode(), "qemu-nbd must not serve it too");
            Tools.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 64k", "nbd+unix:///vda?socket=" + socket).orFail();
        } finally {
            p.destroy();   // SIGTERM
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        }
        assertEquals(0, p.exitValue());
        assertFalse(Files.exists(pidFile), "pid file removed on exit, as qemu-nbd's");
        Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x22 0 64k", "-c", "write -P 0x33 0 64k", disk.toString()).orFail();
    }

    @Test
    void refusesAnImageThatQemuNbdServesWithOneLineNamingIt() throws Exception {
        Tools.require("qemu-img");
        Tools.require("qemu-nbd");
        Path root = Path.of(System.getProperty("user.dir")).getParent();
        assumeTrue(Files.exists(root.resolve("cli/target/ferry.jar")), "cli/target/ferry.jar not built");
        Path disk = tmp.resolve("held.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "16M").orFail();
        Path qsock = tmp.resolve("q.sock");
        Process qemuNbd = new ProcessBuilder("qemu-nbd", "-k", qsock.toString(), "-f", "raw", "-t", disk.toString())
                .redirectErrorStream(true).start();
        try {
            for (int i = 0; i < 100 && !Files.exists(qsock); i++) {
                Thread.sleep(50);
            }
            assertTrue(Files.exists(qsock), "qemu-nbd did not start");
            for (List<String> mode : List.of(List.of("-r"), List.<String>of())) {   // read-only and writable alike
                List<String> argv = new ArrayList<>(List.of(root.resolve("bin/ferry").toString(), "serve", "-k",
                        tmp.resolve("s.sock").toString()));
                argv.addAll(mode);
                argv.add(disk.toString());
                Tools.Result serve = Tools.run(60, argv);
                assertEquals(1, serve.exitCode(), serve.toString());
                assertTrue(serve.stderr().startsWith("ferry serve: image is in use: path=" + disk + ": Failed to get "), serve.stderr());
                assertEquals(1, serve.stderr().lines().count(), serve.stderr());
            }
        } finally {
            qemuNbd.destroy();
            qemuNbd.waitFor(30, TimeUnit.SECONDS);
        }
    }
}
