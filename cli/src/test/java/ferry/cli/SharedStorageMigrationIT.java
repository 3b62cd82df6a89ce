package ferry.cli;

import static ferry.cli.VmHosts.awaitEnd;
import static ferry.cli.VmHosts.awaitWritesBeyond;
import static ferry.cli.VmHosts.heartbeat;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.BlockImage;
import ferry.image.Images;
import ferry.image.raw.RawImage;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code migrate -d} without {@code -b} (issue 9, 7f): source and destination {@code ferry run} name the
 * same image file, as two hosts on shared storage would, and only the RAM travels. The guest writes
 * before, during and after the migration; at the end the file must hold every record it wrote
 * ({@link GuestWriter}: exactly the newest record of each block), and a qcow2 file must pass
 * {@code qemu-img check}. Each test boots one guest; about 40 s each on a 2-core TCG machine.
 */
@Tag("vm")
class SharedStorageMigrationIT {
    /** 64 records/s at most: enough to write during the migration, few enough for a slow machine. */
    private static final String WORKLOAD = "write,rate=256k,seconds=600";
    private static final String USER_BITMAP = "user-backup";
    /**
     * The qcow2 header up to its extensions (version 3). The guest's writes leave it alone: a 256 MiB
     * image never moves its L1 or refcount table.
     */
    private static final int QCOW2_HEADER_BYTES = 104;

    @TempDir Path tmp;

    @BeforeAll
    static void buildGuest() {
        VmHosts.buildGuest();
    }

    @Test
    @Timeout(value = 300, unit = TimeUnit.SECONDS)
    void rawImageOnSharedStorageKeepsEveryWrite() throws Exception {
        Path disk = Files.createDirectories(tmp.resolve("shared")).resolve("disk.raw");
        RawImage.create(disk, VmHosts.DISK_SIZE).close();
        migrateOnSharedStorage(disk, "raw");
    }

    @Test
    @Timeout(value = 300, unit = TimeUnit.SECONDS)
    void qcow2ImageOnSharedStorageKeepsEveryWriteAndStaysConsistent() throws Exception {
        Tools.require("qemu-img");
        Path disk = Files.createDirectories(tmp.resolve("shared")).resolve("disk.qcow2");
        Tools.run(60, "qemu-img", "create", "-q", "-f", "qcow2", disk.toString(), Long.toString(VmHosts.DISK_SIZE)).orFail();
        // A persistent bitmap of the user's: QEMU keeps it in the image and flags it in the header's
        // autoclear features, which a writer that does not know it must clear. Only QEMU may write here.
        Tools.run(60, "qemu-img", "bitmap", "--add", disk.toString(), USER_BITMAP).orFail();
        migrateOnSharedStorage(disk, "qcow2");
        Tools.run(60, "qemu-img", "check", disk.toString()).orFail();
        String info = Tools.run(60, "qemu-img", "info", "--output=json", disk.toString()).orFail().stdout();
        assertTrue(info.matches("(?s).*\"name\": \"" + USER_BITMAP + "\".*"), "the user's bitmap is gone: " + info);
        assertFalse(info.contains("in-use") || info.contains("corrupt\": true"), "the user's bitmap: " + info);
    }

    private void migrateOnSharedStorage(Path disk, String format) throws Exception {
        List<String> args = VmHosts.vmArgs("shared-" + format, VmHosts.drive(disk, format), WORKLOAD);
        long bootId;
        long lastReported;
        try (LocalHost source = LocalHost.start("source", VmHosts.ferry(), tmp.resolve("src"), args)) {
            source.awaitSerial("heartbeat seq=", VmHosts.BOOT_TIMEOUT_MS);
            bootId = GuestWriter.bootId(source);
            int port = VmHosts.freePort();
            try (LocalHost destination = VmHosts.destination("destination", tmp.resolve("dst"), args, port)) {
                // First a migration cancelled in its RAM phase, when the destination has prepared its VM on
                // the shared image: the destination must not have written to it, nor remove it after.
                byte[] header = header(disk);
                source.monitor("migrate_set_speed 1m");
                assertEquals("", source.monitor("migrate -d tcp:127.0.0.1:" + port));
                awaitRam(source);
                if (format.equals("qcow2")) {
                    assertArrayEquals(header, header(disk), "the destination wrote to the qcow2 header of an image the"
                            + " source QEMU owns (e.g. cleared its autoclear features)");
                }
                assertEquals("", source.monitor("migrate_cancel"));
                InfoMigrateText cancelled = awaitEnd(source, 60_000);
                assertEquals("cancelled", cancelled.status(), cancelled.fields().toString());
                VmHosts.assertSourceRuns(source, "a cancelled migration");
                assertTrue(Files.exists(disk), "a cancelled migration removed the shared image");

                source.monitor("migrate_set_speed 1G");
                assertEquals("", source.monitor("migrate -d tcp:127.0.0.1:" + port));
                InfoMigrateText done = awaitEnd(source, 180_000);
                assertEquals("completed", done.status(), done.fields().toString());
                assertEquals("VM status: paused (postmigrate)", source.monitor("info status"));
                assertEquals("VM status: running", destination.monitor("info status"));
                long seqAtSwitchover = heartbeat(source);
                awaitWritesBeyond(destination, seqAtSwitchover, 60_000, "the guest does not write on the destination");
                assertEquals("", destination.monitor("quit"));
                assertEquals(0, destination.awaitExit(60_000), "the destination after quit");
                lastReported = heartbeat(destination);
            }
            assertEquals("", source.monitor("quit"));
            assertEquals(0, source.awaitExit(60_000), "the source after quit");
        }
        assertTrue(Files.exists(disk), "the shared image is gone");
        try (BlockImage image = Images.open(disk, format, true)) {
            GuestWriter.Replay replay = GuestWriter.assertHoldsEveryWrite(image, bootId, lastReported);
            System.out.println(format + " on shared storage: " + replay);
        }
    }

    /** Waits until QEMU's RAM migration has sent something: the destination has its VM prepared. */
    private static void awaitRam(LocalHost source) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        InfoMigrateText info = InfoMigrateText.parse(source.monitor("info migrate"));
        while (info.number("transferred ram") <= 0 && List.of("setup", "active").contains(info.status())
                && System.currentTimeMillis() < deadline) {
            Thread.sleep(200);
            info = InfoMigrateText.parse(source.monitor("info migrate"));
        }
        assertEquals("active", info.status(), info.fields().toString());
        assertTrue(info.number("transferred ram") > 0, "the RAM migration did not start: " + info.fields());
    }

    private static byte[] header(Path disk) throws IOException {
        try (var in = Files.newInputStream(disk)) {
            return in.readNBytes(QCOW2_HEADER_BYTES);
        }
    }
}
