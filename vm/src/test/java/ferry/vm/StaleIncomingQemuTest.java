package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ferry.qmp.RunState;
import org.junit.jupiter.api.Test;

/**
 * What a new destination does with a QEMU a killed {@code ferry run -incoming} of its VM left (the whole, with a real
 * QEMU, is the VM tests'): only a QEMU that never received its VM is quit.
 */
class StaleIncomingQemuTest {
    @Test
    void shouldQuitOnlyAQemuThatStillWaitsForItsIncomingMigration() {
        assertEquals(StaleIncomingQemu.Decision.QUIT, StaleIncomingQemu.decide(RunState.INMIGRATE));
        for (RunState status : RunState.values()) {
            if (status != RunState.INMIGRATE) {
                assertEquals(StaleIncomingQemu.Decision.LEAVE, StaleIncomingQemu.decide(status), status.qapiName()
                        + ": a QEMU that received (or runs) a VM is never stopped on Ferry's own");
            }
        }
    }
}
