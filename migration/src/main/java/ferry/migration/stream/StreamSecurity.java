package ferry.migration.stream;

import ferry.tls.Authorizer;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import java.util.Objects;
import java.util.Optional;

/**
 * How the one migration stream is carried (docs/migration-protocol.md "Transport"): plain TCP, the
 * seed's workflow, or TLS 1.3 with QEMU's migration parameters {@code tls-creds}, {@code tls-hostname}
 * and {@code tls-authz} already resolved to their objects.
 */
public sealed interface StreamSecurity {

    /** No TLS: anyone who reaches the destination's port can send it a VM. */
    record Plain() implements StreamSecurity {}

    /**
     * TLS 1.3 before the first frame.
     *
     * @param credentials endpoint=client on a source, endpoint=server on a destination
     * @param hostName source only: the name the destination's certificate must carry (QEMU's
     *     {@code tls-hostname}); empty: the host of the {@code migrate} URI
     * @param authz destination only: who may connect, by client certificate DN ({@code tls-authz})
     */
    record Tls(TlsCredentials credentials, Optional<String> hostName, Optional<Authorizer> authz) implements StreamSecurity {
        public Tls {
            Objects.requireNonNull(credentials, "credentials");
            Objects.requireNonNull(hostName, "hostName");
            Objects.requireNonNull(authz, "authz");
            if (credentials.endpoint() == TlsEndpoint.SERVER && hostName.isPresent()) {
                throw new IllegalArgumentException("tls-hostname is for a source (endpoint=client credentials)");
            }
            if (credentials.endpoint() == TlsEndpoint.CLIENT && authz.isPresent()) {
                throw new IllegalArgumentException("tls-authz is for a destination (endpoint=server credentials)");
            }
            if (authz.isPresent() && !credentials.verifyPeer()) {
                throw new IllegalArgumentException("tls-authz " + authz.get().id() + " needs verify-peer=on on tls-creds "
                        + credentials.id() + ": without a client certificate there is no DN to authorize");
            }
        }

        public static Tls source(TlsCredentials credentials, Optional<String> hostName) {
            return new Tls(credentials, hostName, Optional.empty());
        }

        public static Tls destination(TlsCredentials credentials, Optional<Authorizer> authz) {
            return new Tls(credentials, Optional.empty(), authz);
        }
    }

    static StreamSecurity plain() {
        return new Plain();
    }
}
