package ferry.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class QemuCommandLineTest {
    private final QemuConfig base = QemuConfig.of("vm1", 256, Accelerator.TCG, Path.of("/run/ferry/vm1/qmp.sock"));

    @Test
    void shouldBuildAMinimalCommandLine() {
        assertEquals(List.of("qemu-system-x86_64", "-name", "vm1", "-machine", "pc", "-accel", "tcg", "-m", "256M",
                "-smp", "1", "-nodefaults", "-display", "none", "-serial", "none",
                "-chardev", "socket,id=ferry-qmp,path=/run/ferry/vm1/qmp.sock,server=on,wait=off",
                "-mon", "chardev=ferry-qmp,mode=control"), QemuCommandLine.of(base));
    }

    @Test
    void shouldServeEachDiskOverNbdOnAVirtioBlkDevice() {
        QemuConfig config = base.withSmp(2)
                .withKernel(Path.of("/g/vmlinuz"), Optional.of(Path.of("/g/initramfs.cpio.gz")), Optional.of("console=ttyS0 quiet"))
                .withDisks(List.of(new QemuConfig.Disk.Nbd("disk0", Path.of("/run/ferry/vm1/nbd.sock"), "disk0"),
                        new QemuConfig.Disk.File("scratch", Path.of("/tmp/a,b.raw"), "raw")))
                .withSerial(QemuConfig.Serial.parse("unix:/run/ferry/vm1/serial.sock,server,nowait"))
                .withPaused(true).withIncomingDefer(true).withExtraArgs(List.of("-no-reboot"));
        List<String> args = QemuCommandLine.of(config);
        String line = String.join(" ", args);
        assertTrue(line.contains("-kernel /g/vmlinuz -initrd /g/initramfs.cpio.gz -append console=ttyS0 quiet"), line);
        assertTrue(line.contains("-blockdev driver=nbd,node-name=disk0,server.type=unix,server.path=/run/ferry/vm1/nbd.sock,export=disk0,discard=unmap"
                + " -device virtio-blk-pci,drive=disk0,id=disk0-dev"), line);
        assertTrue(line.contains("-blockdev driver=raw,node-name=scratch,discard=unmap,file.driver=file,file.filename=/tmp/a,,b.raw"
                + " -device virtio-blk-pci,drive=scratch,id=scratch-dev"), line);
        assertTrue(line.contains("-serial unix:/run/ferry/vm1/serial.sock,server=on,wait=off"), line);
        assertTrue(line.endsWith("-S -incoming defer -no-reboot"), line);
        assertEquals("-smp", args.get(9));
        assertEquals("2", args.get(10));
    }

    @Test
    void shouldRejectBadConfigsWithAClearMessage() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> base.withDisks(List.of(new QemuConfig.Disk.Nbd("0disk", Path.of("/s"), "x"))));
        assertEquals("invalid VM config: name=vm1 disk id=0disk (a letter, then letters, digits, '-', '.', '_')", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> base.withDisks(List.of(
                new QemuConfig.Disk.Nbd("d", Path.of("/s"), "x"), new QemuConfig.Disk.Nbd("d", Path.of("/t"), "y"))));
        assertThrows(IllegalArgumentException.class, () -> base.withSmp(0));
        assertEquals("invalid serial: serial=tcp:1.2.3.4:5 (expected stdio, file:PATH, unix:PATH,server,nowait or none)",
                assertThrows(IllegalArgumentException.class, () -> QemuConfig.Serial.parse("tcp:1.2.3.4:5")).getMessage());
        assertEquals(new QemuConfig.Serial.File(Path.of("/tmp/s.log")), QemuConfig.Serial.parse("file:/tmp/s.log"));
    }

    @Test
    void shouldRenderAShellReadableLine() {
        assertEquals("qemu -append 'console=ttyS0 quiet' -name 'it'\\''s'",
                QemuCommandLine.render(List.of("qemu", "-append", "console=ttyS0 quiet", "-name", "it's")));
    }
}
