package ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
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

    @Test
    void shouldFindTheDirectoriesOfDeadFerrysOfThisVmWhoseQemuStillRuns() throws Exception {
        long alive = ProcessHandle.current().pid();
        Path orphan = Files.createDirectories(parent.resolve("ferry-in-999999998"));
        Files.writeString(orphan.resolve("ferry.pid"), "999999998");                   // dead
        Files.writeString(orphan.resolve("qemu.pid"), Long.toString(alive));            // alive
        Path otherVm = Files.createDirectories(parent.resolve("ferry-in-x-999999997"));   // VM "in-x", not "in"
        Files.writeString(otherVm.resolve("ferry.pid"), "999999997");
        Files.writeString(otherVm.resolve("qemu.pid"), Long.toString(alive));
        Path qemuGone = Files.createDirectories(parent.resolve("ferry-in-999999996"));
        Files.writeString(qemuGone.resolve("ferry.pid"), "999999996");
        Files.writeString(qemuGone.resolve("qemu.pid"), "999999995");
        Path ferryAlive = Files.createDirectories(parent.resolve("ferry-in-" + alive));
        Files.writeString(ferryAlive.resolve("ferry.pid"), Long.toString(alive));
        Files.writeString(ferryAlive.resolve("qemu.pid"), Long.toString(alive));

        assertEquals(java.util.List.of(new RuntimeDir.Orphan(orphan, 999_999_998L, alive)), RuntimeDir.orphans(parent, "in"));
        assertEquals(orphan.resolve("qmp.sock"), RuntimeDir.orphans(parent, "in").getFirst().qmpSocket());
        assertEquals(java.util.List.of(), RuntimeDir.orphans(parent.resolve("missing"), "in"), "no parent yet: nothing left");
    }

    @Test
    void shouldRefuseASymlinkPlantedAtItsOwnNameAndWriteNothingThroughIt() throws Exception {
        Path elsewhere = Files.createDirectories(parent.resolve("elsewhere"));
        Files.createSymbolicLink(parent.resolve("ferry-vm-" + ProcessHandle.current().pid()), elsewhere);
        java.io.IOException e = assertThrows(java.io.IOException.class, () -> RuntimeDir.create(parent, "vm"));
        assertTrue(e.getMessage().contains("already exists"), e.getMessage());
        try (var listing = Files.list(elsewhere)) {
            assertEquals(0, listing.count(), "nothing may be written through the symlink");
        }
    }

    @Test
    void shouldRefuseASharedParentThatIsASymlinkOrOpenToOthers() throws Exception {
        Path open = Files.createDirectories(parent.resolve("open"));
        Files.setPosixFilePermissions(open, java.nio.file.attribute.PosixFilePermissions.fromString("rwxrwxrwx"));
        assertTrue(assertThrows(java.io.IOException.class, () -> RuntimeDir.privateDirectory(open)).getMessage()
                .contains("others may use it"));
        Path link = Files.createSymbolicLink(parent.resolve("link"), Files.createDirectories(parent.resolve("target")));
        assertTrue(assertThrows(java.io.IOException.class, () -> RuntimeDir.privateDirectory(link)).getMessage().contains("a symlink"));
        Path fresh = parent.resolve("fresh");
        RuntimeDir.privateDirectory(fresh);
        assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(fresh)));
        RuntimeDir.privateDirectory(fresh);                   // made before by this user: fine
        assertTrue(RuntimeDir.sharedDefault().toString().startsWith(ProcessHandle.current().info().user().orElse("").equals("root")
                ? "/run/ferry" : System.getProperty("java.io.tmpdir")), RuntimeDir.sharedDefault().toString());
    }

    @Test
    void shouldNeverFollowASymlinkWhenRemovingAStaleDirectory() throws Exception {
        Path victim = Files.createDirectories(parent.resolve("victim"));
        Files.writeString(victim.resolve("ferry.pid"), "999999996");          // looks stale, but is reached only through links
        Files.writeString(victim.resolve("precious"), "data");
        Files.createSymbolicLink(parent.resolve("ferry-vm-999999996"), victim);
        Path stale = Files.createDirectories(parent.resolve("ferry-vm-999999995"));
        Files.writeString(stale.resolve("ferry.pid"), "999999995");
        Files.createSymbolicLink(stale.resolve("inside-link"), victim);
        try (RuntimeDir dir = RuntimeDir.create(parent, "vm")) {
            assertFalse(Files.exists(stale, java.nio.file.LinkOption.NOFOLLOW_LINKS), "the real stale directory goes");
        }
        assertTrue(Files.exists(victim.resolve("precious")), "a symlink's target was removed");
        assertTrue(Files.isSymbolicLink(parent.resolve("ferry-vm-999999996")), "a symlink is never taken for a stale directory");
    }

    @Test
    void shouldRefuseADirectoryTooLongForItsSocketsBeforeMakingIt(@TempDir Path tmp) throws Exception {
        Path parent = tmp.resolve("x".repeat(Math.max(1, 100 - tmp.toString().length())));
        java.io.IOException e = assertThrows(java.io.IOException.class,
                () -> RuntimeDir.create(parent, "vm"));
        assertTrue(e.getMessage().contains("too long for its unix sockets")
                && e.getMessage().contains("--runtime-dir"), e.getMessage());
        try (var made = Files.list(parent)) {
            assertEquals(0, made.count(), "nothing made in the parent");
        }
        RuntimeDir.checkSocketRoom(tmp.resolve("ferry-vm-1"));    // a short one passes
    }
}
