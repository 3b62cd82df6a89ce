package ferry.migration.stream;

import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import ferry.tls.TlsException;
import java.io.IOException;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.SSLException;

/**
 * Turns JSSE's handshake and record failures into one line that says what to check, from the point of
 * view of one side ({@code side}: CLIENT on a source, SERVER on a destination). The peer of a refusal
 * only learns a TLS alert code (RFC 8446 6.2), so the line names the alert and where the full reason is.
 *
 * <p>Stateless; any thread.
 */
final class TlsText {
    private static final Pattern ALERT = Pattern.compile("Received fatal alert: ([a-z_]+)");

    private TlsText() {}

    /** The same exception type, with the explanation as its message and the original as its cause. */
    static SSLException explained(SSLException e, TlsEndpoint side) {
        return new SSLException(explain(e, side), e);
    }

    /**
     * What to explain of a failed handshake that is not JSSE's: the I/O error TlsChannel wrapped ("i/o:
     * Connection reset"), else the failure itself ("the peer closed the connection").
     */
    static Throwable ioCause(IOException failure) {
        return failure instanceof TlsException && failure.getCause() instanceof IOException io ? io : failure;
    }

    static String explain(Throwable e, TlsEndpoint side) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof TlsCredentials.PeerCertificateRefused refused) {
                return refused.getMessage();
            }
        }
        String message = String.valueOf(e.getMessage());
        String peer = side == TlsEndpoint.CLIENT ? "the destination" : "the source";
        Matcher alert = ALERT.matcher(message);
        if (alert.find()) {
            return alertText(alert.group(1), side);
        }
        if (message.contains("Unsupported or unrecognized SSL message") || message.contains("plaintext connection")) {
            return side == TlsEndpoint.CLIENT
                    ? "the destination does not speak TLS: it listens without tls-creds (give it -object tls-creds-x509,...,endpoint=server"
                      + " and migrate_set_parameter tls-creds ID before migrate_incoming, or -global migration.tls-creds=ID)"
                    : "the source does not speak TLS";
        }
        if (message.contains("Empty client certificate chain")) {
            return "the source sent no client certificate: its tls-creds directory needs client-cert.pem and client-key.pem"
                    + " (this destination's tls-creds have verify-peer=on)";
        }
        if (message.contains("Remote host terminated the handshake") || message.contains("closed")) {
            return peer + " closed the connection during the TLS handshake (does it listen with TLS? see its log)";
        }
        if (message.contains("protocol_version") || message.contains("No appropriate protocol")) {
            return peer + " offers no TLS 1.3 (Ferry speaks TLS 1.3 only)";
        }
        return "TLS: " + message;
    }

    private static String alertText(String alert, TlsEndpoint side) {
        String code = "TLS alert " + alert;
        return switch (alert.toLowerCase(Locale.ROOT)) {
            case "bad_certificate", "certificate_unknown", "unsupported_certificate", "certificate_expired", "certificate_revoked",
                 "unknown_ca", "access_denied" -> side == TlsEndpoint.CLIENT
                    ? "the destination refused this source's client certificate (" + code + "): not from its CA, expired, or"
                      + " not allowed by its tls-authz; the destination's log says which"
                    : "the source refused this destination's certificate (" + code + "): not from its CA, expired, or not for the"
                      + " host name the source connects to (its tls-hostname, else the migrate URI's host); the source's"
                      + " info migrate says which";
            case "certificate_required" -> side == TlsEndpoint.CLIENT
                    ? "the destination requires a client certificate (" + code + "): this source's tls-creds directory needs"
                      + " client-cert.pem and client-key.pem"
                    : "the source requires a certificate of this destination (" + code + ")";
            case "protocol_version", "handshake_failure", "insufficient_security" ->
                    (side == TlsEndpoint.CLIENT ? "the destination" : "the source") + " found no TLS 1.3 in common (" + code + ")";
            default -> (side == TlsEndpoint.CLIENT ? "the destination" : "the source") + " ended the TLS session (" + code + ")";
        };
    }
}
