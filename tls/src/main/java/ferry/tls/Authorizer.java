package ferry.tls;

import javax.security.auth.x500.X500Principal;

/**
 * QEMU's {@code tls-authz}: decides whether a peer whose certificate has passed the CA check may go on,
 * by its subject DN ({@link DistinguishedName} says how DNs compare). Implementations:
 * {@link AuthzSimple} ({@code -object authz-simple,id=ID,identity=DN}) and the {@code authz-list-file}
 * object of the VM layer (QEMU's JSON rule file, {@link AuthzList}).
 *
 * <p>Called on the thread that accepted the connection, after the handshake.
 */
public interface Authorizer {
    /** The object's id, as {@code migrate_set_parameter tls-authz ID} names it. */
    String id();

    /**
     * Whether the subject may connect.
     *
     * @throws TlsException {@link TlsException.Kind#AUTHZ} when no decision can be made (an unreadable
     *     rule file): the caller refuses the peer, as QEMU does
     */
    boolean allows(X500Principal subject) throws TlsException;
}
