package ferry.vm;

import ferry.qmp.QmpClient;
import ferry.qmp.QmpCommand;
import ferry.qmp.QmpException;
import ferry.qmp.RunState;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The destination QEMU that a {@code ferry run -incoming} of the same VM left running when it was killed
 * ({@code kill -9}): a VM's QEMU outlives its Ferry ({@code QemuProcess.Tie.OUTLIVES_FERRY}) and keeps its runtime
 * directory. A new {@code ferry run -incoming} of that VM asks each such QEMU for its status first: one still in
 * {@code inmigrate} never received its VM, holds the images the new destination is about to write (and resume), and is
 * quit; any other runs a VM, which Ferry never stops on its own: it stays, with a warning.
 *
 * <p>Threads: the caller's ({@code ferry run}'s main thread, at start); the QMP connection's reader for the moment it
 * is open.
 */
final class StaleIncomingQemu {
    private static final System.Logger LOG = System.getLogger(StaleIncomingQemu.class.getName());
    private static final long CONNECT_TIMEOUT_MS = 5_000;
    /** How long a QEMU that was told to quit has before it is killed. */
    static final long QUIT_GRACE_MS = 10_000;

    /** What to do with a QEMU a killed Ferry of this VM left. */
    enum Decision {
        /** It waits for an incoming migration that will never come: quit it. */
        QUIT,
        /** It runs (or ran) the VM: leave it, and say so. */
        LEAVE
    }

    private StaleIncomingQemu() {}

    static Decision decide(RunState status) {
        return status == RunState.INMIGRATE ? Decision.QUIT : Decision.LEAVE;
    }

    /** Handles every QEMU a dead Ferry of {@code vmName} left under {@code runtimeParent}; each gets one log line. */
    static void handle(Path runtimeParent, String vmName) throws IOException {
        for (RuntimeDir.Orphan orphan : RuntimeDir.orphans(runtimeParent, vmName)) {
            handle(orphan, vmName);
        }
    }

    private static void handle(RuntimeDir.Orphan orphan, String vmName) {
        RunState status;
        try (QmpClient qmp = new QmpClient(orphan.qmpSocket())) {
            qmp.start(CONNECT_TIMEOUT_MS);
            status = qmp.execute(new QmpCommand.QueryStatus()).status();
            if (decide(status) == Decision.LEAVE) {
                LOG.log(System.Logger.Level.WARNING, "a QEMU of " + vmName + " still runs (pid " + orphan.qemuPid() + ", status "
                        + status.qapiName() + ") from a ferry that is gone; leaving it (ferry attach --qmp " + orphan.qmpSocket()
                        + " takes it back, or stop it there)");
                return;
            }
            try {
                qmp.execute(new QmpCommand.Quit());
            } catch (QmpException e) {
                // quit's reply races with QEMU closing the socket; whether the pid goes is what counts
                LOG.log(System.Logger.Level.DEBUG, "quit: " + e.getMessage());
            }
        } catch (QmpException e) {
            LOG.log(System.Logger.Level.WARNING, "a QEMU of " + vmName + " still runs (pid " + orphan.qemuPid() + ") from a ferry that"
                    + " is gone, and its QMP socket " + orphan.qmpSocket() + " does not answer (" + e.getMessage() + "); leaving it");
            return;
        }
        LOG.log(System.Logger.Level.INFO, "quit the QEMU (pid " + orphan.qemuPid() + ") that a killed ferry (pid " + orphan.ferryPid()
                + ") left waiting for an incoming migration of " + vmName + "; its images are this destination's again"
                + awaitGone(orphan.qemuPid()));
    }

    /** Waits up to {@link #QUIT_GRACE_MS} for the pid to go, then kills it; returns what the log line adds. */
    private static String awaitGone(long pid) {
        java.util.Optional<ProcessHandle> process = ProcessHandle.of(pid);
        if (process.isEmpty()) {
            return "";
        }
        try {
            process.get().onExit().get(QUIT_GRACE_MS, TimeUnit.MILLISECONDS);
            return "";
        } catch (TimeoutException e) {
            boolean qemu = process.get().info().command().map(c -> c.contains("qemu")).orElse(false);
            if (qemu) {
                process.get().destroyForcibly();
                return " (killed with SIGKILL: it had not exited " + QUIT_GRACE_MS / 1000 + " s after quit)";
            }
            return " (pid " + pid + " is still there, but no QEMU any more: left alone)";
        } catch (ExecutionException e) {
            return " (waiting for it to exit failed: " + e.getCause() + ")";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return " (interrupted while waiting for it to exit)";
        }
    }
}
