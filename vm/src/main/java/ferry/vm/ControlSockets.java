package ferry.vm;

import ferry.monitor.MonitorEndpoint;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Ferry's control sockets as QEMU takes them: {@code -qmp unix:PATH,server,nowait} or
 * {@code -qmp tcp:HOST:PORT,server,nowait} (a QMP server), and {@code -chardev socket,id=ID,path=PATH|host=H,port=P,
 * server=on,wait=off} named by {@code -mon chardev=ID[,mode=control|readline]} (QMP for {@code control}, the HMP
 * monitor for {@code readline}, QEMU's default). A {@code -chardev} no {@code -mon} names is QEMU's: it is
 * passed to QEMU as written ({@link #qemuChardevs}). Shared by {@code ferry run} ({@link VmConfigParser}) and {@code ferry attach}
 * ({@link AttachConfig}). Not thread-safe: one parser fills it.
 */
final class ControlSockets {
    private final List<ferry.qmp.QmpEndpoint> qmpServers = new ArrayList<>();
    private final Map<String, String> chardevs = new LinkedHashMap<>();
    private final Map<String, String> mons = new LinkedHashMap<>();

    void qmp(String spec) throws VmConfigParser.BadOptionException {
        if (spec.startsWith("unix:")) {
            qmpServers.add(new ferry.qmp.QmpEndpoint.Unix(Path.of(VmConfigParser.socketPath(spec.substring(5), "-qmp"))));
            return;
        }
        if (spec.startsWith("tcp:")) {
            MonitorEndpoint.Tcp tcp = VmConfigParser.tcp(spec, "-qmp");
            qmpServers.add(new ferry.qmp.QmpEndpoint.Tcp(tcp.host(), tcp.port()));
            return;
        }
        throw new VmConfigParser.BadOptionException("-qmp " + spec + ": use unix:PATH,server,nowait or tcp:HOST:PORT,server,nowait");
    }

    void chardev(String spec) throws VmConfigParser.BadOptionException {
        Map<String, String> props = VmConfigParser.properties(spec, "backend", "-chardev");
        String id = props.get("id");
        if (id == null || id.isEmpty()) {
            throw new VmConfigParser.BadOptionException("-chardev " + spec + ": id= is required");
        }
        if (chardevs.put(id, spec) != null) {
            throw new VmConfigParser.BadOptionException("-chardev " + spec + ": id=" + id + " given twice");
        }
    }

    void mon(String spec) throws VmConfigParser.BadOptionException {
        Map<String, String> props = VmConfigParser.properties(spec, "chardev", "-mon");
        String chardev = props.get("chardev");
        if (chardev == null || chardev.isEmpty()) {
            throw new VmConfigParser.BadOptionException("-mon " + spec + ": chardev= is required");
        }
        String mode = props.getOrDefault("mode", "readline");
        if (!mode.equals("control") && !mode.equals("readline")) {
            throw new VmConfigParser.BadOptionException("-mon " + spec + ": mode=" + mode + " (control or readline)");
        }
        for (String key : props.keySet()) {
            if (!key.equals("chardev") && !key.equals("mode")) {
                throw new VmConfigParser.BadOptionException("-mon " + spec + ": " + key + "= is not supported (Ferry takes chardev= and mode=)");
            }
        }
        if (mons.put(chardev, mode) != null) {
            throw new VmConfigParser.BadOptionException("-mon " + spec + ": chardev " + chardev + " is already a monitor");
        }
    }

    /** Pairs each {@code -mon} with its {@code -chardev}; readline monitors join {@code monitors}. */
    void resolve(List<MonitorEndpoint> monitors) throws VmConfigParser.BadOptionException {
        for (Map.Entry<String, String> mon : mons.entrySet()) {
            String spec = chardevs.get(mon.getKey());
            if (spec == null) {
                throw new VmConfigParser.BadOptionException("-mon chardev=" + mon.getKey() + ": no -chardev with id=" + mon.getKey());
            }
            ferry.qmp.QmpEndpoint endpoint = socketChardev(spec);
            if (mon.getValue().equals("control")) {
                qmpServers.add(endpoint);
            } else {
                monitors.add(switch (endpoint) {
                    case ferry.qmp.QmpEndpoint.Unix unix -> new MonitorEndpoint.Unix(unix.path());
                    case ferry.qmp.QmpEndpoint.Tcp tcp -> new MonitorEndpoint.Tcp(tcp.host(), tcp.port());
                });
            }
        }
    }

    /** The {@code -chardev}s no {@code -mon} names, as written, in order: QEMU's own (a serial port's, a device's). */
    List<String> qemuChardevs() {
        List<String> specs = new ArrayList<>();
        chardevs.forEach((id, spec) -> {
            if (!mons.containsKey(id)) {
                specs.add(spec);
            }
        });
        return specs;
    }

    List<ferry.qmp.QmpEndpoint> qmpServers() {
        return List.copyOf(qmpServers);
    }

    /** {@code socket,id=ID,path=PATH,server=on,wait=off} or {@code socket,id=ID,host=H,port=P,server=on,wait=off}. */
    private static ferry.qmp.QmpEndpoint socketChardev(String spec) throws VmConfigParser.BadOptionException {
        Map<String, String> props = VmConfigParser.properties(spec, "backend", "-chardev");
        if (!"socket".equals(props.get("backend"))) {
            throw new VmConfigParser.BadOptionException("-chardev " + spec + ": only socket chardevs can be a monitor's");
        }
        if (!VmConfigParser.isTrue(props.getOrDefault("server", "off")) || !VmConfigParser.isFalse(props.getOrDefault("wait", "on"))) {
            throw new VmConfigParser.BadOptionException("-chardev " + spec + ": Ferry listens and never waits: give server=on,wait=off");
        }
        for (String key : props.keySet()) {
            if (!List.of("backend", "id", "path", "host", "port", "server", "wait").contains(key)) {
                throw new VmConfigParser.BadOptionException("-chardev " + spec + ": " + key + "= is not supported");
            }
        }
        if (props.containsKey("path")) {
            return new ferry.qmp.QmpEndpoint.Unix(Path.of(props.get("path")));
        }
        if (props.containsKey("port")) {
            try {
                return new ferry.qmp.QmpEndpoint.Tcp(props.getOrDefault("host", "127.0.0.1"), Integer.parseInt(props.get("port")));
            } catch (IllegalArgumentException e) {
                throw new VmConfigParser.BadOptionException("-chardev " + spec + ": bad port");
            }
        }
        throw new VmConfigParser.BadOptionException("-chardev " + spec + ": give path= (unix) or host= and port= (tcp)");
    }
}
