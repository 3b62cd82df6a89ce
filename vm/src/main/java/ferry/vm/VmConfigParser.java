package ferry.vm;

import ferry.migration.MigrationParameters;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorEndpoint;
import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Parses {@code ferry run}'s options, which take QEMU's own shapes for the common case
 * ({@code -name -m -smp -kernel -initrd -append -drive -serial -monitor -qmp -chardev -mon -display -accel
 * -incoming -object -global migration.* -machine -pidfile -daemonize}, also {@code -incoming defer}); QEMU's
 * {@code -device -netdev -cpu}, the {@code -chardev}s no {@code -mon} names and the {@code -object}s Ferry does
 * not own go to QEMU as written, in order. Ferry's own: {@code --qemu PATH}, {@code --qemu-arg ARG}
 * (repeatable, for anything else), {@code --incoming-overwrite}, {@code --runtime-dir DIR} and
 * {@code --log-dir DIR} and {@code --metrics HOST:PORT}. A wrong or unknown option is refused before anything starts.
 */
public final class VmConfigParser {
    private VmConfigParser() {}

    /** A refused command line; the message says which option and why. */
    public static final class BadOptionException extends Exception {
        public BadOptionException(String message) {
            super(message);
        }
    }

    public static VmConfig parse(List<String> args) throws BadOptionException {
        String name = null;
        int memoryMib = 256;
        int smp = 1;
        Optional<String> smpSpec = Optional.empty();
        Optional<String> machine = Optional.empty();
        Optional<Path> pidFile = Optional.empty();
        boolean daemonize = false;
        Optional<Path> logDir = Optional.empty();
        Optional<java.net.InetSocketAddress> metrics = Optional.empty();
        Optional<Path> kernel = Optional.empty();
        Optional<Path> initrd = Optional.empty();
        Optional<String> append = Optional.empty();
        List<VmConfig.Drive> drives = new ArrayList<>();
        QemuConfig.Serial serial = new QemuConfig.Serial.None();
        List<MonitorEndpoint> monitors = new ArrayList<>();
        Optional<Accelerator> accel = Optional.empty();
        Optional<VmConfig.Incoming> incoming = Optional.empty();
        List<VmObject> objects = new ArrayList<>();
        MigrationParameters parameters = MigrationParameters.defaults();
        boolean overwrite = false;
        String qemu = "qemu-system-x86_64";
        List<String> qemuArgs = new ArrayList<>();
        Optional<Path> runtimeDir = Optional.empty();
        ControlSockets control = new ControlSockets();

        for (int i = 0; i < args.size(); i++) {
            String option = args.get(i);
            String normalized = option.startsWith("--") && !isFerryOption(option) ? option.substring(1) : option;
            switch (normalized) {
                case "-name" -> name = nameValue(value(args, ++i, option));
                case "-m" -> memoryMib = memory(value(args, ++i, option));
                case "-smp" -> {
                    smpSpec = Optional.of(value(args, ++i, option));
                    smp = smp(smpSpec.get());
                }
                case "-machine", "-M" -> machine = Optional.of(machine(value(args, ++i, option)));
                case "-device", "-netdev", "-cpu" -> {       // QEMU's own: passed as written, in order
                    String spec = value(args, ++i, option);
                    qemuArgs.add(normalized);
                    qemuArgs.add(spec);
                }
                case "-pidfile" -> pidFile = Optional.of(Path.of(value(args, ++i, option)));
                case "-daemonize" -> daemonize = true;
                case "-kernel" -> kernel = Optional.of(Path.of(value(args, ++i, option)));
                case "-initrd" -> initrd = Optional.of(Path.of(value(args, ++i, option)));
                case "-append" -> append = Optional.of(value(args, ++i, option));
                case "-drive" -> drives.add(drive(value(args, ++i, option), drives.size()));
                case "-serial" -> serial = serial(value(args, ++i, option));
                case "-monitor" -> {
                    String spec = value(args, ++i, option);
                    if (!spec.equals("none")) {
                        monitors.add(monitor(spec));
                    }
                }
                case "-display" -> {
                    String display = value(args, ++i, option);
                    if (!display.equals("none")) {
                        throw new BadOptionException("-display " + display + ": only '-display none' is supported (Ferry runs headless;"
                                + " pass other displays with --qemu-arg)");
                    }
                }
                case "-nographic" -> serial = serial instanceof QemuConfig.Serial.None ? new QemuConfig.Serial.Stdio() : serial;
                case "-accel" -> accel = Optional.of(accelerator(value(args, ++i, option)));
                case "-enable-kvm" -> accel = Optional.of(Accelerator.KVM);
                case "-incoming" -> incoming = Optional.of(incoming(value(args, ++i, option)));
                case "-object" -> objects.add(ObjectOptions.object(value(args, ++i, option)));
                case "-global" -> parameters = ObjectOptions.global(value(args, ++i, option), parameters);
                case "-qmp" -> control.qmp(value(args, ++i, option));
                case "-chardev" -> control.chardev(value(args, ++i, option));
                case "-mon" -> control.mon(value(args, ++i, option));
                case "--incoming-overwrite" -> overwrite = true;
                case "--qemu" -> qemu = value(args, ++i, option);
                case "--qemu-arg" -> qemuArgs.add(value(args, ++i, option));
                case "--runtime-dir" -> runtimeDir = Optional.of(Path.of(value(args, ++i, option)));
                case "--log-dir" -> logDir = Optional.of(Path.of(value(args, ++i, option)));
                case "--metrics" -> metrics = Optional.of(MetricsServer.parse(value(args, ++i, option)));
                default -> throw new BadOptionException("unknown option " + option
                        + " (Ferry takes -name -m -smp -machine -cpu -kernel -initrd -append -drive -device -netdev -serial"
                        + " -monitor -qmp -chardev -mon -display -accel -incoming -object -global -pidfile -daemonize;"
                        + " pass anything else to QEMU with --qemu-arg)");
            }
        }
        if (name == null) {
            name = "ferry-vm";
        }
        if (drives.isEmpty()) {
            throw new BadOptionException("no -drive given: Ferry moves VMs with their disks (give at least one"
                    + " -drive file=PATH,format=raw,if=virtio)");
        }
        checkBlockNames(drives);
        if (initrd.isPresent() && kernel.isEmpty()) {
            throw new BadOptionException("-initrd needs -kernel");
        }
        if (append.isPresent() && kernel.isEmpty()) {
            throw new BadOptionException("-append needs -kernel");
        }
        if (serial instanceof QemuConfig.Serial.Stdio && monitors.stream().anyMatch(m -> m instanceof MonitorEndpoint.Stdio)) {
            throw new BadOptionException("-serial stdio and -monitor stdio cannot share standard input; move one to unix: or tcp:");
        }
        if (daemonize && (serial instanceof QemuConfig.Serial.Stdio || monitors.stream().anyMatch(m -> m instanceof MonitorEndpoint.Stdio))) {
            throw new BadOptionException("-daemonize cannot be used with a -serial or -monitor on stdio (as in QEMU)");
        }
        ObjectOptions.check(objects, parameters);
        control.resolve(monitors);
        List<String> chardevs = new ArrayList<>();
        for (String chardev : control.qemuChardevs()) {
            chardevs.add("-chardev");
            chardevs.add(chardev);
        }
        qemuArgs.addAll(0, chardevs);                     // before the -devices that may name them
        return new VmConfig(name, memoryMib, smp, kernel, initrd, append, drives, serial, monitors, accel, incoming,
                overwrite, qemu, qemuArgs, runtimeDir, objects, parameters, control.qmpServers(),
                new VmConfig.Process(machine, smpSpec, pidFile, daemonize, logDir, metrics));
    }

    private static boolean isFerryOption(String option) {
        return switch (option) {
            case "--incoming-overwrite", "--qemu", "--qemu-arg", "--runtime-dir", "--log-dir", "--metrics" -> true;
            default -> false;
        };
    }

    private static String value(List<String> args, int index, String option) throws BadOptionException {
        if (index >= args.size()) {
            throw new BadOptionException(option + " needs a value");
        }
        return args.get(index);
    }

    private static String nameValue(String spec) throws BadOptionException {
        Map<String, String> props = properties(spec, "guest", "-name");
        String name = props.get("guest");
        if (name == null || name.isBlank()) {
            throw new BadOptionException("-name " + spec + ": empty name");
        }
        return name;
    }

    /** QEMU's size syntax for {@code -m}: a decimal number, a fraction allowed, then an optional B, K, M, G, T, P or E (any case). */
    private static final Pattern SIZE = Pattern.compile("([0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)([BKMGTPE]?)", Pattern.CASE_INSENSITIVE);
    private static final long MIB = 1 << 20;
    private static final long MIN_MEMORY_MIB = 16, MAX_MEMORY_MIB = 1L << 30;   // 1 PiB; memoryMib is an int

    /**
     * {@code -m [size=]SIZE} as QEMU reads it: a bare number is MiB, suffixes B K M G T P E are powers of
     * 1024, and a fraction is allowed ({@code 1.5G}). Ferry keeps whole MiB, so a size that is not one
     * ({@code 1.3G}, QEMU would round it up to 8 KiB) is refused rather than silently changed.
     */
    static int memory(String spec) throws BadOptionException {
        String s = spec.startsWith("size=") ? spec.substring(5) : spec;
        Matcher m = SIZE.matcher(s);
        if (!m.matches()) {
            throw new BadOptionException("-m " + spec + ": not a size (e.g. 256, 256M, 1.5G, 2T)");
        }
        String suffix = m.group(2).isEmpty() ? "M" : m.group(2).toUpperCase(java.util.Locale.ROOT);
        int shift = 10 * "BKMGTPE".indexOf(suffix);
        if (shift == 0 && m.group(1).contains(".")) {
            throw new BadOptionException("-m " + spec + ": a fraction needs a unit of K or more (as in QEMU)");
        }
        BigDecimal bytes = new BigDecimal(m.group(1)).multiply(new BigDecimal(BigInteger.ONE.shiftLeft(shift)));
        BigDecimal[] mib = bytes.divideAndRemainder(BigDecimal.valueOf(MIB));
        if (mib[1].signum() != 0) {
            throw new BadOptionException("-m " + spec + ": not a whole number of MiB");
        }
        if (mib[0].compareTo(BigDecimal.valueOf(MIN_MEMORY_MIB)) < 0 || mib[0].compareTo(BigDecimal.valueOf(MAX_MEMORY_MIB)) > 0) {
            throw new BadOptionException("-m " + spec + ": memory must be 16M..1P");
        }
        return mib[0].intValueExact();
    }

    /**
     * {@code -machine [type=]TYPE[,PROP=VALUE...]}, kept as written for QEMU; only checked to name a type
     * ({@code accel=} belongs in {@code -accel}, which Ferry chooses).
     */
    static String machine(String spec) throws BadOptionException {
        Map<String, String> props = properties(spec, "type", "-machine");
        if (!props.containsKey("type") || props.get("type").isEmpty()) {
            throw new BadOptionException("-machine " + spec + ": give a machine type first (e.g. pc, q35, pc-i440fx-7.2)");
        }
        if (props.containsKey("accel")) {
            throw new BadOptionException("-machine " + spec + ": accel= is not taken here; use -accel kvm|tcg");
        }
        return spec;
    }

    private static int smp(String spec) throws BadOptionException {
        String s = spec.startsWith("cpus=") ? spec.substring(5) : spec.split(",")[0];
        try {
            int cpus = Integer.parseInt(s);
            if (cpus < 1 || cpus > 288) {
                throw new BadOptionException("-smp " + spec + ": 1..288 vCPUs");
            }
            return cpus;
        } catch (NumberFormatException e) {
            throw new BadOptionException("-smp " + spec + ": not a number of vCPUs");
        }
    }

    /**
     * A {@code -drive}, passed to QEMU as written: QEMU validates its own properties, and Ferry refuses
     * only what it cannot migrate. Ferry requires {@code file=} (a local image file: Ferry reads it to
     * migrate) and {@code format=raw|qcow2} (it never guesses formats: QEMU's probing is unsafe, and
     * migration reads these two), and refuses {@code snapshot=on}. As before, a bare first value is the
     * file, {@code if=} defaults to {@code virtio} and {@code id=} to {@code disk<index>}; both are
     * appended when absent. A bare later {@code KEY} means {@code KEY=on} and {@code noKEY}
     * {@code KEY=off}, as in QEMU, and is stored in that long form.
     */
    static VmConfig.Drive drive(String spec, int index) throws BadOptionException {
        Map<String, String> props = properties(spec, "file", "-drive");
        String file = props.get("file");
        if (file == null || file.isEmpty()) {
            throw new BadOptionException("-drive " + spec + ": file= is required");
        }
        if (hasProtocolPrefix(file)) {
            throw new BadOptionException("-drive " + spec + ": file=" + file + " names a QEMU protocol, not a local image"
                    + " file (Ferry migrates local images; write ./" + file + " for a file whose name has a colon)");
        }
        String format = props.get("format");
        if (format == null) {
            throw new BadOptionException("-drive " + spec + ": format= is required (raw or qcow2): Ferry never guesses formats");
        }
        if (!format.equals("raw") && !format.equals("qcow2")) {
            throw new BadOptionException("-drive " + spec + ": format=" + format + " is not supported (raw, qcow2)");
        }
        for (String flag : List.of("snapshot", "readonly")) {
            String value = props.get(flag);
            if (value != null && !isTrue(value) && !isFalse(value)) {
                throw new BadOptionException("-drive " + spec + ": " + flag + "=" + value + " is not a boolean (on, off)");
            }
        }
        if (props.containsKey("snapshot") && isTrue(props.get("snapshot"))) {
            throw new BadOptionException("-drive " + spec + ": snapshot=on is not supported: the guest's writes would go to"
                    + " a temporary overlay that is deleted on exit, so there would be nothing to migrate");
        }
        props.putIfAbsent("if", "virtio");
        props.putIfAbsent("id", "disk" + index);
        String id = props.get("id");
        if (!id.matches("[A-Za-z][A-Za-z0-9._-]{0,31}")) {
            throw new BadOptionException("-drive " + spec + ": id=" + id + " must start with a letter (letters, digits, . _ -)");
        }
        String node = props.get("node-name");
        int maxNode = QemuConfig.Disk.Drive.MAX_NODE_NAME_LENGTH;
        if (node == null && id.length() + QemuConfig.Disk.Drive.NODE_NAME_SUFFIX.length() > maxNode) {
            throw new BadOptionException("-drive " + spec + ": id=" + id + " is too long to name the format node "
                    + id + QemuConfig.Disk.Drive.NODE_NAME_SUFFIX + " (at most " + maxNode + " characters):"
                    + " give a shorter id= or a node-name=");
        }
        if (node != null && (!node.matches("[A-Za-z][A-Za-z0-9._-]*") || node.length() > maxNode)) {
            throw new BadOptionException("-drive " + spec + ": node-name=" + node + " must start with a letter (letters,"
                    + " digits, . _ -) and have at most " + maxNode + " characters");
        }
        List<QemuConfig.DriveProperty> properties = new ArrayList<>();
        props.forEach((key, value) -> properties.add(new QemuConfig.DriveProperty(key, value)));
        return new VmConfig.Drive(properties);
    }

    /** QEMU's {@code path_has_protocol}: a ':' before any '/' makes {@code file=} a protocol ({@code nbd:}, {@code json:}). */
    private static boolean hasProtocolPrefix(String file) {
        int end = 0;
        while (end < file.length() && file.charAt(end) != ':' && file.charAt(end) != '/') {
            end++;
        }
        return end < file.length() && file.charAt(end) == ':';
    }

    /** QEMU's true spellings for a boolean property. */
    static boolean isTrue(String value) {
        return switch (value) {
            case "on", "yes", "true", "y" -> true;
            default -> false;
        };
    }

    static boolean isFalse(String value) {
        return switch (value) {
            case "off", "no", "false", "n" -> true;
            default -> false;
        };
    }

    /** Drive ids and format node names share QEMU's one namespace of block names: each name once. */
    private static void checkBlockNames(List<VmConfig.Drive> drives) throws BadOptionException {
        Map<String, String> takenBy = new LinkedHashMap<>();
        for (VmConfig.Drive drive : drives) {
            String id = drive.id();
            String node = drive.qemuDisk().nodeName();
            if (node.equals(id)) {
                throw new BadOptionException("-drive id=" + id + ": node-name=" + node + " equals the drive's id"
                        + " (drive ids and node names share one namespace in QEMU)");
            }
            for (String name : List.of(id, node)) {
                String owner = takenBy.putIfAbsent(name, id);
                if (owner != null) {
                    throw new BadOptionException("-drive id=" + id + ": the name " + name + " is already taken by drive "
                            + owner + " (drive ids and node names share one namespace in QEMU)");
                }
            }
        }
    }

    static QemuConfig.Serial serial(String spec) throws BadOptionException {
        if (spec.equals("stdio")) {
            return new QemuConfig.Serial.Stdio();
        }
        if (spec.equals("none") || spec.equals("null")) {
            return new QemuConfig.Serial.None();
        }
        if (spec.startsWith("file:")) {
            return new QemuConfig.Serial.File(Path.of(spec.substring(5)));
        }
        if (spec.startsWith("unix:")) {
            return new QemuConfig.Serial.Unix(Path.of(socketPath(spec.substring(5), "-serial")));
        }
        throw new BadOptionException("-serial " + spec + ": use stdio, file:PATH, unix:PATH,server,nowait or none");
    }

    static MonitorEndpoint monitor(String spec) throws BadOptionException {
        if (spec.equals("stdio")) {
            return MonitorEndpoint.Stdio.system();
        }
        if (spec.startsWith("unix:")) {
            return new MonitorEndpoint.Unix(Path.of(socketPath(spec.substring(5), "-monitor")));
        }
        if (spec.startsWith("tcp:")) {
            return tcp(spec, "-monitor");
        }
        throw new BadOptionException("-monitor " + spec + ": use stdio, unix:PATH,server,nowait, tcp:HOST:PORT,server,nowait or none");
    }

    /** {@code tcp:HOST:PORT,server,nowait} (an empty host is 127.0.0.1). */
    static MonitorEndpoint.Tcp tcp(String spec, String option) throws BadOptionException {
        String[] parts = spec.substring(4).split(",");
        checkServerFlags(parts, option + " " + spec);
        int colon = parts[0].lastIndexOf(':');
        if (colon < 0) {
            throw new BadOptionException(option + " " + spec + ": use tcp:HOST:PORT,server,nowait");
        }
        String host = parts[0].substring(0, colon);
        try {
            return new MonitorEndpoint.Tcp(host.isEmpty() ? "127.0.0.1" : host, Integer.parseInt(parts[0].substring(colon + 1)));
        } catch (IllegalArgumentException e) {
            throw new BadOptionException(option + " " + spec + ": bad port");
        }
    }

    static String socketPath(String spec, String option) throws BadOptionException {
        String[] parts = spec.split(",");
        checkServerFlags(parts, option + " unix:" + spec);
        if (parts[0].isEmpty()) {
            throw new BadOptionException(option + " unix:" + spec + ": empty path");
        }
        return parts[0];
    }

    private static void checkServerFlags(String[] parts, String context) throws BadOptionException {
        for (int i = 1; i < parts.length; i++) {
            switch (parts[i]) {
                case "server", "server=on", "nowait", "wait=off" -> { }
                default -> throw new BadOptionException(context + ": unsupported flag " + parts[i]
                        + " (Ferry always listens and never waits: server,nowait)");
            }
        }
    }

    private static Accelerator accelerator(String spec) throws BadOptionException {
        try {
            return Accelerator.parse(spec.split(",")[0]);
        } catch (IllegalArgumentException e) {
            throw new BadOptionException("-accel " + spec + ": use kvm or tcg");
        }
    }

    /** {@code -incoming tcp:HOST:PORT} or {@code -incoming defer}. */
    static VmConfig.Incoming incoming(String spec) throws BadOptionException {
        if (spec.equals("defer")) {
            return new VmConfig.Incoming.Defer();
        }
        try {
            return new VmConfig.Incoming.Listen(listenAddress(MigrationUri.parse(spec)));
        } catch (IllegalArgumentException e) {
            throw new BadOptionException("-incoming " + spec + ": " + e.getMessage() + " (use tcp:HOST:PORT, e.g. tcp:0:4444, or defer)");
        }
    }

    /** {@code tcp:HOST:PORT} where a listener must start now ({@code migrate_incoming}, {@code ferry attach -incoming}). */
    static MigrationUri listenUri(String spec) throws BadOptionException {
        try {
            return listenAddress(MigrationUri.parse(spec));
        } catch (IllegalArgumentException e) {
            throw new BadOptionException("-incoming " + spec + ": " + e.getMessage() + " (use tcp:HOST:PORT, e.g. tcp:0:4444)");
        }
    }

    /** Where to listen for {@code tcp:HOST:PORT}: host {@code 0} means every IPv4 address, as in QEMU. */
    static MigrationUri listenAddress(MigrationUri uri) {
        String host = uri.host().equals("0") || uri.host().isEmpty() ? "0.0.0.0" : uri.host();
        return new MigrationUri(host, uri.port());
    }

    /**
     * QEMU's {@code KEY=VALUE,KEY=VALUE}, in order. A comma inside a value is written {@code ,,}. A first
     * part without '=' is {@code implied}'s value; a later one is a flag, {@code KEY} meaning {@code KEY=on}
     * and {@code noKEY} meaning {@code KEY=off} (QEMU's short form). A key given twice is refused, so that
     * Ferry and QEMU cannot read different values.
     */
    static Map<String, String> properties(String spec, String implied, String option) throws BadOptionException {
        Map<String, String> props = new LinkedHashMap<>();
        int at = 0;
        while (at < spec.length()) {
            int keyEnd = at;
            while (keyEnd < spec.length() && spec.charAt(keyEnd) != '=' && spec.charAt(keyEnd) != ',') {
                keyEnd++;
            }
            String key;
            String value;
            StringBuilder unescaped = new StringBuilder();
            if (keyEnd < spec.length() && spec.charAt(keyEnd) == '=') {
                key = spec.substring(at, keyEnd);
                at = readValue(spec, keyEnd + 1, unescaped);
                value = unescaped.toString();
            } else if (at == 0 && keyEnd > 0) {
                key = implied;
                at = readValue(spec, 0, unescaped);
                value = unescaped.toString();
            } else {
                String flag = spec.substring(at, keyEnd);
                key = flag.startsWith("no") ? flag.substring(2) : flag;
                value = flag.startsWith("no") ? "off" : "on";
                at = keyEnd;
            }
            if (key.isEmpty()) {
                throw new BadOptionException(option + " " + spec + ": expected KEY=VALUE, got an empty key");
            }
            if (props.put(key, value) != null) {
                throw new BadOptionException(option + " " + spec + ": " + key + " given twice");
            }
            at++;                                          // past the separating comma
        }
        return props;
    }

    /** Appends the value starting at {@code from} to {@code out}, ",," as ','; returns the index of the ending ',' or the end. */
    private static int readValue(String spec, int from, StringBuilder out) {
        int at = from;
        while (at < spec.length()) {
            char c = spec.charAt(at);
            if (c == ',') {
                if (at + 1 < spec.length() && spec.charAt(at + 1) == ',') {
                    out.append(',');
                    at += 2;
                    continue;
                }
                return at;
            }
            out.append(c);
            at++;
        }
        return at;
    }
}
