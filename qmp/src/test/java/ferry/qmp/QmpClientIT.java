package ferry.qmp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import ferry.testkit.Tools;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** QmpClient and QemuProcess against a real QEMU with no guest ({@code -machine none -S}). */
@Tag("vm")
class QmpClientIT {
    @TempDir Path tmp;
    private QemuProcess qemu;
    private final BlockingQueue<QmpEvent> events = new LinkedBlockingQueue<>();

    @BeforeEach
    void startQemu() throws Exception {
        Tools.require("qemu-system-x86_64");
        Path socket = tmp.resolve("qmp.sock");
        qemu = new QemuProcess("qmp-it", List.of("qemu-system-x86_64", "-machine", "none", "-accel", "tcg",
                "-nodefaults", "-display", "none", "-S",
                "-chardev", "socket,id=ferry-qmp,path=" + socket + ",server=on,wait=off",
                "-mon", "chardev=ferry-qmp,mode=control"), socket, tmp.resolve("qemu.log"));
        qemu.addListener(events::add);
        qemu.start(10_000);
    }

    @AfterEach
    void stopQemu() throws Exception {
        if (qemu != null) {
            qemu.close();
        }
    }

    private <E extends QmpEvent> E nextEvent(Class<E> type) throws InterruptedException {
        QmpEvent event = events.poll(5, TimeUnit.SECONDS);
        assertTrue(type.isInstance(event), "expected " + type.getSimpleName() + ", got " + event);
        return type.cast(event);
    }

    @Test
    void shouldQueryStatusVersionAndRunHmp() throws Exception {
        QmpClient qmp = qemu.qmp();
        assertEquals(7, qmp.version().major());
        assertEquals(qmp.version(), qmp.execute(new QmpCommand.QueryVersion()));
        assertEquals(new StatusInfo(false, RunState.PRELAUNCH), qmp.execute(new QmpCommand.QueryStatus()));
        String info = qmp.execute(new QmpCommand.HumanMonitorCommand("info version"));
        assertTrue(info.startsWith(qmp.version().major() + "." + qmp.version().minor()), info);
    }

    @Test
    void shouldDeliverStopAndResumeEvents() throws Exception {
        QmpClient qmp = qemu.qmp();
        qmp.execute(new QmpCommand.Cont());
        nextEvent(QmpEvent.Resume.class);
        assertEquals(new StatusInfo(true, RunState.RUNNING), qmp.execute(new QmpCommand.QueryStatus()));
        qmp.execute(new QmpCommand.Stop());
        nextEvent(QmpEvent.Stop.class);
        assertEquals(new StatusInfo(false, RunState.PAUSED), qmp.execute(new QmpCommand.QueryStatus()));
    }

    @Test
    void shouldReportErrorRepliesWithClassDescAndCommand() throws Exception {
        QmpException e = assertThrows(QmpException.class, () -> qemu.qmp().execute(new QmpCommand.MigrateIncoming("unix:" + tmp.resolve("in.sock"))));
        assertEquals(QmpException.Kind.ERROR_REPLY, e.kind());
        assertEquals("migrate-incoming", e.command().orElseThrow());
        assertEquals("GenericError", e.errorClass().orElseThrow());
        assertTrue(e.desc().orElseThrow().contains("-incoming"), e.getMessage());
        assertTrue(e.getMessage().startsWith("qmp command failed: command=migrate-incoming class=GenericError: "), e.getMessage());
        // the connection stays usable after an error reply
        assertEquals(RunState.PRELAUNCH, qemu.qmp().execute(new QmpCommand.QueryStatus()).status());
    }

    @Test
    void shouldMatchConcurrentRepliesById() throws Exception {
        try (ExecutorService pool = Executors.newFixedThreadPool(4)) {
            List<Future<String>> replies = new ArrayList<>();
            // "help NAME" answers with NAME's help line, so each reply shows which request it belongs to
            List<String> names = List.of("stop", "cont", "quit", "info", "system_reset", "system_powerdown",
                    "migrate", "migrate_cancel", "migrate_incoming", "migrate_set_parameter");
            for (int i = 0; i < 40; i++) {
                String name = names.get(i % names.size());
                replies.add(pool.submit(() -> qemu.qmp().execute(new QmpCommand.HumanMonitorCommand("help " + name))));
            }
            for (int i = 0; i < replies.size(); i++) {
                String reply = replies.get(i).get(10, TimeUnit.SECONDS);
                assertTrue(reply.matches("(?s)" + names.get(i % names.size()) + "[ |].*"), i + ": " + reply);
            }
        }
    }

    @Test
    void shouldTimeOutAndFailPendingCallsClearlyWhenQemuIsKilled() throws Exception {
        ProcessHandle handle = ProcessHandle.of(qemu.pid()).orElseThrow();
        Tools.run(5, "kill", "-STOP", Long.toString(qemu.pid())).orFail();
        QmpException timeout = assertThrows(QmpException.class, () -> qemu.qmp().execute(new QmpCommand.QueryStatus(), 200));
        assertEquals(QmpException.Kind.TIMEOUT, timeout.kind());
        assertTrue(timeout.getMessage().startsWith("qmp command timed out: command=query-status timeoutMs=200"), timeout.getMessage());

        try (ExecutorService pool = Executors.newSingleThreadExecutor()) {
            Callable<StatusInfo> call = () -> qemu.qmp().execute(new QmpCommand.QueryStatus(), 30_000);
            Future<StatusInfo> pending = pool.submit(call);
            Thread.sleep(200);
            assertFalse(pending.isDone());
            handle.destroyForcibly();
            Exception e = assertThrows(Exception.class, () -> pending.get(10, TimeUnit.SECONDS));
            QmpException closed = (QmpException) e.getCause();
            assertEquals(QmpException.Kind.CLOSED, closed.kind());
            assertEquals("query-status", closed.command().orElseThrow());
            assertTrue(closed.getMessage().contains("qmp connection closed by QEMU"), closed.getMessage());
        }
        assertEquals(137, qemu.onExit().get(10, TimeUnit.SECONDS));
        QmpException later = assertThrows(QmpException.class, () -> qemu.qmp().execute(new QmpCommand.Cont()));
        assertEquals(QmpException.Kind.CLOSED, later.kind());
        assertTrue(later.getMessage().startsWith("qmp command failed: command=cont: qmp connection closed by QEMU"), later.getMessage());
        assertTrue(qemu.qmp().closed().isDone());
    }

    @Test
    void shouldQuitOnStopWithAShutdownEvent() throws Exception {
        assertEquals(0, qemu.stop(5_000));
        assertEquals(new QmpEvent.Shutdown(false, "host-qmp-quit"), nextEvent(QmpEvent.Shutdown.class));
        assertFalse(qemu.alive());
    }

    @Test
    void shouldExplainAQemuThatCannotStart() throws Exception {
        Path socket = tmp.resolve("bad.sock");
        Path log = tmp.resolve("bad.log");
        try (QemuProcess bad = new QemuProcess("bad", List.of("qemu-system-x86_64", "-machine", "none", "-nodefaults",
                "-display", "none", "-no-such-option",
                "-chardev", "socket,id=ferry-qmp,path=" + socket + ",server=on,wait=off",
                "-mon", "chardev=ferry-qmp,mode=control"), socket, log)) {
            QemuException e = assertThrows(QemuException.class, () -> bad.start(10_000));
            assertEquals(QemuException.Kind.EXITED, e.kind());
            assertTrue(e.getMessage().contains("qemu exited before opening its QMP socket")
                    && e.getMessage().contains("-no-such-option"), e.getMessage());
            assertTrue(Files.readString(log).contains("invalid option"), Files.readString(log));
        }
    }
}
