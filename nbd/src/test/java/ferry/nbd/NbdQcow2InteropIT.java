package ferry.nbd;

import static org.junit.jupiter.api.Assertions.*;

import ferry.image.qcow2.Qcow2Image;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A qcow2 overlay on a raw base ({@code qemu-img create -f qcow2 -b base.raw -F raw}) served by our
 * NbdServer and written by qemu-io over NBD; the same writes go straight into a raw copy of the base.
 * Afterwards the overlay must be clean for {@code qemu-img check}, equal to the reference for
 * {@code qemu-img compare}, and the NBD base:allocation map must agree with {@code qemu-img map} of
 * the overlay's merged view (which runs read as zeros and which hold data).
 */
@Tag("interop")
class NbdQcow2InteropIT {
    @TempDir Path tmp;
    Qcow2Image image;
    NbdServer server;

    /** Partial clusters over base data, a zeroed range, a write into a base hole, a sub-sector write. */
    private static final String[] WRITES = {
        "write -P 0x5c 1M 2M", "write -z 8M 64k", "write -P 0x11 12M 4k", "write -P 0x22 100 7", "write -P 0x33 15M 1M"};

    @AfterEach
    void stop() throws Exception {
        if (server != null) {
            server.close();
        }
        if (image != null) {
            image.close();
        }
    }

    @Test
    void qemuWritesThroughNbdLeaveACleanOverlayEqualToARawReference() throws Exception {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        Tools.require("nbdinfo");
        Path base = tmp.resolve("base.raw");
        Path overlay = tmp.resolve("overlay.qcow2");
        Path reference = tmp.resolve("reference.raw");
        Tools.run(30, "qemu-img", "create", "-f", "raw", base.toString(), "16M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0xa1 0 2M", "-c", "write -P 0xb2 8M 1M", base.toString()).orFail();
        Tools.run(30, "qemu-img", "create", "-f", "qcow2", "-b", base.toString(), "-F", "raw", overlay.toString()).orFail();
        Tools.run(30, "cp", "--sparse=always", base.toString(), reference.toString()).orFail();
        Tools.run(30, qemuIo("raw", reference.toString(), WRITES)).orFail();

        image = Qcow2Image.open(overlay, false);
        Path socket = tmp.resolve("nbd.sock");
        server = NbdServer.unix(socket, List.of(new NbdExport("disk", image, false))).start();
        String uri = "nbd+unix:///disk?socket=" + socket;
        List<String> writes = new ArrayList<>(List.of(WRITES));
        writes.add("flush");
        String wrote = Tools.run(60, qemuIo("raw", uri, writes.toArray(String[]::new))).orFail().stdout();
        assertFalse(wrote.contains("error") || wrote.contains("failed"), wrote);
        String read = Tools.run(60, qemuIo("raw", uri, "read -P 0x22 100 7", "read -P 0xa1 107 1048469",
                "read -P 0x5c 1M 2M", "read -P 0 3M 5M", "read -P 0 8M 64k", "read -P 0xb2 8256k 960k",
                "read -P 0x11 12M 4k", "read -P 0 12292k 3068k", "read -P 0x33 15M 1M")).orFail().stdout();
        assertFalse(read.contains("Pattern verification failed"), read);
        String nbdMap = Tools.run(30, "nbdinfo", "--map", "--json", uri).orFail().stdout();

        server.close();
        server = null;
        image.close();
        image = null;
        String check = Tools.run(60, "qemu-img", "check", "-f", "qcow2", overlay.toString()).orFail().stdout();
        assertTrue(check.contains("No errors were found"), check);
        Tools.run(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", overlay.toString(), reference.toString()).orFail();
        String qemuMap = Tools.run(30, "qemu-img", "map", "--output=json", "-f", "qcow2", overlay.toString()).orFail().stdout();
        List<String> ours = runs(nbdMap, "\"offset\":", "\"length\":", entry -> (number(entry, "\"type\":") & 2) != 0);
        List<String> theirs = runs(qemuMap, "\"start\":", "\"length\":", entry -> entry.contains("\"zero\": true"));
        assertEquals(theirs, ours, "nbdinfo --map: " + nbdMap + "\nqemu-img map: " + qemuMap);
        assertTrue(ours.size() >= 5, "the overlay mixes data and zero runs: " + ours);
    }

    private static List<String> qemuIo(String format, String target, String... commands) {
        List<String> command = new ArrayList<>(List.of("qemu-io", "-f", format));
        for (String c : commands) {
            command.add("-c");
            command.add(c);
        }
        command.add(target);
        return command;
    }

    /** Runs of "reads as zero" vs "data" in a JSON map, adjacent runs of the same kind merged: "offset+length:Z|D". */
    private static List<String> runs(String json, String offsetKey, String lengthKey, java.util.function.Predicate<String> zero) {
        List<long[]> merged = new ArrayList<>();
        for (String entry : json.split("\\{")) {
            if (!entry.contains(offsetKey)) {
                continue;
            }
            long kind = zero.test(entry) ? 1 : 0;
            long offset = number(entry, offsetKey);
            long length = number(entry, lengthKey);
            if (!merged.isEmpty() && merged.getLast()[2] == kind) {
                merged.getLast()[1] += length;
            } else {
                merged.add(new long[] {offset, length, kind});
            }
        }
        List<String> out = new ArrayList<>();
        for (long[] e : merged) {
            out.add(e[0] + "+" + e[1] + ":" + (e[2] == 1 ? "Z" : "D"));
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
}
