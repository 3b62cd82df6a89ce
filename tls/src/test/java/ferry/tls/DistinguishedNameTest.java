package ferry.tls;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import javax.security.auth.x500.X500Principal;
import org.junit.jupiter.api.Test;

class DistinguishedNameTest {
    private static final X500Principal SUBJECT = new X500Principal("CN=src.example,O=Example Org,L=London,C=GB");

    @Test
    void shouldPrintMostSpecificFirstAsGnuTlsDoes() {
        assertEquals("CN=src.example,O=Example Org,L=London,C=GB", DistinguishedName.text(SUBJECT));
        assertEquals("EMAIL=ops@example.org,CN=a", DistinguishedName.text(new X500Principal("EMAILADDRESS=ops@example.org,CN=a")));
    }

    @Test
    void shouldCompareIdentitiesAsX500Names() {
        assertTrue(DistinguishedName.sameAs("CN=src.example,O=Example Org,L=London,C=GB", SUBJECT));
        assertTrue(DistinguishedName.sameAs("cn=SRC.example, o=Example  Org, l=london, c=gb", SUBJECT));
        assertTrue(DistinguishedName.sameAs("EMAIL=ops@example.org,CN=a", new X500Principal("EMAILADDRESS=ops@example.org,CN=a")));
        assertFalse(DistinguishedName.sameAs("CN=src.example,O=Example Org,C=GB", SUBJECT), "an attribute missing");
        assertFalse(DistinguishedName.sameAs("C=GB,L=London,O=Example Org,CN=src.example", SUBJECT), "reversed order is another DN");
        assertFalse(DistinguishedName.sameAs("CN=src.example.evil,O=Example Org,L=London,C=GB", SUBJECT));
        assertFalse(DistinguishedName.sameAs("not a dn", SUBJECT));
    }

    @Test
    void shouldGlobLikeGlib() {
        assertTrue(DistinguishedName.globMatches("*", ""));
        assertTrue(DistinguishedName.globMatches("CN=*,O=Example Org,L=London,C=GB", DistinguishedName.text(SUBJECT)));
        assertTrue(DistinguishedName.globMatches("CN=src.exampl?,*", DistinguishedName.text(SUBJECT)));
        assertTrue(DistinguishedName.globMatches("a*b*c", "aXXbYYbc"));
        assertFalse(DistinguishedName.globMatches("CN=*,O=Other", DistinguishedName.text(SUBJECT)));
        assertFalse(DistinguishedName.globMatches("cn=*", DistinguishedName.text(SUBJECT)), "case-sensitive, as GLib");
        assertFalse(DistinguishedName.globMatches("a?", "a"));
    }

    @Test
    void shouldLetTheFirstMatchingRuleDecide() {
        AuthzList list = new AuthzList(AuthzList.Policy.DENY, List.of(
                new AuthzList.Rule("CN=bad.example,O=Example Org,L=London,C=GB", AuthzList.Policy.DENY, AuthzList.Format.EXACT),
                new AuthzList.Rule("CN=*,O=Example Org,L=London,C=GB", AuthzList.Policy.ALLOW, AuthzList.Format.GLOB)));
        assertTrue(list.allows(SUBJECT));
        assertFalse(list.allows(new X500Principal("CN=bad.example,O=Example Org,L=London,C=GB")));
        assertFalse(list.allows(new X500Principal("CN=x,O=Other")), "no rule matches: the default policy");
        assertTrue(new AuthzList(AuthzList.Policy.ALLOW, List.of()).allows(SUBJECT));
        assertTrue(new AuthzSimple("a0", "CN=src.example,O=Example Org,L=London,C=GB").allows(SUBJECT));
        assertFalse(new AuthzSimple("a0", "CN=other").allows(SUBJECT));
    }
}
