package ferry.tls;

import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;
import javax.security.auth.x500.X500Principal;

/**
 * How Ferry prints and compares certificate subjects for {@code tls-authz}: the way QEMU does.
 *
 * <p>Printing: the RDNs most significant first, {@code C=GB,O=Example\, Inc.,CN=src.example}, with
 * RFC 4514's escapes, and emailAddress as {@code EMAIL=}. This is what QEMU's authorization sees:
 * QEMU takes the peer's name from GnuTLS's {@code gnutls_x509_crt_get_dn}, which prints the RDNs in
 * certificate (DER) order, not in RFC 4514's reversed order. Checked with QEMU 7.2
 * and GnuTLS 3.7 (Debian 12): {@code qemu-nbd --tls-authz} logs "TLS x509 authz check for
 * C=GB,L=London,O=Example\, Inc.,CN=src.example is denied", and refuses an identity written CN first
 * (the order of QEMU's documentation example, which this GnuTLS does not print). The log, every
 * refusal and {@code ferry certs} show this form, so it can be pasted into {@code authz-simple,identity=}
 * or an {@code authz-list-file} rule, for Ferry and QEMU alike.
 *
 * <p>Comparing: an identity is parsed as a DN in that order and compared as an X.500 name
 * ({@link X500Principal#equals}: attribute types by OID, values case-insensitive with runs of blanks
 * folded), so {@code c=gb, o=Example\,  Inc., cn=SRC.example} names the same subject. QEMU compares the
 * strings byte for byte: every identity that matches in QEMU matches in Ferry, and a reordered DN
 * matches in neither. An identity that does not parse as a DN is compared as a string with the printed
 * form. Globs ({@code "format": "glob"} rules) match the printed form, case-sensitive, with {@code *}
 * and {@code ?} as GLib's {@code g_pattern_match_simple} (what QEMU uses).
 */
public final class DistinguishedName {
    private static final String EMAIL_OID = "1.2.840.113549.1.9.1";
    private static final Map<String, String> PRINT_NAMES = Map.of(EMAIL_OID, "EMAIL");
    private static final Map<String, String> PARSE_NAMES = Map.of("EMAIL", EMAIL_OID, "E", EMAIL_OID);

    private DistinguishedName() {}

    public static String text(X500Principal subject) {
        String rfc2253 = subject.getName(X500Principal.RFC2253, PRINT_NAMES);
        try {
            return reversed(rfc2253);
        } catch (InvalidNameException e) {
            return rfc2253;                              // the JDK printed it; it parses
        }
    }

    /** The certificate's subject, printed. */
    public static String text(X509Certificate certificate) {
        return text(certificate.getSubjectX500Principal());
    }

    /** Whether {@code identity}, written most significant RDN first, names {@code subject} (see the class comment). */
    public static boolean sameAs(String identity, X500Principal subject) {
        try {
            return new X500Principal(reversed(identity), PARSE_NAMES).equals(subject);
        } catch (InvalidNameException | IllegalArgumentException notADn) {
            return identity.equals(text(subject));
        }
    }

    /** The same RDNs, escaped as RFC 4514 escapes them, in the other order. */
    private static String reversed(String dn) throws InvalidNameException {
        List<String> rdns = new ArrayList<>();
        for (Rdn rdn : new LdapName(dn).getRdns()) {      // index 0 is the rightmost RDN
            rdns.add(rdn.toString());
        }
        return String.join(",", rdns);
    }

    /** {@code g_pattern_match_simple}: {@code *} any run (also empty), {@code ?} one character, no escapes, whole string. */
    public static boolean globMatches(String pattern, String text) {
        int p = 0, t = 0, star = -1, resume = 0;
        while (t < text.length()) {
            if (p < pattern.length() && (pattern.charAt(p) == '?' || pattern.charAt(p) == text.charAt(t))) {
                p++;
                t++;
            } else if (p < pattern.length() && pattern.charAt(p) == '*') {
                star = p++;
                resume = t;
            } else if (star >= 0) {
                p = star + 1;
                t = ++resume;
            } else {
                return false;
            }
        }
        while (p < pattern.length() && pattern.charAt(p) == '*') {
            p++;
        }
        return p == pattern.length();
    }
}
