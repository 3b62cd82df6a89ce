package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtySnapshot;
import java.util.List;
import org.junit.jupiter.api.Test;

class ResendLedgerTest {
    private static final int GRANULE = 4096;
    private static final long DISK = 1024L * GRANULE;

    private static DirtySnapshot granules(long first, long end) {
        DirtyBitmap bitmap = new DirtyBitmap(DISK, GRANULE);
        bitmap.markGranules(first, end);
        return bitmap.snapshotAndClear();
    }

    private static ResendLedger ledger() {
        return new ResendLedger(List.of(DISK, DISK), GRANULE, 8L * GRANULE, 0);
    }

    @Test
    void shouldOweWhatIsPlannedUntilItIsSentAndConfirmed() {
        ResendLedger ledger = ledger();
        ledger.planned(0, granules(0, 100));
        assertEquals(100, ledger.owed(0).count(), "planned, not sent");
        ledger.sent(0, 0, 40, 40L * GRANULE);
        assertEquals(100, ledger.owed(0).count(), "sent but unconfirmed is still owed");
        assertEquals(60, ledger.unsent(0).count());
        long checkpoint = ledger.checkpoint(1);
        ledger.confirmed(checkpoint);
        assertEquals(60, ledger.owed(0).count(), "confirmed granules are no longer owed");
        assertFalse(ledger.owed(0).isDirty(39));
        assertTrue(ledger.owed(0).isDirty(40));
        assertEquals(0, ledger.owed(1).count(), "the other disk owes nothing");
    }

    @Test
    void shouldKeepAGranuleOwedWhenItIsPlannedAgainAfterItsSendAndBeforeItsConfirmation() {
        ResendLedger ledger = ledger();
        ledger.planned(0, granules(5, 6));
        ledger.sent(0, 5, 1, GRANULE);
        long first = ledger.checkpoint(1);
        ledger.planned(0, granules(5, 6));                 // the guest wrote it again: the next pass sends it
        ledger.confirmed(first);                           // the old copy is durable; the new one is not sent yet
        assertTrue(ledger.owed(0).isDirty(5), "the rewritten granule must stay owed");
    }

    @Test
    void shouldResumeAtTheDestinationsCheckpointAndRequeueEverythingSentAfterIt() {
        ResendLedger ledger = ledger();
        ledger.planned(0, granules(0, 30));
        ledger.sent(0, 0, 10, 10L * GRANULE);
        long c0 = ledger.checkpoint(1);
        ledger.sent(0, 10, 10, 10L * GRANULE);
        long c1 = ledger.checkpoint(2);
        ledger.sent(0, 20, 5, 5L * GRANULE);               // open interval: no checkpoint yet
        assertEquals(-1, ledger.lastConfirmed(), "no CONFIRMED arrived before the link dropped");
        ledger.resumeAt(c0);                               // the destination's journal holds c0 (its CONFIRMED was lost)
        assertEquals(20, ledger.unsent(0).count(), "c1, the open interval and the never-sent granules go again");
        assertFalse(ledger.unsent(0).isDirty(9));
        assertTrue(ledger.unsent(0).isDirty(10));
        assertEquals(c0, ledger.lastConfirmed());
        assertTrue(ledger.checkpoint(3) > c1, "numbers go on above every number already used");
    }

    @Test
    void shouldCallForACheckpointByBytesOrTimeOnlyWhenSomethingWasSent() {
        ResendLedger ledger = ledger();
        assertFalse(ledger.checkpointDue(ResendLedger.HEARTBEAT_NS - 1), "nothing sent: only the heartbeat's checkpoint");
        assertTrue(ledger.checkpointDue(ResendLedger.HEARTBEAT_NS), "the heartbeat: the destination's answer shows the link lives");
        ledger.checkpoint(0);
        ledger.sent(0, 0, 1, GRANULE);
        assertFalse(ledger.checkpointDue(1));
        assertTrue(ledger.checkpointDue(ResendLedger.CHECKPOINT_INTERVAL_NS), "a second after the last one");
        ledger.checkpoint(ResendLedger.CHECKPOINT_INTERVAL_NS);
        ledger.sent(1, 0, 8, 8L * GRANULE);
        assertTrue(ledger.checkpointDue(ResendLedger.CHECKPOINT_INTERVAL_NS + 1), "8 granules: the byte threshold");
    }
}
