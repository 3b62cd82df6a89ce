package ferry.tls;

import java.io.IOException;
import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

/**
 * Gets the JIT to compile the TLS path before the first migration needs it: rounds of one TLS 1.3
 * handshake with client certificate followed by data, run by the caller's {@link Round} with a client and
 * a server engine of a throwaway context built from this host's own key and certificate. The context
 * trusts any peer: it serves only the warm-up, whose two ends are this very JVM.
 *
 * <p>Why: a migration is the first TLS a Ferry JVM does. Cold, the JIT compiled JSSE and AES-GCM during
 * the migration: on the 2-core benchmark machine about half of the CPU that TLS added to a migration
 * (1 s of JIT compiler threads per JVM, and the cipher run interpreted meanwhile), docs/BENCHMARKS.md
 * "TLS". What a warm-up must get right, from the compiler logs:
 * <ul>
 *   <li>the same classes as a migration, down to the channel under TLS: C2 inlines what the profile
 *       shows, and one new receiver class (a pipe in the warm-up, a socket in the migration) made the
 *       record path deoptimize and compile again during the migration;
 *   <li>enough records: C2 takes over a method after some 5,000 calls, and JSSE calls its cipher once
 *       per 16 KiB record, so a few MiB leave the record path half-compiled;
 *   <li>several rounds, each with a handshake: a profile of bulk data alone made the first handshake of
 *       the real migration deoptimize the record decryption (its ChangeCipherSpec branch);
 *   <li>a pause between rounds until the compiler queue is empty ({@link #JIT_QUIET_MS}): while it is
 *       long, HotSpot raises its thresholds, and the record path was compiled only once the migration
 *       had emptied the queue.
 * </ul>
 *
 * <p>Runs on the caller's thread (the round may use more, its own); an interrupt ends it after the
 * current round.
 */
public final class TlsWarmUp {
    /** The JIT counts as quiet when its total compilation time has not grown for this long. */
    static final long JIT_QUIET_MS = 100;
    /** The longest wait for a quiet JIT between two rounds. */
    static final long JIT_WAIT_MAX_MS = 2_000;

    /** One round: connects the two engines, runs their handshake, and sends data through them. */
    public interface Round {
        void run(SSLEngine client, SSLEngine server) throws IOException, InterruptedException;
    }

    private TlsWarmUp() {}

    static void run(List<X509Certificate> chain, PrivateKey key, Round round, int rounds)
            throws GeneralSecurityException, IOException, InterruptedException {
        SSLContext context = SSLContext.getInstance(TlsCredentials.PROTOCOL);
        KeyManagerFactory keys = KeyManagerFactory.getInstance("SunX509");     // no usage checks: one pair plays both ends
        keys.init(OwnKeyStore.of(chain, key), OwnKeyStore.PASSWORD);
        context.init(keys.getKeyManagers(), new TrustManager[] {new TrustAnything()}, new SecureRandom());
        for (int i = 0; i < rounds && !Thread.currentThread().isInterrupted(); i++) {
            round.run(engine(context, true), engine(context, false));
            awaitQuietJit();
        }
    }

    /** Waits until the JIT has compiled what the last round queued: see the class comment. */
    private static void awaitQuietJit() throws InterruptedException {
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        if (jit == null || !jit.isCompilationTimeMonitoringSupported()) {
            return;
        }
        long deadline = System.nanoTime() + JIT_WAIT_MAX_MS * 1_000_000;
        long last = jit.getTotalCompilationTime();
        long quietSince = System.nanoTime();
        while (System.nanoTime() - quietSince < JIT_QUIET_MS * 1_000_000 && System.nanoTime() < deadline) {
            Thread.sleep(20);
            long now = jit.getTotalCompilationTime();
            if (now != last) {
                last = now;
                quietSince = System.nanoTime();
            }
        }
    }

    private static SSLEngine engine(SSLContext context, boolean client) {
        SSLEngine engine = context.createSSLEngine("warm-up.invalid", 0);
        SSLParameters parameters = engine.getSSLParameters();
        parameters.setProtocols(new String[] {TlsCredentials.PROTOCOL});
        parameters.setNeedClientAuth(!client);
        engine.setSSLParameters(parameters);
        engine.setUseClientMode(client);
        return engine;
    }

    /** Only for the warm-up's engines, whose peer is this very JVM. */
    private static final class TrustAnything implements X509TrustManager {
        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType) {
            // warm-up only: the peer is this very JVM
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType) {
            // warm-up only: the peer is this very JVM
        }

        @Override
        public X509Certificate[] getAcceptedIssuers() {
            return new X509Certificate[0];
        }
    }
}
