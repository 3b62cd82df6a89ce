package ferry.qemu;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * What one QEMU process runs: the typed source of {@link QemuCommandLine}.
 *
 * @param name the VM's name ({@code -name}), also used in logs
 * @param memoryMib guest RAM in MiB
 * @param smp {@code -smp} as QEMU reads it: a number of vCPUs, or the user's spec with its topology ({@code 4,sockets=2})
 * @param machine {@code -machine} as QEMU reads it (a type, e.g. {@code pc-i440fx-7.2}, and properties, commas
 *     escaped as the user wrote them): the same on both ends of a migration
 * @param kernel direct-boot kernel, if any ({@code -kernel})
 * @param initrd initramfs for the direct-boot kernel, if any
 * @param append kernel command line, if any
 * @param disks the guest's disks, in order (the first is /dev/vda)
 * @param serial where the guest's first serial port goes
 * @param accelerator the accelerator chosen with {@link Accelerator#choose}
 * @param qmpSocket the private QMP unix socket QEMU listens on
 * @param incomingDefer start with {@code -incoming defer} (the destination of a migration)
 * @param paused start with {@code -S}: CPUs stay stopped until QMP {@code cont}
 * @param extraArgs raw arguments appended at the end
 */
public record QemuConfig(String name, int memoryMib, String smp, String machine, Optional<Path> kernel,
                         Optional<Path> initrd, Optional<String> append, List<Disk> disks, Serial serial,
                         Accelerator accelerator, Path qmpSocket, boolean incomingDefer, boolean paused,
                         List<String> extraArgs) {

    /** QEMU's id syntax: a letter, then letters, digits, '-', '.', '_'. */
    private static final Pattern ID = Pattern.compile("[A-Za-z][A-Za-z0-9._-]{0,63}");

    public QemuConfig {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(machine, "machine");
        Objects.requireNonNull(kernel, "kernel");
        Objects.requireNonNull(initrd, "initrd");
        Objects.requireNonNull(append, "append");
        Objects.requireNonNull(serial, "serial");
        Objects.requireNonNull(accelerator, "accelerator");
        Objects.requireNonNull(qmpSocket, "qmpSocket");
        disks = List.copyOf(disks);
        extraArgs = List.copyOf(extraArgs);
        if (name.isBlank()) {
            throw new IllegalArgumentException("invalid VM config: name is empty");
        }
        if (memoryMib < 16) {
            throw new IllegalArgumentException("invalid VM config: name=" + name + " memoryMib=" + memoryMib + " (at least 16)");
        }
        Objects.requireNonNull(smp, "smp");
        String first = smp.split(",", -1)[0];
        if (smp.isEmpty() || first.matches("[0-9]+") && (first.length() > 3 || cpus(smp) < 1 || cpus(smp) > 288)) {
            throw new IllegalArgumentException("invalid VM config: name=" + name + " smp=" + smp + " (1 to 288 vCPUs)");
        }
        if (initrd.isPresent() && kernel.isEmpty()) {
            throw new IllegalArgumentException("invalid VM config: name=" + name + " initrd given without a kernel");
        }
        if (append.isPresent() && kernel.isEmpty()) {
            throw new IllegalArgumentException("invalid VM config: name=" + name + " append given without a kernel");
        }
        java.util.Set<String> ids = new java.util.HashSet<>();
        java.util.Set<String> blockNames = new java.util.HashSet<>();      // QEMU: one namespace for node names
        for (Disk disk : disks) {                                          // and BlockBackend (drive id) names
            if (!ID.matcher(disk.id()).matches()) {
                throw new IllegalArgumentException("invalid VM config: name=" + name + " disk id=" + disk.id()
                        + " (a letter, then letters, digits, '-', '.', '_')");
            }
            if (!ids.add(disk.id())) {
                throw new IllegalArgumentException("invalid VM config: name=" + name + " duplicate disk id=" + disk.id());
            }
            List<String> names = switch (disk) {
                case Disk.Drive drive -> List.of(drive.id(), drive.nodeName());
            };
            for (String blockName : names) {
                if (!blockNames.add(blockName)) {
                    throw new IllegalArgumentException("invalid VM config: name=" + name + " disk id=" + disk.id()
                            + " reuses the block node or drive name " + blockName);
                }
            }
        }
    }

    /** A minimal config: no kernel, no disks, serial none, not paused; add parts with the {@code with} methods. */
    public static QemuConfig of(String name, int memoryMib, Accelerator accelerator, Path qmpSocket) {
        return new QemuConfig(name, memoryMib, "1", "pc", Optional.empty(), Optional.empty(), Optional.empty(),
                List.of(), new Serial.None(), accelerator, qmpSocket, false, false, List.of());
    }

    private static int cpus(String smp) {
        return Integer.parseInt(smp.split(",")[0]);
    }

    public QemuConfig withSmp(int cpus) {
        return withSmp(Integer.toString(cpus));
    }

    /** {@code -smp} as the user wrote it, topology included. */
    public QemuConfig withSmp(String spec) {
        return new QemuConfig(name, memoryMib, spec, machine, kernel, initrd, append, disks, serial, accelerator,
                qmpSocket, incomingDefer, paused, extraArgs);
    }

    /** {@code -machine} as QEMU reads it. */
    public QemuConfig withMachine(String spec) {
        return new QemuConfig(name, memoryMib, smp, spec, kernel, initrd, append, disks, serial, accelerator,
                qmpSocket, incomingDefer, paused, extraArgs);
    }

    public QemuConfig withKernel(Path kernelPath, Optional<Path> initrdPath, Optional<String> commandLine) {
        return new QemuConfig(name, memoryMib, smp, machine, Optional.of(kernelPath), initrdPath, commandLine, disks,
                serial, accelerator, qmpSocket, incomingDefer, paused, extraArgs);
    }

    public QemuConfig withDisks(List<Disk> newDisks) {
        return new QemuConfig(name, memoryMib, smp, machine, kernel, initrd, append, newDisks, serial, accelerator,
                qmpSocket, incomingDefer, paused, extraArgs);
    }

    public QemuConfig withSerial(Serial newSerial) {
        return new QemuConfig(name, memoryMib, smp, machine, kernel, initrd, append, disks, newSerial, accelerator,
                qmpSocket, incomingDefer, paused, extraArgs);
    }

    public QemuConfig withIncomingDefer(boolean defer) {
        return new QemuConfig(name, memoryMib, smp, machine, kernel, initrd, append, disks, serial, accelerator,
                qmpSocket, defer, paused, extraArgs);
    }

    public QemuConfig withPaused(boolean startPaused) {
        return new QemuConfig(name, memoryMib, smp, machine, kernel, initrd, append, disks, serial, accelerator,
                qmpSocket, incomingDefer, startPaused, extraArgs);
    }

    public QemuConfig withExtraArgs(List<String> args) {
        return new QemuConfig(name, memoryMib, smp, machine, kernel, initrd, append, disks, serial, accelerator,
                qmpSocket, incomingDefer, paused, args);
    }

    /** A guest disk. */
    public sealed interface Disk {
        String id();

        /**
         * A {@code -drive} that QEMU opens itself, passed through with the user's properties in their
         * order (values unescaped here; {@link QemuCommandLine} doubles commas again). QEMU makes the guest
         * device from {@code if=}; Ferry adds no {@code -device}.
         *
         * <p>Node names: {@code id=} (required) names the drive's BlockBackend, which QMP commands such as
         * {@code block_set_io_throttle device=ID} take. The format node (the qcow2 or raw BDS at the top of
         * the drive) is {@link #nodeName()}: the user's {@code node-name=} if given, else
         * {@code ID}{@value #NODE_NAME_SUFFIX}, which the command line adds, so that commands taking a node
         * ({@code block-dirty-bitmap-add node=}, {@code block-export-add node-name=}) have a stable name
         * instead of QEMU's generated {@code #blockNNN}. Checked on QEMU 7.2: {@code -drive
         * ...,id=disk0,node-name=disk0-fmt} gives {@code query-named-block-nodes} the qcow2 node
         * {@code disk0-fmt} (its file child keeps a generated name); a node name equal to a drive id is
         * refused ("Device name 'disk0' conflicts with an existing node name"); a node name of 32
         * characters is refused ("Node name too long").
         *
         * @param properties the {@code KEY=VALUE} pairs in order; keys are unique, {@code id} is present
         */
        record Drive(List<DriveProperty> properties) implements Disk {
            /** Appended to the drive id for the format node's name when the user gave no {@code node-name=}. */
            public static final String NODE_NAME_SUFFIX = "-fmt";
            /** QEMU keeps node names in a 32-byte buffer with its NUL. */
            public static final int MAX_NODE_NAME_LENGTH = 31;

            public Drive {
                properties = List.copyOf(properties);
                java.util.Set<String> keys = new java.util.HashSet<>();
                for (DriveProperty property : properties) {
                    if (!keys.add(property.key())) {
                        throw new IllegalArgumentException("invalid drive: " + property.key() + " given twice: "
                                + render(properties));
                    }
                }
                if (!keys.contains("id")) {
                    throw new IllegalArgumentException("invalid drive: no id: " + render(properties));
                }
                String node = nodeName(properties);
                if (!ID.matcher(node).matches() || node.length() > MAX_NODE_NAME_LENGTH) {
                    throw new IllegalArgumentException("invalid drive: node-name=" + node + " (a letter, then letters,"
                            + " digits, '-', '.', '_'; at most " + MAX_NODE_NAME_LENGTH + " characters): " + render(properties));
                }
            }

            /** The value of {@code key}, unescaped, if the drive has it. */
            public Optional<String> property(String key) {
                return property(properties, key);
            }

            @Override public String id() {
                return property("id").orElseThrow();
            }

            /** The format node's name: the user's {@code node-name=}, else {@code ID-fmt}. */
            public String nodeName() {
                return nodeName(properties);
            }

            /** Whether the command line must add {@code node-name=}. */
            public boolean nodeNameAdded() {
                return property("node-name").isEmpty();
            }

            /** {@code -drive}'s value as QEMU reads it: the properties in order, commas doubled, then any added node-name. */
            public String commandLineValue() {
                String given = render(properties);
                return nodeNameAdded() ? given + ",node-name=" + nodeName() : given;
            }

            private static Optional<String> property(List<DriveProperty> properties, String key) {
                return properties.stream().filter(p -> p.key().equals(key)).map(DriveProperty::value).findFirst();
            }

            private static String nodeName(List<DriveProperty> properties) {
                return property(properties, "node-name")
                        .orElseGet(() -> property(properties, "id").orElseThrow() + NODE_NAME_SUFFIX);
            }

            private static String render(List<DriveProperty> properties) {
                return String.join(",", properties.stream().map(DriveProperty::render).toList());
            }
        }
    }

    /**
     * One {@code KEY=VALUE} of a {@code -drive}, {@code value} unescaped ({@code file=a,,b} is the value {@code a,b}).
     * Keys are QEMU's ({@code file}, {@code format}, {@code cache}, {@code throttling.bps-total}, ...).
     */
    public record DriveProperty(String key, String value) {
        public DriveProperty {
            Objects.requireNonNull(key, "key");
            Objects.requireNonNull(value, "value");
            if (key.isEmpty() || key.indexOf(',') >= 0 || key.indexOf('=') >= 0) {
                throw new IllegalArgumentException("invalid drive property: key=" + key + " (non-empty, no ',' or '=')");
            }
        }

        /** {@code KEY=VALUE} with commas in the value doubled, QEMU's escape. */
        public String render() {
            return key + "=" + QemuCommandLine.escape(value);
        }
    }

    /** Where the guest's serial port goes. */
    public sealed interface Serial {
        record Stdio() implements Serial {}

        record File(Path path) implements Serial {}

        /** A unix socket QEMU listens on without waiting for a client. */
        record Unix(Path path) implements Serial {}

        record None() implements Serial {}

        /** Parses {@code stdio}, {@code file:PATH}, {@code unix:PATH[,server,nowait]} or {@code none}. */
        static Serial parse(String spec) {
            if (spec.equals("stdio")) {
                return new Stdio();
            }
            if (spec.equals("none")) {
                return new None();
            }
            if (spec.startsWith("file:") && spec.length() > 5) {
                return new File(Path.of(spec.substring(5)));
            }
            if (spec.startsWith("unix:") && spec.length() > 5) {
                String rest = spec.substring(5);
                int comma = rest.indexOf(',');
                String path = comma < 0 ? rest : rest.substring(0, comma);
                String options = comma < 0 ? "" : rest.substring(comma + 1);
                for (String option : options.split(",")) {
                    if (!option.isEmpty() && !option.equals("server") && !option.equals("nowait")
                            && !option.equals("server=on") && !option.equals("wait=off")) {
                        throw new IllegalArgumentException("invalid serial: serial=" + spec
                                + " (unix sockets are always server,nowait)");
                    }
                }
                return new Unix(Path.of(path));
            }
            throw new IllegalArgumentException("invalid serial: serial=" + spec
                    + " (expected stdio, file:PATH, unix:PATH,server,nowait or none)");
        }
    }
}
