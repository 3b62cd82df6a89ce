package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.tls.TlsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import javax.security.auth.x500.X500Principal;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** QEMU's authz-list-file JSON (qapi/authz.json AuthZListProperties), and refresh. */
class AuthzListFileTest {
    private static final X500Principal SOURCE = new X500Principal("CN=src.example,O=Example");
    private static final X500Principal OTHER = new X500Principal("CN=other.example,O=Example");

    @TempDir Path tmp;

    @Test
    void shouldReadQemusRuleFileFirstMatchDecidingAndDenyByDefault() throws Exception {
        Path file = tmp.resolve("acl.json");
        Files.writeString(file, """
                { "rules": [ { "match": "O=Example,CN=other.example", "policy": "deny" },
                             { "match": "O=Example,CN=*", "policy": "allow", "format": "glob" } ] }
                """);
        AuthzListFile authz = new AuthzListFile("auth0", file, false);
        assertEquals("auth0", authz.id());
        assertTrue(authz.allows(SOURCE));
        assertFalse(authz.allows(OTHER));
        assertFalse(authz.allows(new X500Principal("CN=x,O=Elsewhere")), "the default policy is deny");
    }

    @Test
    void shouldReloadWhenTheFileChangesAndRefuseAllWhileItDoesNotRead() throws Exception {
        Path file = tmp.resolve("acl.json");
        Files.writeString(file, "{ \"policy\": \"allow\" }");
        AuthzListFile authz = new AuthzListFile("auth0", file, true);
        assertTrue(authz.allows(SOURCE));
        Files.writeString(file, "{ \"policy\": \"deny\", \"rules\": [ { \"match\": \"O=Example,CN=src.example\", \"policy\": \"allow\" } ] }");
        Files.setLastModifiedTime(file, FileTime.from(Instant.now().plusSeconds(5)));
        assertTrue(authz.allows(SOURCE));
        assertFalse(authz.allows(OTHER), "the new rules apply");
        Files.writeString(file, "{ \"policy\": \"allow\", ");
        Files.setLastModifiedTime(file, FileTime.from(Instant.now().plusSeconds(10)));
        TlsException broken = assertThrows(TlsException.class, () -> authz.allows(SOURCE));
        assertTrue(broken.getMessage().contains("is not QEMU's authz list JSON"), broken.getMessage());
        Files.writeString(file, "{ \"policy\": \"allow\" }");
        Files.setLastModifiedTime(file, FileTime.from(Instant.now().plusSeconds(15)));
        assertTrue(authz.allows(OTHER), "a file that reads again decides again");
    }

    @Test
    void shouldRefuseWhatQemuRefuses() throws Exception {
        Path file = tmp.resolve("acl.json");
        Files.writeString(file, "{ \"rules\": [ { \"match\": \"x\", \"policy\": \"allow\", \"formats\": \"glob\" } ] }");
        assertTrue(assertThrows(TlsException.class, () -> new AuthzListFile("a", file, false)).getMessage()
                .startsWith("Parameter 'formats' is unexpected in "));
        Files.writeString(file, "{ \"policy\": \"maybe\" }");
        assertTrue(assertThrows(TlsException.class, () -> new AuthzListFile("a", file, false)).getMessage()
                .startsWith("bad policy 'maybe' in "));
        assertTrue(assertThrows(TlsException.class, () -> new AuthzListFile("a", tmp.resolve("missing.json"), false)).getMessage()
                .startsWith("authz-list-file a: Unable to read '"));
    }
}
