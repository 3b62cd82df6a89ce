package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class SourceStateTest {

    @Test
    void shouldWalkTheHappyPathWithDisks() {
        SourceState[] path = {SourceState.CONNECTING, SourceState.HANDSHAKE, SourceState.COPYING, SourceState.RAM,
            SourceState.PRE_SWITCHOVER, SourceState.DISKS_SENT, SourceState.VERIFIED, SourceState.DEST_READY,
            SourceState.COMMITTED, SourceState.COMPLETED};
        for (int i = 1; i < path.length; i++) {
            assertTrue(path[i - 1].mayMoveTo(path[i]), path[i - 1] + " -> " + path[i]);
        }
    }

    @Test
    void shouldGoStraightToRamWithoutDisks() {
        assertTrue(SourceState.HANDSHAKE.mayMoveTo(SourceState.RAM));
        assertTrue(SourceState.PRE_SWITCHOVER.mayMoveTo(SourceState.VERIFIED));
    }

    @Test
    void shouldNeverCancelAfterCommit() {
        assertFalse(SourceState.COMMITTED.mayMoveTo(SourceState.CANCELLED), "after COMMIT the VM may run on the destination");
        assertTrue(SourceState.COMMITTED.mayMoveTo(SourceState.FAILED));
        assertTrue(SourceState.DEST_READY.mayMoveTo(SourceState.CANCELLED));
    }

    @Test
    void shouldRefuseSkipsAndMovesOutOfEnds() {
        assertFalse(SourceState.COPYING.mayMoveTo(SourceState.COMMITTED));
        assertFalse(SourceState.VERIFIED.mayMoveTo(SourceState.COMPLETED));
        assertFalse(SourceState.FAILED.mayMoveTo(SourceState.HANDSHAKE));
        assertFalse(SourceState.COMPLETED.mayMoveTo(SourceState.FAILED));
    }

    @Test
    void shouldBeInterruptedOnlyBetweenHandshakeAndCommitAndGoOnWithAnotherHandshake() {
        for (SourceState state : SourceState.values()) {
            boolean between = state.ordinal() >= SourceState.HANDSHAKE.ordinal() && state.ordinal() < SourceState.COMMITTED.ordinal()
                    && state != SourceState.INTERRUPTED;
            assertEquals(between, state.mayMoveTo(SourceState.INTERRUPTED), state::name);
        }
        assertTrue(SourceState.INTERRUPTED.mayMoveTo(SourceState.HANDSHAKE));
        assertTrue(SourceState.INTERRUPTED.mayMoveTo(SourceState.FAILED));
        assertTrue(SourceState.INTERRUPTED.mayMoveTo(SourceState.CANCELLED));
        assertFalse(SourceState.INTERRUPTED.mayMoveTo(SourceState.COPYING));
        assertFalse(SourceState.INTERRUPTED.reached(SourceState.RAM), "an interrupted attempt has cancelled its RAM migration");
    }

    @Test
    void shouldCountEndsAsNotReached() {
        assertTrue(SourceState.DEST_READY.reached(SourceState.VERIFIED));
        assertFalse(SourceState.FAILED.reached(SourceState.CONNECTING));
        assertFalse(SourceState.RAM.reached(SourceState.PRE_SWITCHOVER));
    }
}
