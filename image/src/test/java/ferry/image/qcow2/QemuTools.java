package ferry.image.qcow2;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.Extent;
import ferry.testkit.Tools;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** qemu-img and qemu-io as the tests use them: the oracle for Ferry's qcow2. */
final class QemuTools {
    private QemuTools() {}

    static final long TIMEOUT_S = 120;

    static Tools.Result img(String... args) {
        List<String> command = new ArrayList<>(List.of("qemu-img"));
        command.addAll(List.of(args));
        return Tools.run(TIMEOUT_S, command);
    }

    /** qemu-io on a qcow2 image with each {@code -c} command, failing the test on a non-zero exit. */
    static void io(String path, String... commands) {
        List<String> command = new ArrayList<>(List.of("qemu-io", "-f", "qcow2"));
        for (String c : commands) {
            command.add("-c");
            command.add(c);
        }
        command.add(path);
        Tools.Result r = Tools.run(TIMEOUT_S, command).orFail();
        assertTrue(!r.stdout().contains("Pattern verification failed") && !r.stdout().contains("failed"),
                "qemu-io " + commands[0] + ": " + r.stdout());
    }

    /** qemu-img check: 0 clean, 3 leaks only; anything else is a corruption or a failure. */
    static void assertConsistent(String path, boolean leaksAllowed) {
        Tools.Result r = img("check", "-f", "qcow2", path);
        boolean ok = r.exitCode() == 0 || (leaksAllowed && r.exitCode() == 3);
        assertTrue(ok, "qemu-img check " + path + " exited " + r.exitCode() + "\n" + r.stdout() + r.stderr());
    }

    static final Pattern MAP_ENTRY = Pattern.compile("\\{[^}]*\"start\":\\s*(\\d+),\\s*\"length\":\\s*(\\d+),"
            + "\\s*\"depth\":\\s*(\\d+),\\s*\"present\":\\s*(true|false),\\s*\"zero\":\\s*(true|false),"
            + "\\s*\"data\":\\s*(true|false)");

    /**
     * {@code qemu-img map --output=json} of the top image, in Ferry's terms: depth 0 and present is
     * this layer (DATA, or ZERO when it reads as zero without data); anything else falls through to the
     * backing file (BACKING) or, without one, is a HOLE.
     */
    static List<Extent> map(String path, boolean hasBacking) {
        Tools.Result r = img("map", "--output=json", "-f", "qcow2", path).orFail();
        Matcher m = MAP_ENTRY.matcher(r.stdout());
        List<Extent> out = new ArrayList<>();
        while (m.find()) {
            long start = Long.parseLong(m.group(1)), length = Long.parseLong(m.group(2));
            int depth = Integer.parseInt(m.group(3));
            boolean present = Boolean.parseBoolean(m.group(4)), zero = Boolean.parseBoolean(m.group(5)),
                    data = Boolean.parseBoolean(m.group(6));
            Extent.Type type;
            if (depth == 0 && present) {
                type = data ? Extent.Type.DATA : zero ? Extent.Type.ZERO : Extent.Type.DATA;
            } else {
                type = hasBacking ? Extent.Type.BACKING : Extent.Type.HOLE;
            }
            add(out, new Extent(start, length, type));
        }
        assertTrue(!out.isEmpty(), "no map entries parsed from: " + r.stdout());
        return out;
    }

    static void add(List<Extent> out, Extent e) {
        Extent last = out.isEmpty() ? null : out.getLast();
        if (last != null && last.type() == e.type() && last.end() == e.offset()) {
            out.set(out.size() - 1, new Extent(last.offset(), e.end() - last.offset(), e.type()));
        } else {
            out.add(e);
        }
    }
}
