package ferry.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.qmp.BlockExportInfo;
import ferry.qmp.BlockInfo;
import ferry.qmp.IoThrottle;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;

/**
 * What a test sees of a QEMU's block layer through a QMP monitor of its own, given to QEMU with
 * {@code --qemu-arg -qmp --qemu-arg unix:PATH,server=on,wait=off} (QEMU serves several monitors):
 * QEMU's answers, not Ferry's. QEMU 7.2's HMP shows a drive's I/O limits ({@code info block}) but
 * neither its dirty bitmaps ({@code info block -v} lists none) nor block exports nor the NBD server,
 * hence QMP. The NBD server has no query in 7.2: {@code nbd-server-start} on a probe socket answers
 * "already running" while one runs, and a server it did start is stopped at once.
 *
 * <p>Threads: the test's.
 */
final class QemuBlockLayer {
    private static final String FERRY_PREFIX = "ferry-";

    /** What QEMU holds: Ferry's dirty bitmaps and exports on the drive, whether an NBD server runs, the drive's limits. */
    record Seen(List<String> ferryBitmaps, List<String> ferryExports, boolean nbdServer, IoThrottle throttle) {
        /** Nothing of Ferry's, and the drive's limits are {@code own}. */
        /**
         * After a migration that failed or was cancelled with the destination holding a partial state: only the one
         * bitmap that keeps recording the guest's writes for {@code migrate -r} (DESIGN.md "Resume"), nothing else.
         */
        void assertOnlyTheResumeBitmap(IoThrottle own, String after) {
            assertTrue(ferryBitmaps.size() == 1 && ferryExports.isEmpty() && !nbdServer && throttle.equals(own),
                    "after " + after + ", QEMU should hold only Ferry's resume bitmap: " + this + "; the drive's own limits: " + own);
        }

        void assertNothingOfFerry(IoThrottle own, String after) {
            assertTrue(ferryBitmaps.isEmpty() && ferryExports.isEmpty() && !nbdServer && throttle.equals(own),
                    "after " + after + ", QEMU still holds Ferry's block-layer state: " + this + "; the drive's own limits: " + own);
        }
    }

    private final Path socket;
    private final Path probeSocket;

    /** @param socket the extra QMP monitor's socket; @param probeSocket where a probing NBD server may listen */
    QemuBlockLayer(Path socket, Path probeSocket) {
        this.socket = socket;
        this.probeSocket = probeSocket;
    }

    /** The {@code ferry run} arguments that give QEMU this monitor. */
    List<String> qemuArgs() {
        return List.of("--qemu-arg", "-qmp", "--qemu-arg", "unix:" + socket + ",server=on,wait=off");
    }

    /** Asks QEMU now, on a fresh connection (no events pile up between looks). */
    Seen look(String drive) throws QmpException {
        try (QmpClient qmp = new QmpClient(socket)) {
            qmp.start(30_000);
            BlockInfo block = qmp.execute(new QmpCommand.QueryBlock()).stream().filter(b -> b.device().equals(drive))
                    .findFirst().orElseThrow(() -> new AssertionError("QEMU has no drive " + drive));
            BlockInfo.Inserted inserted = block.inserted().orElseThrow(() -> new AssertionError(drive + " has no medium"));
            List<String> bitmaps = new ArrayList<>();
            for (BlockInfo.DirtyBitmapInfo bitmap : inserted.dirtyBitmaps()) {
                bitmap.name().filter(n -> n.startsWith(FERRY_PREFIX)).ifPresent(bitmaps::add);
            }
            List<String> exports = qmp.execute(new QmpCommand.QueryBlockExports()).stream().map(BlockExportInfo::id)
                    .filter(id -> id.startsWith(FERRY_PREFIX)).toList();
            return new Seen(bitmaps, exports, nbdServerRuns(qmp), inserted.throttle());
        }
    }

    private boolean nbdServerRuns(QmpClient qmp) throws QmpException {
        try {
            qmp.execute(new QmpCommand.NbdServerStart(probeSocket, OptionalLong.empty()));
        } catch (QmpException e) {
            if (e.desc().orElse("").contains("already running")) {
                return true;
            }
            throw e;
        }
        qmp.execute(new QmpCommand.NbdServerStop());
        return false;
    }
}
