package ferry.vm;

import ferry.image.BlockImage;
import ferry.migration.DestinationHost;
import ferry.migration.MigrationException;
import ferry.migration.PartialMigration;
import ferry.migration.Phase;
import ferry.migration.RamStatus;
import ferry.migration.SourceVm;
import ferry.qmp.QmpEvent;
import ferry.qmp.QmpException;
import ferry.qmp.QmpEventListener;
import java.nio.file.Path;
import java.util.List;

/**
 * What the two destinations' prepared VMs share ({@link IncomingVm}'s QEMU that Ferry starts,
 * {@link AttachedIncoming}'s that a user started): the received images and journals, the socket QEMU
 * takes its RAM stream on, QEMU's migration events passed to the session, and {@code cont} ending the
 * partial state. How QEMU is reached, started and dropped is each subclass's.
 *
 * <p>Threads: QEMU's events arrive on {@code qmp-reader}; the rest is the session's (see {@link ReceivedImages}).
 */
abstract class ReceivingVm implements DestinationHost.PreparedVm {
    protected final ReceivedImages received;
    private final Path ramSocket;
    private volatile SourceVm.RamListener listener;

    ReceivingVm(ReceivedImages received, Path ramSocket) {
        this.received = received;
        this.ramSocket = ramSocket;
    }

    /** Hands QEMU's incoming migration status to the session; add it to QEMU's events in {@link #startVm()}. */
    protected final QmpEventListener ramEvents = event -> {
        SourceVm.RamListener l = listener;
        if (l != null && event instanceof QmpEvent.MigrationEvent(ferry.qmp.MigrationState status)) {
            l.ramStatus(RamStatus.ofQapi(status.qapiName()));
        }
    };

    /** {@code cont} on this destination's QEMU. */
    protected abstract void cont() throws QmpException;

    @Override
    public final void resume() throws MigrationException {
        try {
            cont();
        } catch (QmpException e) {
            throw new MigrationException(Phase.COMPLETE, "cont on the destination VM failed: " + e.getMessage(), e);
        } finally {
            received.committed();                     // the VM is this host's, nothing is kept to resume
        }
    }

    @Override
    public List<BlockImage> images() {
        return received.images();
    }

    @Override
    public void imagesComplete() throws MigrationException {
        received.complete();
    }

    @Override
    public List<Boolean> fresh() {
        return received.fresh();
    }

    @Override
    public PartialMigration journal() {
        return received.journal();
    }

    @Override
    public Path ramSocket() {
        return ramSocket;
    }

    @Override
    public void ramListener(SourceVm.RamListener listener) {
        this.listener = listener;
    }
}
