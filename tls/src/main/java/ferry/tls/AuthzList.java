package ferry.tls;

import java.util.List;
import java.util.Objects;
import javax.security.auth.x500.X500Principal;

/**
 * QEMU's {@code AuthZListProperties} (qapi/authz.json): rules tried in order, the first that matches
 * decides; when none matches, {@code policy} does (default deny). What an {@code authz-list-file}'s JSON
 * decodes to:
 * <pre>
 * { "policy": "deny",
 *   "rules": [ { "match": "O=Example,CN=src.example", "policy": "allow" },
 *              { "match": "O=Example,CN=*.lab.example", "policy": "allow", "format": "glob" } ] }
 * </pre>
 */
public record AuthzList(Policy policy, List<Rule> rules) {
    public enum Policy { DENY, ALLOW }

    public enum Format { EXACT, GLOB }

    /** {@code QAuthZListRule}: {@code format} defaults to exact. */
    public record Rule(String match, Policy policy, Format format) {
        public Rule {
            Objects.requireNonNull(match, "match");
            Objects.requireNonNull(policy, "policy");
            Objects.requireNonNull(format, "format");
        }

        boolean matches(X500Principal subject) {
            return switch (format) {
                case EXACT -> DistinguishedName.sameAs(match, subject);
                case GLOB -> DistinguishedName.globMatches(match, DistinguishedName.text(subject));
            };
        }
    }

    public AuthzList {
        Objects.requireNonNull(policy, "policy");
        rules = List.copyOf(rules);
    }

    public boolean allows(X500Principal subject) {
        for (Rule rule : rules) {
            if (rule.matches(subject)) {
                return rule.policy() == Policy.ALLOW;
            }
        }
        return policy == Policy.ALLOW;
    }
}
