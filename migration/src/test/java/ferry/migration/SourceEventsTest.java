package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.migration.wire.Frame;
import java.io.EOFException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class SourceEventsTest {
    private final SourceStateMachine machine = new SourceStateMachine();
    private final List<Long> confirmed = new ArrayList<>();
    private final SourceEvents events = new SourceEvents(machine, new MigrationStats(), Optional::empty, confirmed::add);

    private void reach(SourceState... path) {
        for (SourceState next : path) {
            machine.moveTo(next);
        }
    }

    @Test
    void shouldEndTheAttemptWithCancelledBeforeCommitAndKeepTheReason() {
        reach(SourceState.HANDSHAKE);
        events.add(new SourceEvent.CancelRequested("operator"));
        assertEquals(Optional.of("operator"), events.cancelReason(), "a queued cancel counts before it is handled");
        Cancelled cancelled = assertThrows(Cancelled.class, events::drain);
        assertEquals("operator", cancelled.getMessage());
        assertEquals(Optional.of("operator"), events.cancelReason(), "and after");
    }

    @Test
    void shouldIgnoreACancelOnceCommitWasSent() throws Exception {
        reach(SourceState.HANDSHAKE, SourceState.RAM, SourceState.PRE_SWITCHOVER, SourceState.VERIFIED,
                SourceState.DEST_READY, SourceState.COMMITTED);
        events.add(new SourceEvent.CancelRequested("too late"));
        events.drain();
        assertTrue(events.cancelSeenWithin(0));
        assertEquals(SourceState.COMMITTED, machine.state());
    }

    @Test
    void shouldMoveTheStateAndPassConfirmationsOnWhileAwaitingAFrame() throws Exception {
        reach(SourceState.HANDSHAKE, SourceState.RAM);
        events.add(new SourceEvent.PeerFrame(new Frame.Confirmed(4)));
        events.add(new SourceEvent.RamStatusChanged(RamStatus.PRE_SWITCHOVER));
        events.add(new SourceEvent.PeerFrame(new Frame.Running()));
        events.awaitFrame(Frame.Running.class, 1_000, "RUNNING");
        assertEquals(List.of(4L), confirmed);
        assertEquals(SourceState.PRE_SWITCHOVER, machine.state());
    }

    @Test
    void shouldCallAnEndOfStreamALostLinkAndTheDestinationsErrorAFailure() {
        reach(SourceState.HANDSHAKE);
        events.add(new SourceEvent.Failure(Phase.BULK_COPY, new EOFException("end of stream")));
        LinkLost lost = assertThrows(LinkLost.class, events::drain);
        assertEquals("connection to the destination lost: end of stream", lost.getMessage());
        events.add(new SourceEvent.PeerFrame(new Frame.Error("bulk", "disk full")));
        MigrationException failed = assertThrows(MigrationException.class, events::drain);
        assertEquals("destination failed in bulk: disk full", failed.getMessage());
    }

    @Test
    void shouldNameTheDestinationsQueuedErrorAsThePeerReason() {
        events.add(new SourceEvent.PeerFrame(new Frame.Verified()));
        events.add(new SourceEvent.PeerFrame(new Frame.Error("handshake", "configuration differs")));
        assertEquals(Optional.of("destination failed in handshake: configuration differs"), events.peerReason(null));
    }

    @Test
    void shouldDropAnEndedAttemptsEventsButNotACancel() {
        events.add(new SourceEvent.PeerFrame(new Frame.Error("bulk", "old attempt")));
        events.add(new SourceEvent.CancelRequested("operator"));
        events.dropAttempt();
        assertEquals(Optional.empty(), events.queuedPeerReason());
        assertEquals(Optional.of("operator"), events.cancelReason());
    }

    @Test
    void shouldSayWhatItWaitedForWhenTheTimeIsUp() {
        reach(SourceState.HANDSHAKE);
        MigrationException timedOut = assertThrows(MigrationException.class,
                () -> events.awaitState(SourceState.VERIFIED, 0, "the destination's digest verification"));
        assertEquals("timed out after 0 ms waiting for the destination's digest verification", timedOut.getMessage());
    }
}
