package ferry.migration.stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.testkit.Tools;
import ferry.tls.CertificateMaker;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ThreadFactory;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The start-up warm-up's rounds: the migration stream's own classes over a loopback connection to itself. */
class StreamWarmUpTest {
    @TempDir static Path pki;
    private static Path dir;

    @BeforeAll
    static void makeCertificates() throws Exception {
        Tools.require("openssl");
        dir = pki.resolve("good");
        CertificateMaker.make(dir, new CertificateMaker.Request(List.of("localhost"), "O=Ferry Tests,CN=source.test", 2, Optional.empty()));
    }

    /** Names the threads it makes and remembers them. */
    private static final class Receivers implements ThreadFactory {
        final List<Thread> made = Collections.synchronizedList(new ArrayList<>());

        @Override
        public Thread newThread(Runnable body) {
            Thread thread = Thread.ofPlatform().name("warm-up-recv-" + (made.size() + 1)).unstarted(body);
            made.add(thread);
            return thread;
        }
    }

    @Test
    void shouldRunEveryRoundThroughTheStreamWithItsReceivingEndOnAThreadOfTheGivenFactory() throws Exception {
        for (TlsEndpoint side : TlsEndpoint.values()) {          // a destination warms up with its server key, a source with its client key
            Receivers receivers = new Receivers();
            TlsCredentials.load("tls0", dir, side, true, false).warmUp(new StreamWarmUp(3 << 20, receivers), 2);
            assertEquals(2, receivers.made.size(), side + ": one receiving thread per round");
            for (Thread thread : receivers.made) {
                assertTrue(thread.getState() == Thread.State.TERMINATED, side + ": " + thread.getName() + " was joined");
            }
        }
    }

    @Test
    void shouldStartNoRoundOnceInterrupted() throws Exception {
        Receivers receivers = new Receivers();
        Thread.currentThread().interrupt();                      // as Supervisor.close() does to tls-warmup-1
        try {
            TlsCredentials.load("tls0", dir, TlsEndpoint.SERVER, true, false).warmUp(new StreamWarmUp(1 << 20, receivers), 5);
        } finally {
            Thread.interrupted();
        }
        assertEquals(0, receivers.made.size());
    }
}
