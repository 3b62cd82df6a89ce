package ferry.monitor;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * A client for a Ferry (or QEMU) human monitor on a unix socket: sends one command line and
 * returns what was printed before the next prompt. Used by {@code ferry demo} and the VM tests,
 * the way an admin's script drives {@code socat - UNIX-CONNECT:monitor.sock}.
 *
 * <p>Threads: one caller at a time.
 */
public final class MonitorClient implements AutoCloseable {
    private final SocketChannel channel;
    private final ByteBuffer buffer = ByteBuffer.allocate(64 << 10);
    private final StringBuilder pending = new StringBuilder();
    private final String prompt;

    private MonitorClient(SocketChannel channel, String prompt) {
        this.channel = channel;
        this.prompt = prompt;
    }

    /** Connects, retrying until the socket exists or {@code timeoutMs} passed, and reads the banner. */
    public static MonitorClient connect(Path socket, long timeoutMs) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            try {
                SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
                try {
                    channel.connect(UnixDomainSocketAddress.of(socket));
                } catch (IOException e) {
                    channel.close();
                    throw e;
                }
                MonitorClient client = new MonitorClient(channel, MonitorServer.PROMPT);
                client.readUntilPrompt();
                return client;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw new IOException("cannot connect to the monitor at " + socket + " within " + timeoutMs + " ms: "
                            + e.getMessage(), e);
                }
                Thread.sleep(100);
            }
        }
    }

    /** Runs one command; returns its output without the trailing prompt. */
    public String command(String line) throws IOException {
        ByteBuffer out = ByteBuffer.wrap((line + "\n").getBytes(StandardCharsets.UTF_8));
        while (out.hasRemaining()) {
            channel.write(out);
        }
        return readUntilPrompt();
    }

    private String readUntilPrompt() throws IOException {
        while (true) {
            int at = pending.indexOf(prompt);
            if (at >= 0) {
                String text = pending.substring(0, at);
                pending.delete(0, at + prompt.length());
                return text.endsWith("\n") ? text.substring(0, text.length() - 1) : text;
            }
            buffer.clear();
            if (channel.read(buffer) < 0) {
                throw new IOException("the monitor closed the connection; it printed: " + pending);
            }
            buffer.flip();
            pending.append(StandardCharsets.UTF_8.decode(buffer));
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
