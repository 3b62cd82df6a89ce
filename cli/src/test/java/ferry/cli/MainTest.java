package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@code --help} and {@code --version} on every command, as QEMU and qemu-nbd take them: exit 0, text on stdout. */
class MainTest {

    private static String stdout(int[] code, String... args) {
        PrintStream previous = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        try {
            code[0] = Main.run(args);
        } finally {
            System.setOut(previous);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @ParameterizedTest
    @ValueSource(strings = {"run", "attach", "serve", "demo", "certs"})
    void shouldAnswerHelpAndVersionOnEveryCommand(String command) {
        int[] code = {-1};
        String help = stdout(code, command, "--help");
        assertEquals(0, code[0]);
        assertTrue(help.startsWith("usage: ferry " + command), help);
        String version = stdout(code, command, "--version");
        assertEquals(0, code[0]);
        assertTrue(version.matches("ferry version \\S+\\n"), version);
    }

    @ParameterizedTest
    @ValueSource(strings = {"--version", "-V"})
    void shouldAnswerVersionAlone(String option) {
        int[] code = {-1};
        assertTrue(stdout(code, option).startsWith("ferry version "));
        assertEquals(0, code[0]);
    }
}
