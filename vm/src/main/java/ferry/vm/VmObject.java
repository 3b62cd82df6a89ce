package ferry.vm;

import ferry.tls.TlsEndpoint;
import java.nio.file.Path;
import java.util.Objects;

/**
 * One {@code -object TYPE,id=ID,...} of {@code ferry run}, in QEMU's syntax. The TLS objects are
 * Ferry's own, because Ferry carries the migration stream: {@code tls-creds-x509},
 * {@code authz-simple} and {@code authz-list-file}. Any other type is QEMU's and is passed to it as
 * written ({@link Qemu}), except the TLS and authorization types Ferry cannot use for migration
 * ({@code tls-creds-psk}, {@code tls-creds-anon}, {@code authz-list}, {@code authz-pam}), which are refused.
 */
public sealed interface VmObject {
    /** QEMU's object id: names it in {@code migrate_set_parameter tls-creds|tls-authz ID}. */
    String id();

    /**
     * {@code -object tls-creds-x509,id=ID,dir=DIR[,endpoint=server|client][,verify-peer=on|off][,sanity-check=on|off]}:
     * QEMU's defaults (endpoint=client, verify-peer=on, sanity-check=on).
     */
    record TlsCredsX509(String id, Path dir, TlsEndpoint endpoint, boolean verifyPeer, boolean sanityCheck) implements VmObject {
        public TlsCredsX509 {
            Objects.requireNonNull(id);
            Objects.requireNonNull(dir);
            Objects.requireNonNull(endpoint);
        }
    }

    /** {@code -object authz-simple,id=ID,identity=DN}: the one client certificate subject allowed. */
    record AuthzSimple(String id, String identity) implements VmObject {
        public AuthzSimple {
            Objects.requireNonNull(id);
            Objects.requireNonNull(identity);
        }
    }

    /**
     * {@code -object authz-list-file,id=ID,filename=FILE[,refresh=on|off]}: QEMU's JSON rule file
     * ({@link AuthzListFile}); refresh (QEMU's default on Linux: on) reloads it when it changes.
     */
    record AuthzListFile(String id, Path file, boolean refresh) implements VmObject {
        public AuthzListFile {
            Objects.requireNonNull(id);
            Objects.requireNonNull(file);
        }
    }

    /** Any other type, for QEMU: {@code -object SPEC} as written. */
    record Qemu(String type, String id, String spec) implements VmObject {
        public Qemu {
            Objects.requireNonNull(type);
            Objects.requireNonNull(id);
            Objects.requireNonNull(spec);
        }
    }
}
