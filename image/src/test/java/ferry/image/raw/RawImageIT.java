package ferry.image.raw;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.Extent;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** RawImage against QEMU's own view of the same file: {@code qemu-img map} and {@code qemu-io}. */
@Tag("interop")
class RawImageIT {
    private static final int KiB = 1024;
    private static final int MiB = 1024 * KiB;
    private static final Pattern MAP_ENTRY = Pattern.compile(
            "\\{\\s*\"start\":\\s*(\\d+),\\s*\"length\":\\s*(\\d+),[^}]*\"data\":\\s*(true|false)[^}]*}");

    private Path dir;

    @BeforeEach
    void makeDir() throws IOException {
        dir = ferry.testkit.DiskDirs.create("raw-image-it");
    }

    @AfterEach
    void removeDir() throws IOException {
        ferry.testkit.DiskDirs.delete(dir);
    }

    /** A run as both sides can state it: data or not (raw files have no other states). */
    private record Run(long offset, long length, boolean data) {}

    @Test
    void extentMapMatchesQemuImgOnRawFile() throws Exception {
        Tools.require("qemu-img");
        Path disk = dir.resolve("map.raw");
        try (RawImage image = RawImage.create(disk, 32 * MiB)) {
            image.write(0, ByteBuffer.wrap(RawImageTest.filled(64 * KiB, (byte) 1)));
            image.write(3 * MiB + 512, ByteBuffer.wrap(RawImageTest.filled(MiB, (byte) 2)));
            image.write(10 * MiB, ByteBuffer.wrap(RawImageTest.filled(4 * MiB, (byte) 3)));
            image.trim(11 * MiB, MiB);
            image.writeZeroes(13 * MiB, 256 * KiB, true);
            image.write(32 * MiB - 4 * KiB, ByteBuffer.wrap(RawImageTest.filled(4 * KiB, (byte) 4)));
            image.flush();

            List<Run> ferry = new ArrayList<>();
            for (long offset = 0; offset < image.size(); ) {
                List<Extent> extents = image.extents(offset, image.size() - offset);
                for (Extent e : extents) {
                    merge(ferry, new Run(e.offset(), e.length(), !e.readsAsZero()));
                }
                offset = extents.getLast().end();
            }
            List<Run> qemu = qemuMap(disk);
            assertTrue(ferry.size() >= 7, "the pattern gives several runs: " + ferry);
            assertEquals(qemu, ferry);
        }
    }

    @Test
    void qemuIoReadsWhatRawImageWroteAndBack() throws Exception {
        Tools.require("qemu-io");
        Path disk = dir.resolve("io.raw");
        try (RawImage image = RawImage.create(disk, 4 * MiB)) {
            image.write(0, ByteBuffer.wrap(RawImageTest.filled(64 * KiB, (byte) 0xab)));
            image.write(MiB + 512, ByteBuffer.allocateDirect(4 * KiB).put(RawImageTest.filled(4 * KiB, (byte) 0x5c)).flip());
            image.flush();
        }
        qemuIo(disk, "read -P 0xab 0 64k").orFail();
        qemuIo(disk, "read -P 0x5c 1049088 4k").orFail();
        qemuIo(disk, "read -P 0 64k 960k").orFail();
        // the check can fail: a wrong pattern is refused
        Tools.Result wrong = qemuIo(disk, "read -P 0xcd 0 64k");
        assertNotEquals(0, wrong.exitCode());
        assertTrue(wrong.stdout().contains("Pattern verification failed"), wrong.stdout());

        qemuIo(disk, "write -P 0x77 2M 128k").orFail();
        try (RawImage image = RawImage.open(disk, true)) {
            assertArrayEquals(RawImageTest.filled(128 * KiB, (byte) 0x77), RawImageTest.read(image, 2 * MiB, 128 * KiB));
            assertFalse(image.extents(2 * MiB, 128 * KiB).getFirst().readsAsZero());
        }
    }

    private static Tools.Result qemuIo(Path disk, String command) {
        return Tools.run(60, "qemu-io", "-f", "raw", "-c", command, disk.toString());
    }

    private static List<Run> qemuMap(Path disk) {
        String json = Tools.run(60, "qemu-img", "map", "--output=json", "-f", "raw", disk.toString()).orFail().stdout();
        List<Run> runs = new ArrayList<>();
        Matcher m = MAP_ENTRY.matcher(json);
        while (m.find()) {
            merge(runs, new Run(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), Boolean.parseBoolean(m.group(3))));
        }
        assertFalse(runs.isEmpty(), "qemu-img map printed entries: " + json);
        return runs;
    }

    private static void merge(List<Run> runs, Run run) {
        if (!runs.isEmpty()) {
            Run last = runs.getLast();
            if (last.data() == run.data() && last.offset() + last.length() == run.offset()) {
                runs.set(runs.size() - 1, new Run(last.offset(), last.length() + run.length(), run.data()));
                return;
            }
        }
        runs.add(run);
    }
}
