package ferry.cli;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.image.ImageLock;
import ferry.image.Images;
import ferry.nbd.NbdExport;
import ferry.nbd.NbdServer;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsException;
import ferry.vm.LogDir;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;

/**
 * {@code ferry serve --image PATH [--format raw|qcow2] (--socket PATH | --listen HOST:PORT) [--export NAME]
 * [--read-only] [--tls-creds DIR | --object tls-creds-x509,id=ID,dir=DIR,endpoint=server[,verify-peer=on|off]
 * --tls-creds ID]}: serves one image over NBD in the foreground until SIGINT/SIGTERM, then flushes and
 * closes it. Prints one line when ready, with the NBD URI. Bad options: one line on stderr, exit 2.
 * Value options also take the {@code --name=value} form.
 *
 * <p>TLS as qemu-nbd takes it: {@code --tls-creds ID} names an {@code --object tls-creds-x509} (QEMU's
 * syntax, commas in values doubled), whose directory holds QEMU's file names (ca-cert.pem,
 * server-cert.pem, server-key.pem); {@code --tls-creds DIR} without an object is the short form with
 * verify-peer=on. Every client must then STARTTLS (the URIs become {@code nbds+unix://}, {@code nbds://}).
 *
 * <p>qemu-nbd's options are taken beside Ferry's: {@code ferry serve [-k PATH] [-x NAME] [-f FORMAT] [-r] [-t]
 * [-e N] [--fork] [--pid-file FILE] FILE}, and their long forms ({@code --socket}, {@code --export-name},
 * {@code --format}, {@code --read-only}, {@code --persistent}, {@code --shared}). Ferry always serves until
 * it is signalled, so {@code -t} changes nothing; {@code -e N} allows N clients at once (Ferry's default: no
 * limit; qemu-nbd's: 1).
 *
 * <p>The image is locked as QEMU locks it ({@link ImageLock}): qemu-img and qemu-io refuse to write an image
 * Ferry serves, and Ferry refuses one that QEMU (or a writer of any kind that honours QEMU's locks) holds.
 *
 * <p>Runs on the main thread, which also stops the server: SIGTERM, SIGINT and SIGHUP only wake it
 * ({@link Signals}), so the exit status after one of them is 0, as qemu-nbd's.
 */
public final class ServeCommand {
    static final String USAGE = "usage: ferry serve --image PATH [--format raw|qcow2] (--socket PATH | --listen HOST:PORT)"
            + " [--export NAME] [--read-only]\n"
            + "         [-e N|--shared N] [--fork] [--pid-file FILE] [-t|--persistent]\n"
            + "   or: ferry serve -k PATH [-x NAME] [-f raw|qcow2] [-r] [-e N] [-t] [--fork] [--pid-file FILE] FILE   (qemu-nbd's options)\n"
            + "         [--tls-creds DIR | --object tls-creds-x509,id=ID,dir=DIR,endpoint=server[,verify-peer=on|off] --tls-creds ID]";

    /** TLS settings: QEMU's tls-creds-x509 directory and whether client certificates are required. */
    record Tls(Path dir, boolean verifyPeer) {}

    /** The parsed command line. Exactly one of {@code socket} and {@code host}/{@code port} is set; {@code tls} may be null. */
    record Options(Path image, String format, Path socket, String host, int port, String export, boolean readOnly, Tls tls,
            Process process) {
        String uri() {
            String s = tls == null ? "" : "s";
            return socket != null
                    ? "nbd" + s + "+unix:///" + export + "?socket=" + socket
                    : "nbd" + s + "://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port + "/" + export;
        }

        Options withPort(int bound) {
            return new Options(image, format, socket, host, bound, export, readOnly, tls, process);
        }
    }

    /** How the server process runs: qemu-nbd's -e, --fork and --pid-file. {@code maxConnections} 0: no limit. */
    record Process(int maxConnections, boolean fork, Optional<Path> pidFile) {}

    /** A command line that cannot be run; its message is the one line the user sees. */
    static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }

    private ServeCommand() {}

    static Options parse(List<String> args) throws UsageException {
        Path image = null;
        Path socket = null;
        String format = "raw";
        String listen = null;
        String export = "";
        boolean readOnly = false;
        int maxConnections = 0;
        boolean fork = false;
        Path pidFile = null;
        String tlsCreds = null;
        List<String> objects = new ArrayList<>();
        for (int i = 0; i < args.size(); i++) {
            String arg = args.get(i);
            String inline = null;
            if (arg.startsWith("--") && arg.indexOf('=') > 2) {   // --name=value
                inline = arg.substring(arg.indexOf('=') + 1);
                arg = arg.substring(0, arg.indexOf('='));
            }
            arg = QEMU_NBD_NAMES.getOrDefault(arg, arg);
            switch (arg) {
                case "--read-only", "--persistent", "--fork" -> {
                    if (inline != null) {
                        throw new UsageException("ferry serve: " + arg + " takes no value");
                    }
                    switch (arg) {
                        case "--read-only" -> readOnly = true;
                        case "--fork" -> fork = true;
                        default -> { }   // -t: Ferry always serves until it is signalled
                    }
                }
                case "--shared", "--pid-file" -> {
                    if (inline == null && i + 1 >= args.size()) {
                        throw new UsageException("ferry serve: " + arg + " needs a value");
                    }
                    String value = inline != null ? inline : args.get(++i);
                    if (arg.equals("--pid-file")) {
                        pidFile = Path.of(value);
                    } else {
                        maxConnections = connectionLimit(value);
                    }
                }
                case "--image", "--format", "--socket", "--listen", "--export", "--tls-creds", "--object" -> {
                    if (inline == null && i + 1 >= args.size()) {
                        throw new UsageException("ferry serve: " + arg + " needs a value");
                    }
                    String value = inline != null ? inline : args.get(++i);
                    switch (arg) {
                        case "--image" -> image = Path.of(value);
                        case "--format" -> format = value;
                        case "--socket" -> socket = Path.of(value);
                        case "--listen" -> listen = value;
                        case "--tls-creds" -> tlsCreds = value;
                        case "--object" -> objects.add(value);
                        default -> export = value;
                    }
                }
                default -> {
                    if (arg.startsWith("-") || arg.isEmpty()) {
                        throw new UsageException("ferry serve: unknown option: " + arg);
                    }
                    if (image != null) {   // qemu-nbd's FILE
                        throw new UsageException("ferry serve: one image only: " + image + " and " + arg);
                    }
                    image = Path.of(arg);
                }
            }
        }
        Tls tls = tls(tlsCreds, objects);
        if (image == null) {
            throw new UsageException("ferry serve: --image is required (or qemu-nbd's FILE argument)");
        }
        if ((socket == null) == (listen == null)) {
            throw new UsageException("ferry serve: give exactly one of --socket PATH and --listen HOST:PORT");
        }
        if (!format.equals("raw") && !format.equals("qcow2")) {
            throw new UsageException("ferry serve: unsupported --format: " + format + " (supported: raw, qcow2)");
        }
        if (export.length() > 4096 || export.indexOf('\0') >= 0) {
            throw new UsageException("ferry serve: bad --export name");
        }
        Process process = new Process(maxConnections, fork, Optional.ofNullable(pidFile));
        if (listen == null) {
            return new Options(image, format, socket, null, -1, export, readOnly, tls, process);
        }
        HostPort tcp = HostPort.parse(listen);
        return new Options(image, format, null, tcp.host(), tcp.port(), export, readOnly, tls, process);
    }

    /** qemu-nbd's option names, mapped to Ferry's. */
    private static final Map<String, String> QEMU_NBD_NAMES = Map.of(
            "-k", "--socket", "-x", "--export", "--export-name", "--export", "-f", "--format", "-r", "--read-only",
            "-t", "--persistent", "-e", "--shared");

    /** qemu-nbd's {@code -e N}: 0 is no limit. */
    private static int connectionLimit(String value) throws UsageException {
        try {
            int n = Integer.parseInt(value);
            if (n >= 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // falls through to the one message
        }
        throw new UsageException("ferry serve: --shared needs a number of clients (0: no limit), got: " + value);
    }

    /** {@code --listen}'s value. */
    private record HostPort(String host, int port) {
        /** HOST:PORT, [V6]:PORT too. */
        static HostPort parse(String listen) throws UsageException {
            int colon = listen.lastIndexOf(':');
            String host = colon <= 0 ? "" : listen.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            int port;
            try {
                port = Integer.parseInt(listen.substring(colon + 1));
            } catch (NumberFormatException e) {
                port = -1;
            }
            if (host.isEmpty() || port < 0 || port > 65535) {
                throw new UsageException("ferry serve: --listen needs HOST:PORT, got: " + listen);
            }
            return new HostPort(host, port);
        }
    }

    /**
     * The TLS settings of {@code --tls-creds VALUE} and the {@code --object}s: VALUE is the id of a
     * tls-creds-x509 object when objects are given, else a directory (verify-peer=on). Null without
     * --tls-creds. An object that --tls-creds does not use is an error: it looks like TLS but is not.
     */
    static Tls tls(String tlsCreds, List<String> objects) throws UsageException {
        Map<String, Tls> byId = new LinkedHashMap<>();
        for (String spec : objects) {
            Map<String, String> props = keyValues(spec);
            String type = props.remove("qom-type");
            if (!"tls-creds-x509".equals(type)) {
                throw new UsageException("ferry serve: unsupported --object type: " + type + " (ferry serve knows tls-creds-x509)");
            }
            String id = props.remove("id");
            String dir = props.remove("dir");
            String endpoint = props.remove("endpoint");
            String verify = props.remove("verify-peer");
            if (id == null || id.isEmpty() || dir == null || dir.isEmpty()) {
                throw new UsageException("ferry serve: --object tls-creds-x509 needs id=ID and dir=DIR: " + spec);
            }
            if (!props.isEmpty()) {
                throw new UsageException("ferry serve: --object tls-creds-x509,id=" + id + ": unsupported properties: " + props.keySet()
                        + " (known: id, dir, endpoint, verify-peer)");
            }
            if (!"server".equals(endpoint)) {
                throw new UsageException("ferry serve: --object tls-creds-x509,id=" + id + " needs endpoint=server"
                        + (endpoint == null ? " (QEMU's default is client)" : ", got endpoint=" + endpoint));
            }
            if (byId.put(id, new Tls(Path.of(dir), onOff(verify, "verify-peer", id))) != null) {
                throw new UsageException("ferry serve: two --object with id=" + id);
            }
        }
        if (tlsCreds == null) {
            if (!byId.isEmpty()) {
                throw new UsageException("ferry serve: --object id=" + byId.keySet().iterator().next()
                        + " is not used: add --tls-creds " + byId.keySet().iterator().next() + " to serve with TLS");
            }
            return null;
        }
        if (tlsCreds.isEmpty()) {
            throw new UsageException("ferry serve: --tls-creds needs a directory or the id of an --object tls-creds-x509");
        }
        if (byId.isEmpty()) {
            return new Tls(Path.of(tlsCreds), true);
        }
        Tls tls = byId.get(tlsCreds);
        if (tls == null || byId.size() > 1) {
            throw new UsageException("ferry serve: --tls-creds " + tlsCreds + (tls == null ? " names no --object: ids are " : " leaves unused objects: ids are ")
                    + byId.keySet());
        }
        return tls;
    }

    /**
     * QEMU's {@code -object} syntax: {@code TYPE,key=value,...} (or {@code qom-type=TYPE,...}); a
     * comma inside a value is written twice. Keys are returned in order, the type as {@code qom-type}.
     */
    static Map<String, String> keyValues(String spec) throws UsageException {
        List<String> parts = new ArrayList<>();
        StringBuilder part = new StringBuilder();
        for (int i = 0; i < spec.length(); i++) {
            char c = spec.charAt(i);
            if (c == ',' && i + 1 < spec.length() && spec.charAt(i + 1) == ',') {
                part.append(',');
                i++;
            } else if (c == ',') {
                parts.add(part.toString());
                part.setLength(0);
            } else {
                part.append(c);
            }
        }
        parts.add(part.toString());
        Map<String, String> out = new LinkedHashMap<>();
        for (int i = 0; i < parts.size(); i++) {
            String p = parts.get(i);
            int eq = p.indexOf('=');
            String key = i == 0 && eq < 0 ? "qom-type" : eq < 0 ? p : p.substring(0, eq);
            String value = i == 0 && eq < 0 ? p : eq < 0 ? null : p.substring(eq + 1);
            if (value == null || key.isEmpty()) {
                throw new UsageException("ferry serve: --object: expected key=value, got '" + p + "' in: " + spec);
            }
            if (out.put(key, value) != null) {
                throw new UsageException("ferry serve: --object: " + key + " given twice in: " + spec);
            }
        }
        return out;
    }

    /** QEMU's booleans: on/off, yes/no, true/false; absent means on (QEMU's verify-peer default). */
    private static boolean onOff(String value, String key, String id) throws UsageException {
        if (value == null) {
            return true;
        }
        return switch (value) {
            case "on", "yes", "true" -> true;
            case "off", "no", "false" -> false;
            default -> throw new UsageException("ferry serve: --object tls-creds-x509,id=" + id + ": " + key + " must be on or off, got " + value);
        };
    }

    /** Runs the command; returns the exit code (after a signal, the JVM exits from the hook's side). */
    public static int run(List<String> args, PrintStream out, PrintStream err) {
        if (args.contains("--help") || args.contains("-h")) {
            out.println(USAGE);
            return 0;
        }
        Options options;
        try {
            options = parse(args);
        } catch (UsageException e) {
            err.println(e.getMessage());
            err.println(USAGE);
            return 2;
        }
        if (options.process().fork() && !Daemon.isChild()) {
            return fork(options, err);
        }
        oneLineLogs();
        TlsCredentials credentials;
        try {
            credentials = options.tls() == null ? null
                    : TlsCredentials.load("serve", options.tls().dir(), ferry.tls.TlsEndpoint.SERVER, options.tls().verifyPeer(), true);
        } catch (TlsException e) {
            err.println("ferry serve: " + e.getMessage());
            return 1;
        }
        ImageLock lock;
        try {
            lock = ImageLock.forServing(options.image(), options.readOnly());   // before open: QEMU's order
        } catch (ImageException e) {
            err.println("ferry serve: " + e.getMessage());
            return 1;
        }
        BlockImage image;
        try {
            image = Images.open(options.image(), options.format(), options.readOnly());
        } catch (ImageException e) {
            err.println("ferry serve: cannot open image: " + e.getMessage());
            release(lock, err);
            return 1;
        }
        List<NbdExport> exports = List.of(new NbdExport(options.export(), image, options.readOnly()));
        NbdServer server = options.socket() != null
                ? NbdServer.unix(options.socket(), exports)
                : NbdServer.tcp(options.host(), options.port(), exports);
        if (credentials != null) {
            server.tls(credentials);
        }
        server.maxConnections(options.process().maxConnections());
        CountDownLatch signalled = new CountDownLatch(1);
        Signals.onTermination(why -> {
            err.println("ferry serve: " + why);
            signalled.countDown();
        });
        try {
            server.start();
            if (options.process().pidFile().isPresent()) {
                Files.writeString(options.process().pidFile().get(), ProcessHandle.current().pid() + "\n");
            }
        } catch (IOException e) {
            err.println("ferry serve: " + e.getMessage());
            closeQuietly(image, err);
            release(lock, err);
            return 1;
        }
        Options bound = options.socket() != null ? options : options.withPort(server.port());
        out.println("ferry serve: serving " + image.describe() + " size=" + image.size()
                + (options.readOnly() ? " read-only" : "") + " at " + bound.uri()
                + (credentials == null ? "" : " with TLS " + credentials.describe()));
        out.flush();
        if (Daemon.isChild()) {
            Daemon.ready();
        }
        try {
            signalled.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        stop(server, image, err);
        release(lock, err);   // after the flush: nobody may write the image before our last write is down
        options.process().pidFile().ifPresent(file -> deleteQuietly(file, err));
        return 0;
    }

    /** {@code --fork}: the same command again, detached ({@link Daemon}); returns once it serves. */
    private static int fork(Options options, PrintStream err) {
        Path log = LogDir.of(Optional.empty()).resolve("serve-" + options.image().getFileName() + ".ferry.log");
        try {
            return Daemon.detach("serve", log);
        } catch (IOException e) {
            err.println("ferry serve: --fork failed: " + e.getMessage());
            return 1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        }
    }

    private static void release(ImageLock lock, PrintStream err) {
        try {
            lock.close();
        } catch (ImageException e) {
            err.println("ferry serve: " + e.getMessage());
        }
    }

    /** qemu-nbd removes its --pid-file on exit too. */
    private static void deleteQuietly(Path file, PrintStream err) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            err.println("ferry serve: cannot remove the pid file " + file + ": " + e.getMessage());
        }
    }

    private static void oneLineLogs() {
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            // One line per log record (connection open/close), not java.util.logging's two.
            System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT %4$s %5$s%6$s%n");
        }
    }

    private static void stop(NbdServer server, BlockImage image, PrintStream err) {
        try {
            server.close();
        } catch (IOException e) {
            err.println("ferry serve: closing the server failed: " + e.getMessage());
        }
        try {
            if (!image.readOnly()) {
                image.flush();
            }
            image.close();
            err.println("ferry serve: stopped, image flushed and closed: " + image.describe());
        } catch (ImageException e) {
            err.println("ferry serve: flushing the image failed: " + e.getMessage());
        }
    }

    private static void closeQuietly(BlockImage image, PrintStream err) {
        try {
            image.close();
        } catch (ImageException e) {
            err.println("ferry serve: closing the image failed: " + e.getMessage());
        }
    }
}
