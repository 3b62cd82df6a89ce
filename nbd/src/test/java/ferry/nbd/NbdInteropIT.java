package ferry.nbd;

import static org.junit.jupiter.api.Assertions.*;

import ferry.image.raw.RawImage;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Our NbdServer in-process on a temp unix socket, driven by qemu-img, qemu-io, nbdinfo and nbdcopy. */
@Tag("interop")
class NbdInteropIT {
    static final long MiB = 1 << 20;
    @TempDir Path tmp;
    Path disk;
    RawImage image;
    RawImage readOnly;
    NbdServer server;
    String uri;
    String roUri;

    @BeforeEach
    void serve() throws IOException {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        disk = tmp.resolve("disk.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", disk.toString(), "64M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0xa1 0 1M", "-c", "write -P 0xb2 32M 4M", disk.toString()).orFail();
        image = RawImage.open(disk, false);
        readOnly = RawImage.open(disk, true);
        Path socket = tmp.resolve("nbd.sock");
        server = NbdServer.unix(socket, List.of(new NbdExport("disk", image, false), new NbdExport("ro", readOnly, true))).start();
        uri = "nbd+unix:///disk?socket=" + socket;
        roUri = "nbd+unix:///ro?socket=" + socket;
    }

    @AfterEach
    void stop() throws IOException {
        if (server != null) {
            server.close();
            image.close();
            readOnly.close();
        }
    }

    @Test
    void qemuImgSeesTheSizeAndTheSameBytes() throws IOException {
        String info = Tools.run(30, "qemu-img", "info", "--output=json", uri).orFail().stdout();
        assertTrue(info.contains("\"virtual-size\": 67108864"), info);
        Tools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", disk.toString(), uri).orFail();
    }

    @Test
    void qemuImgConvertsToAndFromTheExport() throws IOException {
        Path copy = tmp.resolve("copy.raw");
        Tools.run(60, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, copy.toString()).orFail();
        Tools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", disk.toString(), copy.toString()).orFail();
        Path source = tmp.resolve("source.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", source.toString(), "64M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0x3c 5M 3M", source.toString()).orFail();
        Tools.run(60, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", source.toString(), uri).orFail();
        image.flush();
        Tools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", source.toString(), disk.toString()).orFail();
    }

    @Test
    void qemuIoWritesAndReadsPatterns() {
        Tools.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 3M 1M", "-c", "write -z 8M 64k", "-c", "write -P 0x11 100 7",
                "-c", "flush", uri).orFail();
        String out = Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x5a 3M 1M", "-c", "read -P 0 8M 64k",
                "-c", "read -P 0x11 100 7", "-c", "read -P 0xb2 32M 4M", uri).orFail().stdout();
        assertFalse(out.contains("Pattern verification failed"), out);
        // and the file itself holds what the client wrote
        Tools.run(60, "qemu-io", "-f", "raw", "-c", "read -P 0x5a 3M 1M", disk.toString()).orFail();
    }

    @Test
    void nbdinfoReportsSizeAndTheSameMapAsQemuImg() {
        Tools.require("nbdinfo");
        assertEquals("67108864", Tools.run(30, "nbdinfo", "--size", uri).orFail().stdout().trim());
        String map = Tools.run(30, "nbdinfo", "--map", "--json", uri).orFail().stdout();
        List<long[]> ours = parse(map, "\"offset\":", "\"length\":", "\"type\":");
        String qemu = Tools.run(30, "qemu-img", "map", "--output=json", "-f", "raw", disk.toString()).orFail().stdout();
        List<long[]> theirs = new ArrayList<>();
        for (String line : qemu.split("\n")) {
            if (line.contains("\"start\"")) {
                long start = number(line, "\"start\":");
                long length = number(line, "\"length\":");
                long type = line.contains("\"data\": true") ? 0 : 3;   // hole+zero
                if (!theirs.isEmpty() && theirs.getLast()[2] == type) {
                    theirs.getLast()[1] += length;
                } else {
                    theirs.add(new long[] {start, length, type});
                }
            }
        }
        assertEquals(render(theirs), render(ours), "nbdinfo --map: " + map + "\nqemu-img map: " + qemu);
    }

    @Test
    void nbdcopyRoundTrips() throws IOException {
        Tools.require("nbdcopy");
        Path out = tmp.resolve("out.raw");
        Tools.run(60, "nbdcopy", uri, out.toString()).orFail();
        assertEquals(-1, Files.mismatch(disk, out));
        Path in = tmp.resolve("in.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", in.toString(), "64M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0x77 10M 6M", in.toString()).orFail();
        Tools.run(60, "nbdcopy", in.toString(), uri).orFail();
        image.flush();
        assertEquals(-1, Files.mismatch(in, disk));
    }

    @Test
    void readOnlyExportRefusesWrites() throws IOException {
        byte[] before = Files.readAllBytes(disk);
        Tools.Result r = Tools.run(60, "qemu-io", "-f", "raw", "-c", "write -P 0x99 0 64k", roUri);
        String all = r.stdout() + r.stderr();
        assertTrue(r.exitCode() != 0 || all.contains("Operation not permitted") || all.contains("read-only")
                || all.contains("Read-only"), all);
        assertFalse(all.contains("wrote 65536/65536"), all);
        Tools.run(60, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0xa1 0 1M", roUri).orFail();
        assertArrayEquals(before, Files.readAllBytes(disk));
    }

    @Test
    void servesConcurrentClients() throws Exception {
        List<Process> processes = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            processes.add(new ProcessBuilder("qemu-io", "-f", "raw",
                    "-c", "write -P 0x" + (40 + i) + " " + (16 + 2 * i) + "M 2M",
                    "-c", "read -P 0x" + (40 + i) + " " + (16 + 2 * i) + "M 2M", uri).redirectErrorStream(true).start());
        }
        for (Process p : processes) {
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            String out = new String(p.getInputStream().readAllBytes());
            assertEquals(0, p.exitValue(), out);
            assertFalse(out.contains("Pattern verification failed"), out);
        }
        String status = Tools.run(30, "qemu-io", "-f", "raw", "-c", "read -P 0x43 22M 2M", uri).orFail().stdout();
        assertFalse(status.contains("Pattern verification failed"), status);
    }

    private static List<long[]> parse(String json, String offsetKey, String lengthKey, String typeKey) {
        List<long[]> out = new ArrayList<>();
        for (String entry : json.split("\\{")) {
            if (entry.contains(offsetKey)) {
                long type = number(entry, typeKey) == 0 ? 0 : 3;
                long offset = number(entry, offsetKey);
                long length = number(entry, lengthKey);
                if (!out.isEmpty() && out.getLast()[2] == type) {
                    out.getLast()[1] += length;
                } else {
                    out.add(new long[] {offset, length, type});
                }
            }
        }
        return out;
    }

    private static long number(String s, String key) {
        int at = s.indexOf(key) + key.length();
        while (!Character.isDigit(s.charAt(at))) {
            at++;
        }
        int end = at;
        while (end < s.length() && Character.isDigit(s.charAt(end))) {
            end++;
        }
        return Long.parseLong(s.substring(at, end));
    }

    private static String render(List<long[]> extents) {
        StringBuilder b = new StringBuilder();
        for (long[] e : extents) {
            b.append(e[0]).append('+').append(e[1]).append(':').append(e[2]).append('\n');
        }
        return b.toString();
    }
}
