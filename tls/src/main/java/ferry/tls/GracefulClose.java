package ferry.tls;

import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;

/**
 * Closes a connection after a refusal so that the peer reads the refusal. Closing a socket whose
 * peer's bytes are still unread makes Linux answer with a reset, and a reset can overtake what was sent
 * just before it: the peer then sees "connection reset" or "broken pipe" instead of the TLS alert or
 * the ERROR frame that said why. So: shut our output down (a FIN after the refusal), read and discard
 * whatever the peer still sends, never parsing it, until it closes or {@code timeoutMs} passes, then close.
 *
 * <p>Blocks the calling thread for at most about {@code timeoutMs}.
 */
public final class GracefulClose {
    private static final int MAX_DISCARD_BYTES = 4 << 20;

    private GracefulClose() {}

    public static void close(Socket raw, int timeoutMs) {
        try (raw) {
            if (raw.isClosed()) {
                return;
            }
            raw.shutdownOutput();
            raw.setSoTimeout(timeoutMs);
            InputStream in = raw.getInputStream();
            byte[] discard = new byte[16 << 10];
            long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
            int total = 0;
            int n;
            while (total < MAX_DISCARD_BYTES && System.nanoTime() < deadline && (n = in.read(discard)) >= 0) {
                total += n;
            }
        } catch (IOException e) {
            // a timeout, a reset, an already closed socket: the close below is all that is left to do
        }
    }
}
