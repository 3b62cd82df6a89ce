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
    void shouldPlaceKernelDrivesSerialAndIncomingInOrder() {
        QemuConfig config = base.withSmp(2)
                .withKernel(Path.of("/g/vmlinuz"), Optional.of(Path.of("/g/initramfs.cpio.gz")), Optional.of("console=ttyS0 quiet"))
                .withDisks(List.of(drive("file", "/tmp/a,b.raw", "format", "raw", "if", "virtio", "id", "scratch")))
                .withSerial(QemuConfig.Serial.parse("unix:/run/ferry/vm1/serial.sock,server,nowait"))
                .withPaused(true).withIncomingDefer(true).withExtraArgs(List.of("-no-reboot"));
        List<String> args = QemuCommandLine.of(config);
        String line = String.join(" ", args);
        assertTrue(line.contains("-kernel /g/vmlinuz -initrd /g/initramfs.cpio.gz -append console=ttyS0 quiet"), line);
        assertTrue(line.contains("-drive file=/tmp/a,,b.raw,format=raw,if=virtio,id=scratch,node-name=scratch-fmt -serial"), line);
        assertTrue(line.contains("-serial unix:/run/ferry/vm1/serial.sock,server=on,wait=off"), line);
        assertTrue(line.endsWith("-S -incoming defer -no-reboot"), line);
        assertEquals("-smp", args.get(9));
        assertEquals("2", args.get(10));
    }

    private static QemuConfig.Disk.Drive drive(String... keyValues) {
        List<QemuConfig.DriveProperty> properties = new java.util.ArrayList<>();
        for (int i = 0; i < keyValues.length; i += 2) {
            properties.add(new QemuConfig.DriveProperty(keyValues[i], keyValues[i + 1]));
        }
        return new QemuConfig.Disk.Drive(properties);
    }

    /** The -drive arguments of a config with these disks: everything between -display none and -serial. */
    private List<String> diskArgs(QemuConfig.Disk... disks) {
        List<String> args = QemuCommandLine.of(base.withDisks(List.of(disks)));
        return args.subList(args.indexOf("-display") + 2, args.indexOf("-serial"));
    }

    @Test
    void shouldPassEachDriveAsWrittenAndNameItsFormatNode() {
        assertEquals(List.of("-drive", "file=/img/root.qcow2,format=qcow2,if=virtio,id=disk0,node-name=disk0-fmt"),
                diskArgs(drive("file", "/img/root.qcow2", "format", "qcow2", "if", "virtio", "id", "disk0")));
        assertEquals(List.of("-drive", "file=/img/a,,b.raw,format=raw,cache=none,aio=native,discard=unmap,detect-zeroes=unmap,"
                        + "throttling.iops-total=500,werror=stop,rerror=report,if=virtio,id=data,node-name=data-fmt"),
                diskArgs(drive("file", "/img/a,b.raw", "format", "raw", "cache", "none", "aio", "native", "discard", "unmap",
                        "detect-zeroes", "unmap", "throttling.iops-total", "500", "werror", "stop", "rerror", "report",
                        "if", "virtio", "id", "data")),
                "the user's order and properties, commas doubled again, node-name last");
    }

    @Test
    void shouldKeepTheUsersNodeNameAndAddNoDevice() {
        QemuConfig.Disk.Drive named = drive("node-name", "root", "file", "/r.qcow2", "format", "qcow2", "if", "none", "id", "d0",
                "readonly", "on");
        assertEquals(List.of("-drive", "node-name=root,file=/r.qcow2,format=qcow2,if=none,id=d0,readonly=on",
                        "-drive", "file=/s.raw,format=raw,if=virtio,id=d1,node-name=d1-fmt"),
                diskArgs(named, drive("file", "/s.raw", "format", "raw", "if", "virtio", "id", "d1")));
        assertEquals("root", named.nodeName());
        assertEquals("d0", named.id());
        assertEquals("d1-fmt", drive("file", "/s.raw", "id", "d1").nodeName());
    }

    @Test
    void shouldRefuseDrivesWhoseNamesQemuWouldRefuse() {
        assertEquals("invalid drive: no id: file=/a,,b.raw,format=raw",
                assertThrows(IllegalArgumentException.class, () -> drive("file", "/a,b.raw", "format", "raw")).getMessage());
        assertEquals("invalid drive: id given twice: id=a,id=b",
                assertThrows(IllegalArgumentException.class, () -> drive("id", "a", "id", "b")).getMessage());
        assertThrows(IllegalArgumentException.class, () -> drive("id", "abcdefghijklmnopqrstuvwxyz12"),
                "abcdefghijklmnopqrstuvwxyz12-fmt has 32 characters: QEMU says 'Node name too long'");
        drive("id", "abcdefghijklmnopqrstuvwxyz1");                                   // 31 characters: accepted
        assertEquals("invalid VM config: name=vm1 disk id=b reuses the block node or drive name a",
                assertThrows(IllegalArgumentException.class, () -> base.withDisks(List.of(
                        drive("file", "/a", "id", "a", "node-name", "a-fmt"), drive("file", "/b", "id", "b", "node-name", "a")))).getMessage());
        assertEquals("invalid VM config: name=vm1 disk id=a reuses the block node or drive name a",
                assertThrows(IllegalArgumentException.class, () -> base.withDisks(List.of(
                        drive("file", "/a", "id", "a", "node-name", "a")))).getMessage());
    }

    @Test
    void shouldRejectBadConfigsWithAClearMessage() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> base.withDisks(List.of(drive("file", "/s", "id", "0disk", "node-name", "n0"))));
        assertEquals("invalid VM config: name=vm1 disk id=0disk (a letter, then letters, digits, '-', '.', '_')", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> base.withDisks(List.of(
                drive("file", "/s", "id", "d"), drive("file", "/t", "id", "d"))));
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
