package ferry.cli;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.image.Images;
import ferry.linux.Threads;
import ferry.nbd.NbdExport;
import ferry.nbd.NbdServer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;

/**
 * {@code ferry serve --image PATH [--format raw|qcow2] (--socket PATH | --listen HOST:PORT) [--export NAME]
 * [--read-only]}: serves one image over NBD in the foreground until SIGINT/SIGTERM, then flushes and
 * closes it. Prints one line when ready, with the NBD URI. Bad options: one line on stderr, exit 2.
 * Runs on the main thread; the server's threads and the shutdown hook are its own.
 */
public final class ServeCommand {
    static final String USAGE = "usage: ferry serve --image PATH [--format raw|qcow2] (--socket PATH | --listen HOST:PORT)"
            + " [--export NAME] [--read-only]";

    /** The parsed command line. Exactly one of {@code socket} and {@code host}/{@code port} is set. */
    record Options(Path image, String format, Path socket, String host, int port, String export, boolean readOnly) {
        String uri() {
            return socket != null
                    ? "nbd+unix:///" + export + "?socket=" + socket
                    : "nbd://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port + "/" + export;
        }
    }

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
        for (int i = 0; i < args.size(); i++) {
            String arg = args.get(i);
            switch (arg) {
                case "--read-only" -> readOnly = true;
                case "--image", "--format", "--socket", "--listen", "--export" -> {
                    if (i + 1 >= args.size()) {
                        throw new UsageException("ferry serve: " + arg + " needs a value");
                    }
                    String value = args.get(++i);
                    switch (arg) {
                        case "--image" -> image = Path.of(value);
                        case "--format" -> format = value;
                        case "--socket" -> socket = Path.of(value);
                        case "--listen" -> listen = value;
                        default -> export = value;
                    }
                }
                default -> throw new UsageException("ferry serve: unknown option: " + arg);
            }
        }
        if (image == null) {
            throw new UsageException("ferry serve: --image is required");
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
        if (listen == null) {
            return new Options(image, format, socket, null, -1, export, readOnly);
        }
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
        return new Options(image, format, null, host, port, export, readOnly);
    }

    /** Runs the command; returns the exit code (after a signal, the JVM exits from the hook's side). */
    public static int run(List<String> args, PrintStream out, PrintStream err) {
        Options options;
        try {
            options = parse(args);
        } catch (UsageException e) {
            err.println(e.getMessage());
            err.println(USAGE);
            return 2;
        }
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            // One line per log record (connection open/close), not java.util.logging's two.
            System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT %4$s %5$s%6$s%n");
        }
        BlockImage image;
        try {
            image = Images.open(options.image(), options.format(), options.readOnly());
        } catch (ImageException e) {
            err.println("ferry serve: cannot open image: " + e.getMessage());
            return 1;
        }
        List<NbdExport> exports = List.of(new NbdExport(options.export(), image, options.readOnly()));
        NbdServer server = options.socket() != null
                ? NbdServer.unix(options.socket(), exports)
                : NbdServer.tcp(options.host(), options.port(), exports);
        try {
            server.start();
        } catch (IOException e) {
            err.println("ferry serve: " + e.getMessage());
            closeQuietly(image, err);
            return 1;
        }
        Options bound = options.socket() != null ? options
                : new Options(options.image(), options.format(), null, options.host(), server.port(), options.export(), options.readOnly());
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(Threads.platform("ferry-serve-stop").newThread(() -> {
            stop(server, image, err);
            stopped.countDown();
        }));
        out.println("ferry serve: serving " + image.describe() + " size=" + image.size()
                + (options.readOnly() ? " read-only" : "") + " at " + bound.uri());
        out.flush();
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return 0;
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
