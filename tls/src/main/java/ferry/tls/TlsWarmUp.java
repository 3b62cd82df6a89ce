package ferry.tls;

import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

/**
 * Gets the JIT to compile JSSE before the first migration needs it: one TLS 1.3 handshake with client
 * certificate and {@code bytes} of application data between two SSLEngines in memory, built from this
 * host's own key and certificate. Nothing touches the network; the throwaway context trusts anything
 * and serves nothing else.
 *
 * <p>Why: a migration is the first TLS a Ferry JVM does, and a cold JVM runs the handshake and
 * AES-GCM interpreted at first. On the 2-core benchmark machine (bench/migration.sh --tls, two TCG
 * guests busy) a cold first handshake took 1.8 s instead of 0.09 s warm, and the bulk pass of 256 MiB
 * ran at half the 1 Gbit/s line rate with 19 CPU s per GiB in the two JVMs (plain: 8.6):
 * docs/BENCHMARKS.md "TLS". Warming up at start moves that cost out of the migration.
 *
 * <p>Runs on the caller's thread (the supervisor starts {@code tls-warmup} for it); a few CPU seconds once.
 */
final class TlsWarmUp {
    private static final int MAX_HANDSHAKE_ROUNDS = 100;

    private TlsWarmUp() {}

    static void run(List<X509Certificate> chain, PrivateKey key, long bytes) throws GeneralSecurityException, SSLException {
        SSLContext context = SSLContext.getInstance(TlsCredentials.PROTOCOL);
        KeyManagerFactory keys = KeyManagerFactory.getInstance("SunX509");     // no usage checks: one pair plays both ends
        keys.init(OwnKeyStore.of(chain, key), OwnKeyStore.PASSWORD);
        context.init(keys.getKeyManagers(), new TrustManager[] {new TrustAnything()}, new SecureRandom());
        SSLEngine client = engine(context, true);
        SSLEngine server = engine(context, false);
        int packet = Math.max(client.getSession().getPacketBufferSize(), server.getSession().getPacketBufferSize());
        int app = Math.max(client.getSession().getApplicationBufferSize(), server.getSession().getApplicationBufferSize());
        ByteBuffer toServer = ByteBuffer.allocate(packet);
        ByteBuffer toClient = ByteBuffer.allocate(packet);
        ByteBuffer clientApp = ByteBuffer.allocate(app);
        ByteBuffer serverApp = ByteBuffer.allocate(app);
        ByteBuffer nothing = ByteBuffer.allocate(0);
        client.beginHandshake();
        server.beginHandshake();
        for (int round = 0; handshaking(client) || handshaking(server); round++) {
            if (round == MAX_HANDSHAKE_ROUNDS) {
                throw new SSLException("the warm-up handshake did not finish in " + MAX_HANDSHAKE_ROUNDS + " rounds");
            }
            step(client, nothing, toServer, server, serverApp);
            step(server, nothing, toClient, client, clientApp);
        }
        ByteBuffer data = ByteBuffer.allocate(Math.min(app, 16 << 10));
        for (long sent = 0; sent < bytes && !Thread.currentThread().isInterrupted(); sent += data.capacity()) {
            data.clear();
            step(client, data, toServer, server, serverApp);
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

    private static boolean handshaking(SSLEngine engine) {
        SSLEngineResult.HandshakeStatus status = engine.getHandshakeStatus();
        return status != SSLEngineResult.HandshakeStatus.NOT_HANDSHAKING && status != SSLEngineResult.HandshakeStatus.FINISHED;
    }

    /** {@code from} wraps {@code data} (or handshake messages) into {@code wire}; {@code to} unwraps all of it. */
    private static void step(SSLEngine from, ByteBuffer data, ByteBuffer wire, SSLEngine to, ByteBuffer app) throws SSLException {
        wire.clear();
        from.wrap(data, wire);
        tasks(from);
        wire.flip();
        while (wire.hasRemaining()) {
            app.clear();
            SSLEngineResult result = to.unwrap(wire, app);
            tasks(to);
            if (result.getStatus() != SSLEngineResult.Status.OK || result.bytesConsumed() == 0) {
                break;
            }
        }
    }

    private static void tasks(SSLEngine engine) {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null) {
            task.run();
        }
    }

    /** Only for the two in-memory engines above. */
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
