package ferry.vm;

import ferry.migration.MigrationParameters;
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
 * @param incoming {@code -incoming tcp:HOST:PORT} or {@code -incoming defer}: this host is a migration destination
 * @param incomingOverwrite {@code --incoming-overwrite}: an incoming migration may overwrite images that hold data
 * @param objects the {@code -object}s, in order
 * @param migrationParameters the migration parameters the VM starts with: the defaults, or QEMU's
 *     {@code -global migration.tls-creds=ID} (and {@code tls-hostname}, {@code tls-authz})
 * @param qmpServers {@code -qmp unix:PATH,server,nowait}, {@code -qmp tcp:HOST:PORT,server,nowait}, or a
 *     {@code -chardev socket} named by {@code -mon chardev=ID,mode=control}: Ferry's QMP server listens there
 * @param process how the QEMU process and Ferry's own run: machine type, vCPU topology, pid file, daemon, logs
 */
public record VmConfig(String name, int memoryMib, int smp, Optional<Path> kernel, Optional<Path> initrd,
                       Optional<String> append, List<Drive> drives, QemuConfig.Serial serial,
                       List<MonitorEndpoint> monitors, Optional<Accelerator> accelerator, Optional<Incoming> incoming,
                       boolean incomingOverwrite, String qemuBinary, List<String> qemuArgs, Optional<Path> runtimeDir,
                       List<VmObject> objects, MigrationParameters migrationParameters,
                       List<ferry.qmp.QmpEndpoint> qmpServers, Process process) {

    /**
     * @param machine {@code -machine SPEC} as written; empty: QEMU's default {@code pc}, pinned to its versioned
     *     name ({@code pc-i440fx-7.2}) so that both hosts of a migration agree ({@link ferry.qemu.MachineTypes})
     * @param smpSpec {@code -smp SPEC} as written (topology included); empty: one vCPU
     * @param pidFile {@code -pidfile PATH}: Ferry writes its own pid there (the process to signal), and removes it on exit
     * @param daemonize {@code -daemonize}: detach once the VM runs; the parent exits 0 then
     * @param logDir {@code --log-dir DIR}: where QEMU's log is kept ({@link LogDir})
     * @param metrics {@code --metrics HOST:PORT}: the migration's figures for Prometheus on {@code /metrics}
     */
    public record Process(Optional<String> machine, Optional<String> smpSpec, Optional<Path> pidFile, boolean daemonize,
                          Optional<Path> logDir, Optional<java.net.InetSocketAddress> metrics) {
        public static Process defaults() {
            return new Process(Optional.empty(), Optional.empty(), Optional.empty(), false, Optional.empty(), Optional.empty());
        }
    }

    /** {@code -incoming}: wait for a VM instead of booting one. */
    public sealed interface Incoming {
        /** {@code -incoming tcp:HOST:PORT}: listen at once ({@code 0} as host: every address). */
        record Listen(MigrationUri uri) implements Incoming {}

        /**
         * {@code -incoming defer}: listen when the monitor's {@code migrate_incoming tcp:HOST:PORT} (or
         * QMP's {@code migrate-incoming}) says where, so that {@code tls-creds} can be set first (QEMU's sequence).
         */
        record Defer() implements Incoming {}
    }

    /**
     * One {@code -drive} as the user wrote it: every property, in the user's order, values unescaped
     * ({@code file=a,,b} is the file {@code a,b}). {@link VmConfigParser} appends {@code if=virtio} and
     * {@code id=diskN} when they are absent, so {@link #properties()} is exactly what QEMU is given
     * (through {@link #qemuDisk()}, which adds the format node's name; see {@link QemuConfig.Disk.Drive}).
     * The typed accessors read what Ferry itself needs.
     *
     * @param properties {@code KEY=VALUE} pairs in order; {@code file}, {@code format} and {@code id} are present
     */
    public record Drive(List<QemuConfig.DriveProperty> properties) {
        public Drive {
            properties = List.copyOf(properties);
            for (String required : List.of("file", "format", "id")) {
                if (properties.stream().noneMatch(p -> p.key().equals(required))) {
                    throw new IllegalArgumentException("invalid drive: no " + required + "= in " + properties);
                }
            }
        }

        /** The old shape, {@code file=FILE,format=FORMAT,if=virtio,id=ID}. */
        public Drive(Path file, String format, String id) {
            this(List.of(new QemuConfig.DriveProperty("file", file.toString()), new QemuConfig.DriveProperty("format", format),
                    new QemuConfig.DriveProperty("if", "virtio"), new QemuConfig.DriveProperty("id", id)));
        }

        /** The value of {@code key}, unescaped, if the drive has it. */
        public Optional<String> property(String key) {
            return properties.stream().filter(p -> p.key().equals(key)).map(QemuConfig.DriveProperty::value).findFirst();
        }

        /** The image file ({@code file=}). */
        public Path file() {
            return Path.of(property("file").orElseThrow());
        }

        /** {@code raw} or {@code qcow2}. */
        public String format() {
            return property("format").orElseThrow();
        }

        /** The drive's id, given or assigned ({@code diskN}): QEMU's BlockBackend name. */
        public String id() {
            return property("id").orElseThrow();
        }

        /** The user's {@code node-name=}, if given; the name QEMU gets is {@code qemuDisk().nodeName()}. */
        public Optional<String> nodeName() {
            return property("node-name");
        }

        /** {@code readonly=on} (or {@code yes}, {@code true}, {@code y}, as QEMU reads booleans). */
        public boolean readOnly() {
            return property("readonly").map(VmConfigParser::isTrue).orElse(false);
        }

        /** This drive as QEMU opens it. */
        public QemuConfig.Disk.Drive qemuDisk() {
            return new QemuConfig.Disk.Drive(properties);
        }
    }

    public VmConfig {
        drives = List.copyOf(drives);
        monitors = List.copyOf(monitors);
        qemuArgs = List.copyOf(qemuArgs);
        objects = List.copyOf(objects);
        java.util.Objects.requireNonNull(migrationParameters, "migrationParameters");
        qmpServers = List.copyOf(qmpServers);
        java.util.Objects.requireNonNull(process, "process");
    }

    /** A destination: {@code -incoming tcp:...} or {@code -incoming defer}. */
    public boolean isIncoming() {
        return incoming.isPresent();
    }

    /** The {@code -object}s QEMU gets, as {@code -object SPEC} argument pairs. */
    public List<String> qemuObjectArgs() {
        List<String> args = new java.util.ArrayList<>();
        for (VmObject object : objects) {
            if (object instanceof VmObject.Qemu qemu) {
                args.add("-object");
                args.add(qemu.spec());
            }
        }
        return args;
    }
}
