package ferry.vm;

import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorEndpoint;
import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * One VM as {@code ferry run} was told to start it, in QEMU's own option shapes
 * ({@link VmConfigParser}). The same config on both hosts; only {@code incoming} differs.
 *
 * @param incoming {@code -incoming tcp:HOST:PORT}: this host is a migration destination
 * @param incomingOverwrite {@code --incoming-overwrite}: an incoming migration may overwrite images that hold data
 */
public record VmConfig(String name, int memoryMib, int smp, Optional<Path> kernel, Optional<Path> initrd,
                       Optional<String> append, List<Drive> drives, QemuConfig.Serial serial,
                       List<MonitorEndpoint> monitors, Optional<Accelerator> accelerator, Optional<MigrationUri> incoming,
                       boolean incomingOverwrite, String qemuBinary, List<String> qemuArgs, Optional<Path> runtimeDir) {

    /** A {@code -drive file=PATH,format=raw|qcow2,if=virtio[,id=ID]}. */
    public record Drive(Path file, String format, String id) { }

    public VmConfig {
        drives = List.copyOf(drives);
        monitors = List.copyOf(monitors);
        qemuArgs = List.copyOf(qemuArgs);
    }
}
