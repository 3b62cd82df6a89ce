package ferry.vm;

import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorEndpoint;
import ferry.qmp.QmpEndpoint;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * {@code ferry attach}'s options: the QMP socket of a running QEMU that Ferry did not start, and the same
 * monitor, QMP and migration options as {@code ferry run} ({@code -monitor}, {@code -qmp},
 * {@code -chardev}/{@code -mon}, {@code -incoming}, {@code --incoming-overwrite}, {@code --runtime-dir}),
 * plus {@code -name} to override QEMU's own ({@code query-name}).
 *
 * @param qmpSocket QEMU's QMP socket ({@code --qmp PATH}, also {@code unix:PATH}); Ferry is its only client
 *     while attached (QEMU serves one client per QMP socket at a time)
 * @param incoming {@code -incoming tcp:HOST:PORT}: QEMU was started with {@code -incoming defer}, and Ferry
 *     receives a migration into it
 */
public record AttachConfig(Path qmpSocket, Optional<String> name, List<MonitorEndpoint> monitors,
                           List<QmpEndpoint> qmpServers, Optional<MigrationUri> incoming, boolean incomingOverwrite,
                           Optional<Path> runtimeDir) {

    public AttachConfig {
        monitors = List.copyOf(monitors);
        qmpServers = List.copyOf(qmpServers);
    }

    public static AttachConfig parse(List<String> args) throws VmConfigParser.BadOptionException {
        Path qmp = null;
        Optional<String> name = Optional.empty();
        List<MonitorEndpoint> monitors = new ArrayList<>();
        ControlSockets control = new ControlSockets();
        Optional<MigrationUri> incoming = Optional.empty();
        boolean overwrite = false;
        Optional<Path> runtimeDir = Optional.empty();
        for (int i = 0; i < args.size(); i++) {
            String option = args.get(i);
            switch (option) {
                case "--qmp" -> {
                    String spec = value(args, ++i, option);
                    qmp = Path.of(spec.startsWith("unix:") ? spec.substring(5).split(",")[0] : spec);
                }
                case "-name", "--name" -> name = Optional.of(value(args, ++i, option).split(",")[0].replaceFirst("^guest=", ""));
                case "-monitor", "--monitor" -> {
                    String spec = value(args, ++i, option);
                    if (!spec.equals("none")) {
                        monitors.add(VmConfigParser.monitor(spec));
                    }
                }
                case "-qmp" -> control.qmp(value(args, ++i, option));
                case "-chardev" -> control.chardev(value(args, ++i, option));
                case "-mon" -> control.mon(value(args, ++i, option));
                case "-incoming", "--incoming" -> incoming = Optional.of(VmConfigParser.listenUri(value(args, ++i, option)));
                case "--incoming-overwrite" -> overwrite = true;
                case "--runtime-dir" -> runtimeDir = Optional.of(Path.of(value(args, ++i, option)));
                default -> throw new VmConfigParser.BadOptionException("unknown option " + option + " (ferry attach takes --qmp PATH"
                        + " -name -monitor -qmp -chardev -mon -incoming --incoming-overwrite --runtime-dir)");
            }
        }
        if (qmp == null) {
            throw new VmConfigParser.BadOptionException("--qmp PATH is required: the QMP socket of the running QEMU"
                    + " (started with -qmp unix:PATH,server,nowait)");
        }
        control.resolve(monitors);
        if (!control.qemuChardevs().isEmpty()) {            // no QEMU is started here to give them to
            throw new VmConfigParser.BadOptionException("-chardev " + control.qemuChardevs().get(0)
                    + ": no -mon uses it (ferry attach takes a -chardev only as a monitor's socket)");
        }
        return new AttachConfig(qmp, name, monitors, control.qmpServers(), incoming, overwrite, runtimeDir);
    }

    private static String value(List<String> args, int index, String option) throws VmConfigParser.BadOptionException {
        if (index >= args.size()) {
            throw new VmConfigParser.BadOptionException(option + " needs a value");
        }
        return args.get(index);
    }
}
