package ferry.nbd;

import static org.junit.jupiter.api.Assertions.*;

import ferry.image.Extent;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * NbdExportImage against the real qemu-nbd (7.2 here), the server QEMU's own NBD export is built on:
 * a qcow2 overlay on a raw base, exported with {@code -A} (qemu:allocation-depth) and {@code -B}
 * (qemu:dirty-bitmap). Oracles: {@code qemu-img map --output=json} of the same file for extents,
 * {@code nbdinfo --map=qemu:dirty-bitmap:b0} for dirty runs, {@code qemu-io -P} and
 * {@code qemu-img compare} for data.
 */
@Tag("interop")
class NbdExportImageIT {
    static final long MiB = 1 << 20;
    @TempDir Path tmp;
    Process qemuNbd;

    @AfterEach
    void stop() throws InterruptedException {
        if (qemuNbd != null) {
            qemuNbd.destroy();
            if (!qemuNbd.waitFor(10, TimeUnit.SECONDS)) {
                qemuNbd.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void extentsWithAllocationDepthMatchQemuImgMapOfTheOverlay() throws Exception {
        Path overlay = overlayOnRawBase();
        String qemuMap = Tools.run(30, "qemu-img", "map", "--output=json", "-f", "qcow2", overlay.toString()).orFail().stdout();
        Path socket = serve(overlay, "-A");
        List<String> ours;
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "qcow2", true)) {
            ours = runs(map(nbd));
        }
        List<String> theirs = runs(qemuMapExtents(qemuMap, true));
        assertEquals(theirs, ours, "qemu-img map: " + qemuMap);
        assertEquals(List.of("0+1048576:BACKING", "1048576+65536:DATA", "1114112+7274496:BACKING", "8388608+131072:ZERO",
                "8519680+8257536:BACKING"), ours);
    }

    @Test
    void extentsWithoutAllocationDepthFollowBaseAllocation() throws Exception {
        Path overlay = overlayOnRawBase();
        String qemuMap = Tools.run(30, "qemu-img", "map", "--output=json", "-f", "qcow2", overlay.toString()).orFail().stdout();
        Path socket = serve(overlay);
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "qcow2", false)) {
            assertEquals(runs(qemuMapExtents(qemuMap, false)), runs(map(nbd)), "qemu-img map: " + qemuMap);
        }
    }

    @Test
    void unallocatedClustersOfAQcow2WithoutBackingAreHoles() throws Exception {
        Tools.require("qemu-nbd");
        Path disk = tmp.resolve("plain.qcow2");
        Tools.run(30, "qemu-img", "create", "-q", "-f", "qcow2", disk.toString(), "8M").orFail();
        Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x42 2M 64k", "-c", "write -z 4M 64k", disk.toString()).orFail();
        String qemuMap = Tools.run(30, "qemu-img", "map", "--output=json", "-f", "qcow2", disk.toString()).orFail().stdout();
        Path socket = serve(disk, "-A");
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "qcow2", true)) {
            List<String> ours = runs(map(nbd));
            assertEquals(runs(qemuMapExtents(qemuMap, true)), ours, "qemu-img map: " + qemuMap);
            assertEquals(List.of("0+2097152:HOLE", "2097152+65536:DATA", "2162688+2031616:HOLE", "4194304+65536:ZERO",
                    "4259840+4128768:HOLE"), ours);
        }
    }

    @Test
    void dirtyExtentsAreTheWrittenGranules() throws Exception {
        Path overlay = overlayOnRawBase();
        // created enabled and persistent, so qemu-io's writes on the closed image mark it
        Tools.run(30, "qemu-img", "bitmap", "--add", "--granularity", "4096", "-f", "qcow2", overlay.toString(), "b0").orFail();
        Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x77 2M 4k", "-c", "write -P 0x78 3M 10k",
                "-c", "write -P 0x79 5000 100", "-c", "write -P 0x7a 16380k 4k", overlay.toString()).orFail();
        Path socket = serve(overlay, "-A", "-B", "b0");
        String nbdinfo = Tools.run(30, "nbdinfo", "--map=qemu:dirty-bitmap:b0", uri(socket)).orFail().stdout();
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "qcow2", true, List.of("b0"))) {
            List<NbdExportImage.Range> dirty = nbd.dirtyExtents("b0");
            assertEquals(List.of(new NbdExportImage.Range(4096, 4096), new NbdExportImage.Range(2 * MiB, 4096),
                    new NbdExportImage.Range(3 * MiB, 12288), new NbdExportImage.Range(16 * MiB - 4096, 4096)), dirty);
            assertEquals(nbdinfoDirty(nbdinfo), dirty, "nbdinfo: " + nbdinfo);
            // the bitmap's context rides along in every BLOCK_STATUS; extents still come out right
            assertEquals(Extent.Type.DATA, nbd.extents(3 * MiB, 4096).getFirst().type());
            assertEquals(Extent.Type.DATA, nbd.extents(0, 4096).getFirst().type(), "the 64 KiB cluster copied up for 5000+100");
            assertEquals(Extent.Type.BACKING, nbd.extents(512 << 10, 4096).getFirst().type());
        }
    }

    @Test
    void readsAndWritesThroughTheExportMatchQemu() throws Exception {
        Path overlay = overlayOnRawBase();
        Path reference = tmp.resolve("reference.raw");
        Tools.run(60, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay.toString(), reference.toString()).orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0x33 6M 1M", "-c", "write -z 4M 512k",
                "-c", "write -z 12M 64k", reference.toString()).orFail();
        Path socket = serve(overlay);
        try (NbdExportImage nbd = NbdExportImage.open(socket, "disk", "qcow2", false)) {
            assertFalse(nbd.readOnly());
            ByteBuffer all = ByteBuffer.allocateDirect((int) nbd.size());
            nbd.read(0, all);
            assertEquals(filled(2 * MiB, 0xa1), all.slice((int) (4 * MiB), (int) (2 * MiB)), "base data through the overlay");
            assertEquals(filled(64 << 10, 0x5c), all.slice((int) MiB, 64 << 10), "overlay data");
            nbd.write(6 * MiB, filled(MiB, 0x33));
            nbd.writeZeroes(4 * MiB, 512 << 10, false);
            nbd.writeZeroes(12 * MiB, 64 << 10, true);
            nbd.flush();
            ByteBuffer back = ByteBuffer.allocateDirect((int) MiB);
            nbd.read(6 * MiB, back);
            assertEquals(filled(MiB, 0x33), back.flip());
        }
        stop();
        qemuNbd = null;
        String read = Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "read -P 0x33 6M 1M", "-c", "read -P 0 4M 512k",
                "-c", "read -P 0xa1 4608k 1536k", overlay.toString()).orFail().stdout();
        assertFalse(read.contains("Pattern verification failed"), read);
        Tools.run(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", overlay.toString(), reference.toString()).orFail();
        String check = Tools.run(60, "qemu-img", "check", "-f", "qcow2", overlay.toString()).orFail().stdout();
        assertTrue(check.contains("No errors were found"), check);
    }

    /**
     * A 16 MiB raw base with data at 4 MiB (2 MiB of 0xa1), and a qcow2 overlay holding 64 KiB of
     * 0x5c at 1 MiB and 128 KiB of zeroes at 8 MiB ({@code write -z}).
     */
    private Path overlayOnRawBase() {
        Tools.require("qemu-img");
        Tools.require("qemu-io");
        Tools.require("qemu-nbd");
        Tools.require("nbdinfo");
        Path base = tmp.resolve("base.raw");
        Path overlay = tmp.resolve("overlay.qcow2");
        Tools.run(30, "qemu-img", "create", "-q", "-f", "raw", base.toString(), "16M").orFail();
        Tools.run(30, "qemu-io", "-f", "raw", "-c", "write -P 0xa1 4M 2M", base.toString()).orFail();
        Tools.run(30, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "raw", overlay.toString()).orFail();
        Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 1M 64k", "-c", "write -z 8M 128k", overlay.toString()).orFail();
        return overlay;
    }

    /** Starts qemu-nbd on a unix socket in {@code tmp} (export "disk", up to 4 clients) and waits for the socket. */
    private Path serve(Path image, String... options) throws IOException, InterruptedException {
        Path socket = tmp.resolve("qemu-nbd.sock");
        Path log = tmp.resolve("qemu-nbd.log");
        List<String> command = new ArrayList<>(List.of(Tools.require("qemu-nbd").toString(), "-t", "-e", "4",
                "-k", socket.toString(), "-x", "disk", "-f", "qcow2"));
        command.addAll(List.of(options));
        command.add(image.toString());
        qemuNbd = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        long deadlineNs = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(socket)) {
            if (!qemuNbd.isAlive() || System.nanoTime() > deadlineNs) {
                fail("qemu-nbd did not open " + socket + ": " + Files.readString(log));
            }
            Thread.sleep(20);
        }
        return socket;
    }

    private static String uri(Path socket) {
        return "nbd+unix:///disk?socket=" + socket;
    }

    /** The whole export's extents, asking again from where each answer stopped. */
    private static List<Extent> map(NbdExportImage nbd) throws IOException {
        List<Extent> all = new ArrayList<>();
        for (long pos = 0; pos < nbd.size(); ) {
            List<Extent> part = nbd.extents(pos, nbd.size() - pos);
            assertEquals(pos, part.getFirst().offset(), "extents start where asked");
            all.addAll(part);
            pos = part.getLast().end();
        }
        return all;
    }

    private static final Pattern QEMU_MAP = Pattern.compile("\"start\": (\\d+), \"length\": (\\d+), \"depth\": (\\d+), "
            + "\"present\": (true|false), \"zero\": (true|false), \"data\": (true|false)");

    /**
     * qemu-img map's entries as Ferry's extents. With allocation depth: not present -> HOLE, depth 0
     * (the overlay itself) -> ZERO or DATA, deeper -> BACKING. Without: base:allocation as QEMU's NBD
     * server derives it from the same block status (HOLE = no data, ZERO = zero).
     */
    private static List<Extent> qemuMapExtents(String json, boolean depth) {
        List<Extent> out = new ArrayList<>();
        Matcher m = QEMU_MAP.matcher(json);
        while (m.find()) {
            boolean present = Boolean.parseBoolean(m.group(4));
            boolean zero = Boolean.parseBoolean(m.group(5));
            boolean data = Boolean.parseBoolean(m.group(6));
            Extent.Type type;
            if (depth) {
                type = !present ? Extent.Type.HOLE : Integer.parseInt(m.group(3)) > 0 ? Extent.Type.BACKING
                        : zero ? Extent.Type.ZERO : Extent.Type.DATA;
            } else {
                type = !zero ? Extent.Type.DATA : data ? Extent.Type.ZERO : Extent.Type.HOLE;
            }
            out.add(new Extent(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), type));
        }
        assertFalse(out.isEmpty(), "no entries in qemu-img map: " + json);
        return out;
    }

    /** Adjacent extents of one type merged: "offset+length:TYPE". */
    private static List<String> runs(List<Extent> extents) {
        List<long[]> merged = new ArrayList<>();
        List<Extent.Type> types = new ArrayList<>();
        for (Extent e : extents) {
            if (!types.isEmpty() && types.getLast() == e.type() && merged.getLast()[0] + merged.getLast()[1] == e.offset()) {
                merged.getLast()[1] += e.length();
            } else {
                merged.add(new long[] {e.offset(), e.length()});
                types.add(e.type());
            }
        }
        List<String> out = new ArrayList<>();
        for (int i = 0; i < merged.size(); i++) {
            out.add(merged.get(i)[0] + "+" + merged.get(i)[1] + ":" + types.get(i));
        }
        return out;
    }

    /** nbdinfo's "offset length value description" lines with value 1 (dirty), adjacent runs merged. */
    private static List<NbdExportImage.Range> nbdinfoDirty(String text) {
        List<NbdExportImage.Range> out = new ArrayList<>();
        for (String line : text.strip().split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length < 3 || !f[2].equals("1")) {
                continue;
            }
            long offset = Long.parseLong(f[0]);
            long length = Long.parseLong(f[1]);
            if (!out.isEmpty() && out.getLast().end() == offset) {
                NbdExportImage.Range last = out.removeLast();
                out.add(new NbdExportImage.Range(last.offset(), last.length() + length));
            } else {
                out.add(new NbdExportImage.Range(offset, length));
            }
        }
        return out;
    }

    private static ByteBuffer filled(long length, int value) {
        ByteBuffer b = ByteBuffer.allocateDirect((int) length);
        while (b.hasRemaining()) {
            b.put((byte) value);
        }
        return b.flip();
    }
}
