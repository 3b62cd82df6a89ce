package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RuntimeDirTest {
    @TempDir Path parent;

    @Test
    void shouldLeaveDirectoriesItDidNotCreateAlone() throws Exception {
        // A kept demo work directory: its name looks like ours, its "pid" overflows a long.
        Path foreign = Files.createDirectories(parent.resolve("ferry-demo-16203266990007981292"));
        Files.writeString(foreign.resolve("disk.raw"), "data");
        try (RuntimeDir dir = RuntimeDir.create(parent, "vm")) {
            assertTrue(Files.isRegularFile(dir.resolve("ferry.pid")));
        }
        assertTrue(Files.exists(foreign.resolve("disk.raw")), "a directory without Ferry's owner file was touched");
    }

    @Test
    void shouldRemoveTheDirectoryOfADeadFerry() throws Exception {
        Path stale = Files.createDirectories(parent.resolve("ferry-vm-999999999"));
        long deadPid = 999_999_999L;                       // above pid_max: never alive
        Files.writeString(stale.resolve("ferry.pid"), Long.toString(deadPid));
        Files.writeString(stale.resolve("nbd.sock"), "");
        try (RuntimeDir dir = RuntimeDir.create(parent, "vm")) {
            assertFalse(Files.exists(stale), "the dead ferry's runtime directory is still there");
            assertTrue(Files.isDirectory(dir.path()));
        }
    }

    @Test
    void shouldKeepTheDirectoryOfADeadFerryWhoseQemuStillRuns() throws Exception {
        Path orphan = Files.createDirectories(parent.resolve("ferry-vm-999999998"));
        Files.writeString(orphan.resolve("ferry.pid"), "999999998");                                 // dead
        Files.writeString(orphan.resolve("qemu.pid"), Long.toString(ProcessHandle.current().pid())); // alive
        Files.writeString(orphan.resolve("qmp.sock"), "");
        try (RuntimeDir dir = RuntimeDir.create(parent, "vm")) {
            assertTrue(Files.exists(orphan.resolve("qmp.sock")), "the QMP socket of a QEMU that outlived its ferry was removed");
        }
        Files.writeString(orphan.resolve("qemu.pid"), "999999997");                                  // now gone too
        try (RuntimeDir dir = RuntimeDir.create(parent, "vm")) {
            assertFalse(Files.exists(orphan), "once QEMU is gone too the directory is stale");
        }
    }
}
