package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** What a {@link MigrationListener} hears (Ferry's QMP MIGRATION and MIGRATION_PASS events come from it). */
class MigrationStatsTest {
    @Test
    void shouldTellTheCurrentStatusThenEachChangeAndEachPassOnce() {
        MigrationStats stats = new MigrationStats();
        List<String> heard = new ArrayList<>();
        stats.addListener(new MigrationListener() {
            @Override public void statusChanged(MigrationStatus status) {
                heard.add(status.qemuName());
            }

            @Override public void passStarted(int dirtyPass) {
                heard.add("pass " + dirtyPass);
            }
        });
        stats.status(MigrationStatus.ACTIVE);
        stats.dirtyPass(0);
        stats.dirtyPass(1);
        stats.status(MigrationStatus.ACTIVE);                 // no change: not told again
        stats.fail(MigrationStatus.FAILED, "cut");
        assertEquals(List.of("setup", "active", "pass 0", "pass 1", "failed"), heard);
    }

    @Test
    void shouldShowCancellingUntilTheMigrationEndsAndNotAfter() {
        MigrationStats stats = new MigrationStats();
        stats.status(MigrationStatus.ACTIVE);
        stats.cancelling();
        assertEquals(MigrationStatus.CANCELLING, stats.report().status(), "as QEMU's info migrate while it cancels");
        stats.fail(MigrationStatus.CANCELLED, "migrate_cancel");
        stats.cancelling();
        assertEquals(MigrationStatus.CANCELLED, stats.report().status(), "a late cancel does not reopen an ended migration");
    }
}
