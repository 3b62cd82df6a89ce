package ferry.tls;

import java.security.cert.X509Certificate;
import java.util.Map;
import javax.security.auth.x500.X500Principal;

/**
 * How Ferry prints and compares certificate subjects for {@code tls-authz}.
 *
 * <p>Printing: RFC 4514, most specific attribute first ({@code CN=a.example,O=Example,C=GB}), which is
 * what GnuTLS (since 3.5.7) returns to QEMU and what QEMU compares identities with; emailAddress is
 * printed {@code EMAIL=} as GnuTLS does. The log and every refusal show this form, so it can be pasted
 * into {@code authz-simple,identity=} or an {@code authz-list-file} rule.
 *
 * <p>Comparing: an identity is parsed as a DN and compared as X.500 names (RFC 4517/5280 matching, as
 * {@link X500Principal#equals}: attribute types by OID, values case-insensitive with runs of blanks
 * folded), so {@code cn=A.Example, o=Example,c=GB} names the same subject as the printed form. QEMU
 * compares the strings byte for byte; every identity that matches in QEMU matches in Ferry. An identity
 * that does not parse as a DN is compared as a string with the printed form. Globs ({@code authz-list-file}
 * rules with {@code "format": "glob"}) match the printed form, case-sensitive, with {@code *} and {@code ?}
 * as GLib's {@code g_pattern_match_simple} (what QEMU uses).
 */
public final class DistinguishedName {
    private static final String EMAIL_OID = "1.2.840.113549.1.9.1";
    private static final Map<String, String> PRINT_NAMES = Map.of(EMAIL_OID, "EMAIL");
    private static final Map<String, String> PARSE_NAMES = Map.of("EMAIL", EMAIL_OID, "E", EMAIL_OID);

    private DistinguishedName() {}

    public static String text(X500Principal subject) {
        return subject.getName(X500Principal.RFC2253, PRINT_NAMES);
    }

    /** The certificate's subject, printed. */
    public static String text(X509Certificate certificate) {
        return text(certificate.getSubjectX500Principal());
    }

    /** Whether {@code identity} names {@code subject} (see the class comment). */
    public static boolean sameAs(String identity, X500Principal subject) {
        try {
            return new X500Principal(identity, PARSE_NAMES).equals(subject);
        } catch (IllegalArgumentException notADn) {
            return identity.equals(text(subject));
        }
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
