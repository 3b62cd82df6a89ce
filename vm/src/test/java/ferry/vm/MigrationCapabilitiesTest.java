package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

class MigrationCapabilitiesTest {
    @Test
    void shouldPrintFerrysCapabilitiesInQemusHmpFormat() {
        MigrationCapabilities capabilities = new MigrationCapabilities();
        capabilities.set(Map.of("block", true));
        String text = capabilities.hmpText();
        assertTrue(text.startsWith("xbzrle: off\nrdma-pin-all: off\n"), text);   // QEMU 7.2's order and words
        assertTrue(text.contains("\nevents: off\n"), text);
        assertTrue(text.contains("\nblock: on\n"), text);
        assertEquals(21, text.lines().count(), text);
        assertFalse(text.endsWith("\n"), "the monitor adds the last newline");
    }

    @Test
    void shouldRefuseQemusOwnCapabilitiesAllOrNothing() {
        MigrationCapabilities capabilities = new MigrationCapabilities();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> capabilities.set(new java.util.LinkedHashMap<>(Map.of("events", true, "xbzrle", true))));
        assertTrue(e.getMessage().contains("'xbzrle'"), e.getMessage());
        assertFalse(capabilities.events(), "nothing applied");
        assertThrows(IllegalArgumentException.class, () -> capabilities.set(Map.of("nosuch", false)));
        capabilities.set(Map.of("xbzrle", false, "events", true));
        assertTrue(capabilities.events());
    }
}
