package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.testkit.Tools;
import ferry.tls.TlsCredentials;
import ferry.tls.TlsEndpoint;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ferry certs}: QEMU's layout, loadable by Ferry with QEMU's sanity check, for two hosts of one CA. */
class CertsCommandTest {
    @TempDir Path tmp;

    private record Run(int status, String out, String err) {}

    private static Run certs(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = CertsCommand.run(List.of(args), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void shouldMakeQemusLayoutForTwoHostsOfOneCa() throws Exception {
        Tools.require("openssl");
        Path a = tmp.resolve("a");
        Path b = tmp.resolve("b");
        Run first = certs(a.toString(), "--host", "a.example", "--host", "10.0.0.1", "--client-dn", "O=Example,CN=a.example");
        assertEquals(0, first.status(), first.err());
        assertTrue(first.out().contains("client certificate subject (for authz-simple,identity=, commas doubled on the command line):"
                + " O=Example,CN=a.example\n"), first.out());
        for (String file : List.of("ca-cert.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "client-cert.pem", "client-key.pem")) {
            assertTrue(Files.exists(a.resolve(file)), file);
        }
        Run second = certs(b.toString(), "--host", "b.example", "--ca", a.toString(), "--days", "30");
        assertEquals(0, second.status(), second.err());
        assertTrue(Files.notExists(b.resolve("ca-key.pem")), "the CA key stays where it was");
        assertEquals(-1, Files.mismatch(a.resolve("ca-cert.pem"), b.resolve("ca-cert.pem")));
        for (Path dir : List.of(a, b)) {
            TlsCredentials.load("s", dir, TlsEndpoint.SERVER, true, true);      // QEMU's sanity check passes
            TlsCredentials.load("c", dir, TlsEndpoint.CLIENT, true, true);
        }
        assertTrue(second.out().contains("identity=, commas doubled on the command line): CN=b.example\n"), "default client DN");
    }

    @Test
    void shouldRefuseBadOptionsAndExistingFiles() throws Exception {
        assertEquals(2, certs(tmp.toString()).status(), "no --host");
        assertEquals(2, certs(tmp.resolve("x").toString(), "--host", "a", "--days", "0").status());
        assertEquals(2, certs(tmp.resolve("x").toString(), "--host", "a", "--client-dn", "not a dn").status());
        assertEquals(2, certs(tmp.resolve("x").toString(), "--host", "a/b").status());
        Tools.require("openssl");
        assertEquals(0, certs(tmp.resolve("y").toString(), "--host", "a").status());
        Run again = certs(tmp.resolve("y").toString(), "--host", "a");
        assertEquals(1, again.status());
        assertTrue(again.err().contains("Ferry never overwrites credentials"), again.err());
    }
}
