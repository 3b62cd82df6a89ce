package ferry.cli;

import java.util.Arrays;
import java.util.List;

/**
 * Entry point of {@code bin/ferry}: {@code run} (supervise a VM), {@code attach} (the same for a QEMU
 * Ferry did not start), {@code serve} (a standalone NBD server), {@code demo} (the seed's workflow on
 * two local hosts), {@code certs} (TLS certificates).
 */
public final class Main {
    private Main() {}

    static final String USAGE = """
            usage: ferry run [QEMU-style options]   start a VM, with Ferry's monitor, QMP and migration (see ferry run --help)
                   ferry attach --qmp PATH ...       the same for a running QEMU Ferry did not start (see ferry attach --help)
                   ferry serve --image PATH ...      serve a disk image over NBD (see ferry serve --help)
                   ferry demo [--keep]               migrate a writing guest with its disk between two local hosts
                   ferry certs DIR --host NAME ...   make TLS certificates in QEMU's layout (see ferry certs --help)
            """;

    /** The jar's version (its manifest), or the source tree's. */
    static String version() {
        String v = Main.class.getPackage().getImplementationVersion();
        return "ferry version " + (v == null ? "0.1.0-SNAPSHOT" : v);
    }

    public static void main(String[] args) {
        Logs.configure();
        System.exit(run(args));
    }

    /** Runs one command; returns its exit status. */
    static int run(String... args) {
        if (args.length == 0) {
            System.err.print(USAGE);
            return 2;
        }
        List<String> rest = Arrays.asList(args).subList(1, args.length);
        if (args[0].equals("--version") || args[0].equals("-V") || rest.contains("--version")
                || (rest.contains("-version") && args[0].equals("run"))        // QEMU's spelling
                || (rest.contains("-V") && args[0].equals("serve"))) {          // qemu-nbd's
            System.out.println(version());
            return 0;
        }
        int code = switch (args[0]) {
            case "run" -> RunCommand.run(rest);
            case "attach" -> AttachCommand.run(rest);
            case "serve" -> ServeCommand.run(rest, System.out, System.err);
            case "demo" -> DemoCommand.run(rest);
            case "certs" -> CertsCommand.run(rest, System.out, System.err);
            case "-h", "--help", "help" -> {
                System.out.print(USAGE);
                yield 0;
            }
            default -> {
                System.err.println("ferry: unknown command '" + args[0] + "'");
                System.err.print(USAGE);
                yield 2;
            }
        };
        return code;
    }
}
