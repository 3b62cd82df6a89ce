package ferry.monitor;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * One monitor client: banner, prompt, read a line, parse, run, print, prompt again, until
 * end-of-file or the server closes the connection. A partial line at end-of-file is dropped, not
 * run (a client that drops mid-line must not half-type {@code quit}). Runs on its own
 * {@code monitor-client-N} thread, started by {@link MonitorServer}.
 */
final class MonitorSession implements MonitorOutput {
    static final int MAX_LINE_LENGTH = 4096;   // bytes; longer lines are refused whole

    private static final System.Logger LOG = System.getLogger(MonitorSession.class.getName());

    private final String client;
    private final InputStream in;
    private final OutputStream out;
    private final MonitorHandler handler;
    private volatile boolean open = true;
    private volatile boolean closing;

    MonitorSession(String client, InputStream in, OutputStream out, MonitorHandler handler) {
        this.client = client;
        this.in = new BufferedInputStream(in);
        this.out = out;
        this.handler = handler;
    }

    /** Serves the client until end-of-file; returns normally on EOF or when the server is closing. */
    void run() {
        write(MonitorServer.BANNER + "\n" + MonitorServer.PROMPT);
        try {
            while (true) {
                String line = readLine();
                if (line == null) {
                    LOG.log(System.Logger.Level.DEBUG, "monitor client left: client={0}", client);
                    return;
                }
                if (!line.isBlank()) {
                    execute(line);
                }
                write(MonitorServer.PROMPT);
            }
        } catch (IOException e) {
            if (!closing) {
                LOG.log(System.Logger.Level.WARNING, "monitor read failed: client=" + client, e);
            }
        } finally {
            open = false;
        }
    }

    /** Marks the session as ending because the server closes, so the read error that follows is expected. */
    void closing() {
        closing = true;
        open = false;
    }

    private void execute(String line) {
        try {
            handler.execute(MonitorParser.parse(line), this);
        } catch (MonitorException e) {
            println(e.getMessage());
        } catch (Throwable e) {   // a handler bug must not kill the monitor: one line to the client, the rest to the log
            LOG.log(System.Logger.Level.ERROR, "monitor command failed: client=" + client + " line=" + line, e);
            String detail = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
            println("Error: " + detail.lines().findFirst().orElse(e.getClass().getSimpleName()));
            if (e instanceof VirtualMachineError fatal) {
                throw fatal;
            }
        }
    }

    /**
     * The next line without its terminator ({@code \n} or {@code \r\n}), or null at end-of-file,
     * a trailing partial line included. A line longer than {@link #MAX_LINE_LENGTH} is skipped
     * with an error to the client.
     */
    private String readLine() throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream(128);
        boolean tooLong = false;
        while (true) {
            int b = in.read();
            if (b < 0) {
                return null;
            }
            if (b == '\n') {
                break;
            }
            if (line.size() < MAX_LINE_LENGTH) {
                line.write(b);
            } else {
                tooLong = true;
            }
        }
        if (tooLong) {
            println("Error: line longer than " + MAX_LINE_LENGTH + " bytes, ignored");
            return "";
        }
        String text = line.toString(StandardCharsets.UTF_8);
        return text.endsWith("\r") ? text.substring(0, text.length() - 1) : text;
    }

    @Override
    public void println(String text) {
        if (!text.isEmpty()) {
            write(text.endsWith("\n") ? text : text + "\n");
        }
    }

    @Override
    public boolean open() {
        return open;
    }

    private synchronized void write(String text) {
        if (!open) {
            return;
        }
        try {
            out.write(text.getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            open = false;
            if (!closing) {
                LOG.log(System.Logger.Level.INFO, "monitor client gone, dropping its output: client={0}: {1}",
                        client, e.getMessage());
            }
        }
    }
}
