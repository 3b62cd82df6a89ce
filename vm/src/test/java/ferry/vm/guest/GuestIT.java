package ferry.vm.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import ferry.qemu.QemuProcess;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpEvent;
import ferry.qmp.RunState;
import ferry.testkit.Tools;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Builds the demo guest (guest/build.sh), boots it under TCG with a 256 MiB raw disk, lets it write
 * records for 8 s at 2 MB/s, checks the disk on the host with {@link RecordVerifier}, then boots it in
 * verify mode and compares the guest's verdict with the host's. About 35 s on a 2-core machine.
 */
@Tag("vm")
class GuestIT {
    private static final long DISK_BYTES = 256L << 20;
    private static final long BOOT_TIMEOUT_MS = 90_000;
    private static final Pattern WRITE_DONE = Pattern.compile("ferry-guest: phase=write-done seq=(\\d+) bytes=(\\d+)");
    private static final Pattern VERIFY = Pattern.compile("ferry-guest: verify records=(\\d+) highest-seq=(\\d+) bad=(\\d+)");

    @TempDir Path tmp;

    @Test
    void shouldWriteRecordsThatBothHostAndGuestVerify() throws Exception {
        Tools.require("qemu-system-x86_64");
        Tools.require("gcc");
        Path out = tmp.resolve("guest");
        Path repo = Path.of(System.getProperty("user.dir")).getParent();
        Tools.run(300, "bash", repo.resolve("guest/build.sh").toString(), out.toString()).orFail();
        Path disk = tmp.resolve("disk.raw");
        try (FileChannel ch = FileChannel.open(disk, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ch.truncate(0);
            ch.write(java.nio.ByteBuffer.allocate(1), DISK_BYTES - 1);
        }

        String writeLog = boot(out, disk, "write,rate=2M,seconds=8", "write");
        Matcher done = WRITE_DONE.matcher(writeLog);
        assertTrue(done.find(), writeLog);
        long finalSeq = Long.parseLong(done.group(1));
        assertTrue(writeLog.contains("ferry-guest: heartbeat seq="), writeLog);

        VerifyReport host = RecordVerifier.verify(disk);
        assertTrue(host.records() > 0, host.toString());
        assertEquals(0, host.badBlocks(), host.toString());
        assertEquals(finalSeq, host.highestSeq(), "every record the guest completed is on the disk: " + host);

        String verifyLog = boot(out, disk, "verify", "verify");
        Matcher verdict = VERIFY.matcher(verifyLog);
        assertTrue(verdict.find(), verifyLog);
        assertEquals(host.records(), Long.parseLong(verdict.group(1)), verifyLog);
        assertEquals(host.highestSeq(), Long.parseLong(verdict.group(2)), verifyLog);
        assertEquals(0, Long.parseLong(verdict.group(3)), verifyLog);
        assertTrue(verifyLog.contains("ferry-guest: verify ok"), verifyLog);
    }

    /** Boots the guest with {@code workload} until it powers itself off; returns its serial output. */
    private String boot(Path guest, Path disk, String workload, String label) throws Exception {
        Path serial = tmp.resolve(label + "-serial.log");
        QemuConfig config = QemuConfig.of("guest-" + label, 256, Accelerator.choose(Optional.empty()).accelerator(),
                        tmp.resolve(label + "-qmp.sock"))
                .withKernel(guest.resolve("vmlinuz"), Optional.of(guest.resolve("initramfs.cpio.gz")),
                        Optional.of("console=ttyS0 quiet panic=-1 ferry.workload=" + workload))
                .withDisks(List.of(new QemuConfig.Disk.Drive(List.of(new QemuConfig.DriveProperty("file", disk.toString()),
                        new QemuConfig.DriveProperty("format", "raw"), new QemuConfig.DriveProperty("if", "virtio"),
                        new QemuConfig.DriveProperty("id", "disk0")))))
                .withSerial(new QemuConfig.Serial.File(serial))
                .withExtraArgs(List.of("-no-reboot"));
        BlockingQueue<QmpEvent> events = new LinkedBlockingQueue<>();
        try (QemuProcess qemu = QemuProcess.of(config, tmp.resolve(label + "-qemu.log"))) {
            qemu.addListener(events::add);
            qemu.start(10_000);
            assertEquals(RunState.RUNNING, qemu.qmp().execute(new QmpCommand.QueryStatus()).status());
            Integer code = qemu.onExit().get(BOOT_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            assertEquals(0, code, () -> read(serial) + read(tmp.resolve(label + "-qemu.log")));
        }
        assertTrue(events.contains(new QmpEvent.Shutdown(true, "guest-shutdown")), events.toString());
        return read(serial);
    }

    private static String read(Path file) {
        try {
            return Files.exists(file) ? Files.readString(file) : "";
        } catch (IOException e) {
            return "(unreadable " + file + ": " + e.getMessage() + ")";
        }
    }
}
