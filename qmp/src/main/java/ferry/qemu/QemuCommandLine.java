package ferry.qemu;

import java.util.ArrayList;
import java.util.List;

/**
 * Builds the argument vector of {@code qemu-system-x86_64} from a {@link QemuConfig}. Checked against
 * QEMU 7.2 (docs/qmp.md, "Command line").
 *
 * <p>{@code -nodefaults} drops QEMU's default NIC, VGA, monitor, serial and parallel ports: the guest
 * gets exactly the devices listed here, so that source and destination of a migration agree. Disks
 * are the user's {@code -drive}s as written (QEMU opens the images itself), each with a stable
 * format node name ({@link QemuConfig.Disk.Drive}).
 */
public final class QemuCommandLine {
    public static final String DEFAULT_BINARY = "qemu-system-x86_64";

    private QemuCommandLine() {}

    public static List<String> of(QemuConfig config) {
        return of(DEFAULT_BINARY, config);
    }

    public static List<String> of(String binary, QemuConfig config) {
        List<String> args = new ArrayList<>();
        args.add(binary);
        args.add("-name");
        args.add(escape(config.name()));
        args.add("-machine");
        args.add(config.machine());                          // as the user wrote it: commas already escaped
        args.add("-accel");
        args.add(config.accelerator().qemuName());
        args.add("-m");
        args.add(config.memoryMib() + "M");
        args.add("-smp");
        args.add(config.smp());
        args.add("-nodefaults");
        args.add("-display");
        args.add("none");
        config.kernel().ifPresent(k -> {
            args.add("-kernel");
            args.add(k.toString());
        });
        config.initrd().ifPresent(i -> {
            args.add("-initrd");
            args.add(i.toString());
        });
        config.append().ifPresent(a -> {
            args.add("-append");
            args.add(a);
        });
        for (QemuConfig.Disk disk : config.disks()) {
            switch (disk) {
                case QemuConfig.Disk.Drive drive -> {
                    args.add("-drive");                      // if= makes the guest device: no -device here
                    args.add(drive.commandLineValue());
                }
            }
        }
        args.add("-serial");
        args.add(switch (config.serial()) {
            case QemuConfig.Serial.Stdio s -> "stdio";
            case QemuConfig.Serial.File f -> "file:" + f.path();
            case QemuConfig.Serial.Unix u -> "unix:" + escape(u.path()) + ",server=on,wait=off";
            case QemuConfig.Serial.None n -> "none";
        });
        args.add("-chardev");
        args.add("socket,id=ferry-qmp,path=" + escape(config.qmpSocket()) + ",server=on,wait=off");
        args.add("-mon");
        args.add("chardev=ferry-qmp,mode=control");
        if (config.paused()) {
            args.add("-S");
        }
        if (config.incomingDefer()) {
            args.add("-incoming");
            args.add("defer");
        }
        args.addAll(config.extraArgs());
        return List.copyOf(args);
    }

    /** QEMU option values escape a comma by doubling it. */
    static String escape(Object value) {
        return value.toString().replace(",", ",,");
    }

    /** The command line as one shell-readable line, for logs. */
    public static String render(List<String> args) {
        StringBuilder out = new StringBuilder();
        for (String arg : args) {
            if (!out.isEmpty()) {
                out.append(' ');
            }
            out.append(arg.matches("[A-Za-z0-9_./=:,+@%-]+") ? arg : "'" + arg.replace("'", "'\\''") + "'");
        }
        return out.toString();
    }
}
