package ferry.tls;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import javax.security.auth.x500.X500Principal;
import org.junit.jupiter.api.Test;

/** Subjects printed and compared as QEMU 7.2 (GnuTLS 3.7) prints and compares them: most significant RDN first. */
class DistinguishedNameTest {
    /** In the JDK's RFC 2253 order (CN first); in the certificate, C is the first RDN. */
    private static final X500Principal SUBJECT = new X500Principal("CN=src.example,O=Example\\, Inc.,L=London,C=GB");

    @Test
    void shouldPrintAsGnuTlsPrintsForQemu() {
        // qemu-nbd --tls-authz, QEMU 7.2: "TLS x509 authz check for C=GB,L=London,O=Example\, Inc.,CN=src.example is denied"
        assertEquals("C=GB,L=London,O=Example\\, Inc.,CN=src.example", DistinguishedName.text(SUBJECT));
        assertEquals("CN=a,EMAIL=ops@example.org", DistinguishedName.text(new X500Principal("EMAILADDRESS=ops@example.org,CN=a")));
    }

    @Test
    void shouldCompareIdentitiesAsX500Names() {
        assertTrue(DistinguishedName.sameAs("C=GB,L=London,O=Example\\, Inc.,CN=src.example", SUBJECT));
        assertTrue(DistinguishedName.sameAs("c=gb, l=london, o=Example\\,  Inc., cn=SRC.example", SUBJECT));
        assertTrue(DistinguishedName.sameAs("CN=a,EMAIL=ops@example.org", new X500Principal("EMAILADDRESS=ops@example.org,CN=a")));
        assertFalse(DistinguishedName.sameAs("C=GB,O=Example\\, Inc.,CN=src.example", SUBJECT), "an attribute missing");
        assertFalse(DistinguishedName.sameAs("CN=src.example,O=Example\\, Inc.,L=London,C=GB", SUBJECT),
                "the other order is another DN (QEMU 7.2 refuses it too)");
        assertFalse(DistinguishedName.sameAs("C=GB,L=London,O=Example\\, Inc.,CN=src.example.evil", SUBJECT));
        assertFalse(DistinguishedName.sameAs("not a dn", SUBJECT));
    }

    @Test
    void shouldGlobLikeGlib() {
        assertTrue(DistinguishedName.globMatches("*", ""));
        assertTrue(DistinguishedName.globMatches("C=GB,L=London,O=Example\\, Inc.,CN=*", DistinguishedName.text(SUBJECT)));
        assertTrue(DistinguishedName.globMatches("C=GB,*,CN=src.exampl?", DistinguishedName.text(SUBJECT)));
        assertTrue(DistinguishedName.globMatches("a*b*c", "aXXbYYbc"));
        assertFalse(DistinguishedName.globMatches("C=GB,O=Other,CN=*", DistinguishedName.text(SUBJECT)));
        assertFalse(DistinguishedName.globMatches("c=gb,*", DistinguishedName.text(SUBJECT)), "case-sensitive, as GLib");
        assertFalse(DistinguishedName.globMatches("a?", "a"));
    }

    @Test
    void shouldLetTheFirstMatchingRuleDecide() {
        AuthzList list = new AuthzList(AuthzList.Policy.DENY, List.of(
                new AuthzList.Rule("C=GB,L=London,O=Example\\, Inc.,CN=bad.example", AuthzList.Policy.DENY, AuthzList.Format.EXACT),
                new AuthzList.Rule("C=GB,L=London,O=Example\\, Inc.,CN=*", AuthzList.Policy.ALLOW, AuthzList.Format.GLOB)));
        assertTrue(list.allows(SUBJECT));
        assertFalse(list.allows(new X500Principal("CN=bad.example,O=Example\\, Inc.,L=London,C=GB")));
        assertFalse(list.allows(new X500Principal("CN=x,O=Other")), "no rule matches: the default policy");
        assertTrue(new AuthzList(AuthzList.Policy.ALLOW, List.of()).allows(SUBJECT));
        assertTrue(new AuthzSimple("a0", "C=GB,L=London,O=Example\\, Inc.,CN=src.example").allows(SUBJECT));
        assertFalse(new AuthzSimple("a0", "CN=other").allows(SUBJECT));
    }
}
