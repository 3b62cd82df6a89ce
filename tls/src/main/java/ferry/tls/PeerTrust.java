package ferry.tls;

import java.net.Socket;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.cert.CertificateException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import javax.net.ssl.ExtendedSSLSession;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * JSSE's PKIX trust manager, unchanged in what it decides, with one clear line for what it refuses: a
 * certificate from another CA, an expired or not yet valid one, a server certificate that does not name
 * the host. JSSE's own messages ("PKIX path building failed: ... unable to find valid certification path
 * to requested target") say little to an operator. The refusal is a {@link TlsCredentials.PeerCertificateRefused}
 * whose cause is JSSE's, so the TLS alert JSSE sends the peer (certificate_expired, certificate_unknown ...)
 * stays the same. The explanation is computed only after JSSE refused, from the chain; it never
 * turns a refusal into an acceptance.
 *
 * <p>{@code trustAnyServer}: a client with verify-peer=off (QEMU's meaning: no check of the server).
 *
 * <p>Called by JSSE on the handshaking thread; stateless.
 */
final class PeerTrust extends X509ExtendedTrustManager {
    private final X509ExtendedTrustManager pkix;
    private final List<X509Certificate> authorities;
    private final Path caFile;
    private final boolean trustAnyServer;

    PeerTrust(X509ExtendedTrustManager pkix, List<X509Certificate> authorities, Path caFile, boolean trustAnyServer) {
        this.pkix = pkix;
        this.authorities = List.copyOf(authorities);
        this.caFile = caFile;
        this.trustAnyServer = trustAnyServer;
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
        try {
            pkix.checkClientTrusted(chain, authType, socket);
        } catch (CertificateException e) {
            throw refused("client", chain, e);
        }
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
        try {
            pkix.checkClientTrusted(chain, authType, engine);
        } catch (CertificateException e) {
            throw refused("client", chain, e);
        }
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        try {
            pkix.checkClientTrusted(chain, authType);
        } catch (CertificateException e) {
            throw refused("client", chain, e);
        }
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
        if (trustAnyServer) {
            return;
        }
        try {
            pkix.checkServerTrusted(chain, authType, socket);
        } catch (CertificateException e) {
            throw pathOk(chain, authType) ? wrongHost(chain, socket instanceof SSLSocket s ? s.getHandshakeSession() : null, e)
                    : refused("server", chain, e);
        }
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
        if (trustAnyServer) {
            return;
        }
        try {
            pkix.checkServerTrusted(chain, authType, engine);
        } catch (CertificateException e) {
            throw pathOk(chain, authType) ? wrongHost(chain, engine == null ? null : engine.getHandshakeSession(), e)
                    : refused("server", chain, e);
        }
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        if (trustAnyServer) {
            return;
        }
        try {
            pkix.checkServerTrusted(chain, authType);
        } catch (CertificateException e) {
            throw refused("server", chain, e);
        }
    }

    @Override
    public X509Certificate[] getAcceptedIssuers() {
        return pkix.getAcceptedIssuers();
    }

    /** Whether the chain passes without the host name check: then the name is what JSSE refused. */
    private boolean pathOk(X509Certificate[] chain, String authType) {
        try {
            pkix.checkServerTrusted(chain, authType);
            return true;
        } catch (CertificateException e) {
            return false;
        }
    }

    private CertificateException refused(String role, X509Certificate[] chain, CertificateException e) {
        if (chain == null || chain.length == 0) {
            return new TlsCredentials.PeerCertificateRefused("the " + role + " sent no certificate", e.getCause());
        }
        X509Certificate leaf = chain[0];
        String who = "the " + role + " certificate '" + DistinguishedName.text(leaf) + "'";
        String why;
        try {
            leaf.checkValidity();
            why = issuedByOurCa(chain) ? e.getMessage()
                    : "is not signed by a CA in " + caFile + " (its issuer is '" + DistinguishedName.text(leaf.getIssuerX500Principal()) + "')";
        } catch (CertificateExpiredException expired) {
            why = "expired on " + leaf.getNotAfter().toInstant();
        } catch (CertificateNotYetValidException early) {
            why = "is not valid before " + leaf.getNotBefore().toInstant();
        }
        return new TlsCredentials.PeerCertificateRefused(who + " " + why, e.getCause() != null ? e.getCause() : e);
    }

    /** Whether some certificate of the chain is signed by one of our CAs. */
    private boolean issuedByOurCa(X509Certificate[] chain) {
        for (X509Certificate certificate : chain) {
            for (X509Certificate ca : authorities) {
                if (certificate.getIssuerX500Principal().equals(ca.getSubjectX500Principal())) {
                    try {
                        certificate.verify(ca.getPublicKey());
                        return true;
                    } catch (GeneralSecurityException e) {
                        // another key under the same name: not ours
                    }
                }
            }
        }
        return false;
    }

    private static CertificateException wrongHost(X509Certificate[] chain, SSLSession session, CertificateException e) {
        String host = session == null ? null : session.getPeerHost();
        if (session instanceof ExtendedSSLSession extended) {
            for (var name : extended.getRequestedServerNames()) {
                if (name instanceof javax.net.ssl.SNIHostName sni) {
                    host = sni.getAsciiName();
                }
            }
        }
        return new TlsCredentials.PeerCertificateRefused("the server certificate '" + DistinguishedName.text(chain[0])
                + "' is not for host '" + host + "' (it names " + names(chain[0]) + ")", e);
    }

    /** The subject alternative names, as {@code DNS:a.example, IP:10.0.0.1}. */
    static String names(X509Certificate certificate) {
        List<String> names = new ArrayList<>();
        try {
            Collection<List<?>> alternatives = certificate.getSubjectAlternativeNames();
            if (alternatives != null) {
                for (List<?> entry : alternatives) {
                    int type = (Integer) entry.get(0);
                    if (type == 2) {
                        names.add("DNS:" + entry.get(1));
                    } else if (type == 7) {
                        names.add("IP:" + entry.get(1));
                    }
                }
            }
        } catch (CertificateParsingException e) {
            return "unreadable subject alternative names";
        }
        return names.isEmpty() ? "no DNS or IP subject alternative name" : String.join(", ", names);
    }
}
