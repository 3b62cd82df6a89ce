package ferry.tls;

import java.util.Objects;
import javax.security.auth.x500.X500Principal;

/** QEMU's {@code -object authz-simple,id=ID,identity=DN}: exactly one subject may connect. */
public record AuthzSimple(String id, String identity) implements Authorizer {
    public AuthzSimple {
        Objects.requireNonNull(id, "id");
        if (identity == null || identity.isEmpty()) {
            throw new IllegalArgumentException("authz-simple " + id + ": identity= is required");
        }
    }

    @Override
    public boolean allows(X500Principal subject) {
        return DistinguishedName.sameAs(identity, subject);
    }
}
