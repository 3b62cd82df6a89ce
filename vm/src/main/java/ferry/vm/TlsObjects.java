package ferry.vm;

import ferry.linux.Threads;
import ferry.migration.MigrationParameters;
import ferry.migration.stream.StreamSecurity;
import ferry.migration.stream.StreamWarmUp;
import ferry.monitor.MonitorException;
import ferry.tls.Authorizer;
import ferry.tls.AuthzSimple;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import ferry.tls.TlsException;
import ferry.tls.TlsWarmUp;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The {@code -object}s Ferry owns, made real: TLS credentials (loaded at start to fail early, as QEMU
 * does, and again at every use, so that renewed files are picked up by a long-running VM) and
 * authorizers. Turns the migration parameters tls-creds, tls-hostname and tls-authz into the
 * {@link StreamSecurity} of one migration, with QEMU's errors for a wrong id or endpoint.
 *
 * <p>Immutable; any thread.
 */
final class TlsObjects {
    private static final System.Logger LOG = System.getLogger(TlsObjects.class.getName());
    /**
     * The warm-up ({@link TlsWarmUp}, {@link StreamWarmUp}): rounds of a handshake and a migration's frames
     * over a loopback connection to itself. On the 2-core benchmark machine, for a 384 MiB stream after it
     * (both ends in one JVM), the JIT compiled for 1.18 CPU s cold, 0.67 after 4 rounds of 8 MiB, 0.54
     * after 8, 0.24 after 16 (plain TCP: 0.15), for 3.3 CPU s once at start (docs/BENCHMARKS.md "TLS").
     */
    static final int WARM_UP_ROUNDS = 16;
    static final long WARM_UP_BYTES_PER_ROUND = 8L << 20;
    private final Map<String, VmObject.TlsCredsX509> credentials = new LinkedHashMap<>();
    private final Map<String, Authorizer> authorizers = new LinkedHashMap<>();

    private TlsObjects() {}

    /** No TLS objects at all (a VM whose command line Ferry did not parse: {@code ferry attach}). */
    static TlsObjects none() {
        return new TlsObjects();
    }

    static TlsObjects load(List<VmObject> objects) throws TlsException {
        TlsObjects loaded = new TlsObjects();
        for (VmObject object : objects) {
            switch (object) {
                case VmObject.TlsCredsX509 x509 -> {
                    credentials(x509);
                    loaded.credentials.put(x509.id(), x509);
                }
                case VmObject.AuthzSimple simple -> loaded.authorizers.put(simple.id(), new AuthzSimple(simple.id(), simple.identity()));
                case VmObject.AuthzListFile list -> loaded.authorizers.put(list.id(), new AuthzListFile(list.id(), list.file(), list.refresh()));
                case VmObject.Qemu qemu -> { }
            }
        }
        return loaded;
    }

    private static TlsCredentials credentials(VmObject.TlsCredsX509 x509) throws TlsException {
        return TlsCredentials.load(x509.id(), x509.dir(), x509.endpoint(), x509.verifyPeer(), x509.sanityCheck());
    }

    /**
     * Warms the TLS path up with each credential object's own key ({@link TlsCredentials#warmUp}), so that
     * the first migration does not run its handshake and its first hundreds of MiB of AES-GCM while the
     * JIT compiles them. Called once on {@code tls-warmup-1}, whose rounds' receiving ends run on
     * {@code tls-warmup-recv-N} ({@link StreamWarmUp}); a failure is only logged (the migration then runs cold).
     */
    void warmUp() {
        StreamWarmUp round = new StreamWarmUp(WARM_UP_BYTES_PER_ROUND, Threads.platform("tls-warmup-recv"));
        for (VmObject.TlsCredsX509 x509 : credentials.values()) {
            long start = System.nanoTime();
            try {
                credentials(x509).warmUp(round, WARM_UP_ROUNDS);
                LOG.log(System.Logger.Level.DEBUG, "TLS warm-up with tls-creds " + x509.id() + ": "
                        + (System.nanoTime() - start) / 1_000_000 + " ms");
            } catch (TlsException e) {
                LOG.log(System.Logger.Level.WARNING, e.getMessage());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            if (Thread.currentThread().isInterrupted()) {
                return;
            }
        }
    }

    boolean hasCredentials(String id) {
        return credentials.containsKey(id);
    }

    boolean hasAuthorizer(String id) {
        return authorizers.containsKey(id);
    }

    /**
     * The parameters with tls-creds, tls-hostname and tls-authz set where given ({@code ""} unsets), for the
     * monitor's {@code migrate_set_parameter} and QMP's {@code migrate-set-parameters} alike: an id must name
     * an object of its kind (QEMU checks only at use; Ferry says it at once).
     */
    MigrationParameters withTls(MigrationParameters parameters, Optional<String> creds, Optional<String> hostname,
                                Optional<String> authz) throws MonitorException {
        if (creds.isPresent() && !creds.get().isEmpty() && !hasCredentials(creds.get())) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "No TLS credentials with id '" + creds.get()
                    + "' (start with -object tls-creds-x509,id=" + creds.get() + ",dir=DIR,endpoint=server|client)");
        }
        if (authz.isPresent() && !authz.get().isEmpty() && !hasAuthorizer(authz.get())) {
            throw new MonitorException(MonitorException.Kind.REFUSED, "No authorization object with id '" + authz.get()
                    + "' (start with -object authz-simple,id=" + authz.get() + ",identity=DN or authz-list-file)");
        }
        MigrationParameters updated = parameters;
        updated = creds.isPresent() ? updated.withTlsCreds(creds.get()) : updated;
        updated = hostname.isPresent() ? updated.withTlsHostname(hostname.get()) : updated;
        return authz.isPresent() ? updated.withTlsAuthz(authz.get()) : updated;
    }

    /** For {@code migrate}: plain without tls-creds; else client credentials, checked against tls-hostname or the URI's host. */
    StreamSecurity source(MigrationParameters parameters) throws TlsException {
        if (parameters.tlsCreds().isEmpty()) {
            return new StreamSecurity.Plain();
        }
        TlsCredentials creds = use(parameters.tlsCreds(), TlsEndpoint.CLIENT);
        return StreamSecurity.Tls.source(creds, parameters.tlsHostname().isEmpty() ? Optional.empty()
                : Optional.of(parameters.tlsHostname()));
    }

    /** For {@code -incoming tcp:...} and {@code migrate_incoming}: plain without tls-creds; else server credentials and tls-authz. */
    StreamSecurity destination(MigrationParameters parameters) throws TlsException {
        if (parameters.tlsCreds().isEmpty()) {
            if (!parameters.tlsAuthz().isEmpty()) {
                throw new TlsException(TlsException.Kind.AUTHZ, "tls-authz " + parameters.tlsAuthz() + " needs tls-creds: without TLS"
                        + " there is no client certificate to authorize");
            }
            return new StreamSecurity.Plain();
        }
        TlsCredentials creds = use(parameters.tlsCreds(), TlsEndpoint.SERVER);
        Optional<Authorizer> authz = Optional.empty();
        if (!parameters.tlsAuthz().isEmpty()) {
            Authorizer authorizer = authorizers.get(parameters.tlsAuthz());
            if (authorizer == null) {
                throw new TlsException(TlsException.Kind.AUTHZ, "No authorization object with id '" + parameters.tlsAuthz() + "'");
            }
            if (!creds.verifyPeer()) {
                throw new TlsException(TlsException.Kind.AUTHZ, "tls-authz " + authorizer.id() + " needs verify-peer=on on tls-creds "
                        + creds.id() + ": without a client certificate there is no DN to authorize");
            }
            authz = Optional.of(authorizer);
        }
        return StreamSecurity.Tls.destination(creds, authz);
    }

    private TlsCredentials use(String id, TlsEndpoint endpoint) throws TlsException {
        VmObject.TlsCredsX509 x509 = credentials.get(id);
        if (x509 == null) {
            throw new TlsException(TlsException.Kind.FILE, "No TLS credentials with id '" + id + "'");
        }
        if (x509.endpoint() != endpoint) {
            throw new TlsException(TlsException.Kind.UNSUPPORTED, "Expecting TLS credentials with a " + endpoint.qemuName()
                    + " endpoint (tls-creds " + id + " has endpoint=" + x509.endpoint().qemuName() + ")");
        }
        return credentials(x509);
    }
}
