package ferry.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** The versioned machine type Ferry gives QEMU, from QEMU 7.2's own {@code -machine help} text. */
class MachineTypesTest {
    /** The head of {@code qemu-system-x86_64 -machine help} on Debian 12's QEMU 7.2. */
    private static final String HELP_7_2 = """
            Supported machines are:
            microvm              microvm (i386)
            pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
            pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
            pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
            q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)
            pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)
            """;

    @Test
    void shouldPinAliasesToTheirVersionedTypeAndKeepProperties() {
        Map<String, String> aliases = MachineTypes.aliases(HELP_7_2);
        assertEquals(Map.of("pc", "pc-i440fx-7.2", "q35", "pc-q35-7.2"), aliases);
        assertEquals("pc-i440fx-7.2", MachineTypes.pin(MachineTypes.DEFAULT, aliases));
        assertEquals("pc-q35-7.2,smm=off", MachineTypes.pin("q35,smm=off", aliases));
        assertEquals("type=pc-q35-7.2,smm=off", MachineTypes.pin("type=q35,smm=off", aliases));
        assertEquals("pc-i440fx-7.1", MachineTypes.pin("pc-i440fx-7.1", aliases), "a versioned type stays");
        assertEquals("pc", MachineTypes.pin("pc", Map.of()), "a QEMU that cannot say leaves it as given");
    }
}
