package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class SourceStateMachineTest {
    private final SourceStateMachine machine = new SourceStateMachine();

    private void reach(SourceState... path) {
        for (SourceState next : path) {
            machine.moveTo(next);
        }
    }

    @Test
    void shouldRefuseAMoveTheStateMachineDoesNotDraw() {
        reach(SourceState.HANDSHAKE);
        assertThrows(IllegalStateException.class, () -> machine.moveTo(SourceState.VERIFIED));
        assertEquals(SourceState.HANDSHAKE, machine.state());
    }

    @Test
    void shouldCountAsHandedOverFromCommittedOnEvenAfterAFailure() {
        reach(SourceState.HANDSHAKE, SourceState.RAM, SourceState.PRE_SWITCHOVER, SourceState.VERIFIED, SourceState.DEST_READY);
        assertFalse(machine.handedOver());
        machine.moveTo(SourceState.COMMITTED);
        assertTrue(machine.handedOver());
        machine.end(SourceState.FAILED);
        assertTrue(machine.handedOver(), "a failure after COMMIT does not make the VM safe to run here");
    }

    @Test
    void shouldEndOnlyInFailedOrCancelled() {
        assertThrows(IllegalArgumentException.class, () -> machine.end(SourceState.COMPLETED));
        machine.end(SourceState.CANCELLED);
        assertEquals(SourceState.CANCELLED, machine.state());
        assertFalse(machine.handedOver());
    }
}
