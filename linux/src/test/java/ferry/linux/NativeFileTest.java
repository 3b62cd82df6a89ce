package ferry.linux;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NativeFileTest {
    @TempDir
    Path dir;

    @Test
    void shouldNameErrnoValuesLikeStrerror() {
        assertEquals("No space left on device (ENOSPC)", Errno.ENOSPC.toString());
        assertEquals("EOPNOTSUPP", new Errno(95).name());
        assertEquals("Unknown error 200 (errno 200)", new Errno(200).toString());
    }

    @Test
    void shouldStartWritebackWithoutLosingDataAndFailOnAClosedFile() throws Exception {
        byte[] data = new byte[1 << 20];
        new Random(3).nextBytes(data);
        NativeFile file = NativeFile.createNew(dir.resolve("wb"), 0600);
        file.write(0, MemorySegment.ofArray(data));
        file.startWriteback();
        file.dataSync();
        byte[] back = new byte[data.length];
        assertEquals(data.length, file.read(0, MemorySegment.ofArray(back)));
        assertArrayEquals(data, back);
        file.close();
        NativeIoException closed = assertThrows(NativeIoException.class, file::startWriteback);
        assertEquals(Errno.EBADF, closed.errno());
    }

    @Test
    void shouldRoundTripHeapSegmentsLargerThanTheBounceBuffer() throws Exception {
        byte[] data = new byte[NativeFile.BOUNCE_LENGTH * 2 + 13];
        new Random(7).nextBytes(data);
        try (NativeFile file = NativeFile.createNew(dir.resolve("f"), 0600)) {
            file.write(5, MemorySegment.ofArray(data));
            byte[] back = new byte[data.length];
            assertEquals(data.length, file.read(5, MemorySegment.ofArray(back)));
            assertArrayEquals(data, back);
            assertEquals(data.length + 5, file.size());
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment tail = arena.allocate(100);
                assertEquals(10, file.read(data.length - 5, tail), "a read stops at the end of file");
                assertEquals(data[data.length - 1], tail.get(ValueLayout.JAVA_BYTE, 9));
            }
            ByteBuffer direct = ByteBuffer.allocateDirect(8);
            assertEquals(8, file.read(5, direct));
            assertEquals(8, direct.position());
        }
    }

    @Test
    void shouldSeekDataAndHolesAndReportNoMoreData() throws Exception {
        try (NativeFile file = NativeFile.createNew(dir.resolve("s"), 0600)) {
            file.truncate(1 << 20);
            assertEquals(NativeFile.NO_MORE, file.seekData(0), "an empty sparse file has no data");
            file.write(512 * 1024, ByteBuffer.wrap(new byte[] {1, 2, 3}));
            long data = file.seekData(0);
            assertEquals(true, data <= 512 * 1024 && data > 0, "data found at " + data);
            assertEquals(true, file.seekHole(data) > 512 * 1024, "a hole after the data");
            file.punchHole(0, 1 << 20);
            assertEquals(NativeFile.NO_MORE, file.seekData(0));
            assertEquals(1 << 20, file.size(), "punching keeps the size");
        }
    }

    @Test
    void shouldReportErrnoNamesForFailedCalls() throws Exception {
        Path path = dir.resolve("e");
        NativeFile.createNew(path, 0600).close();
        NativeIoException exists = assertThrows(NativeIoException.class, () -> NativeFile.createNew(path, 0600));
        assertEquals(Errno.EEXIST, exists.errno());
        assertEquals("open failed: path=" + path + ": File exists (EEXIST)", exists.getMessage());
        try (NativeFile readOnly = NativeFile.open(path, true)) {
            NativeIoException e = assertThrows(NativeIoException.class,
                    () -> readOnly.write(0, ByteBuffer.allocateDirect(1)));
            assertEquals(Errno.EBADF, e.errno());
            assertEquals("pwrite", e.call());
        }
        assertEquals(Errno.ENOENT, assertThrows(NativeIoException.class,
                () -> NativeFile.open(dir.resolve("missing"), true)).errno());
        assertEquals(0, Files.size(path));
    }

    @Test
    void shouldSeeAnotherDescriptorsOfdReadLockButNeverItsOwn() throws Exception {
        Path path = dir.resolve("locked.raw");
        Files.write(path, new byte[4096]);
        try (NativeFile a = NativeFile.open(path, true); NativeFile b = NativeFile.open(path, false)) {
            assertTrue(a.tryReadLock(101, 1));
            assertFalse(a.lockedByOthers(101, 1), "own locks do not count");
            assertTrue(b.lockedByOthers(101, 1), "another open file description's lock is seen, even in this process");
            assertFalse(b.lockedByOthers(102, 1));
            assertTrue(b.tryReadLock(101, 1), "read locks share");
            a.unlock(101, 1);
            b.unlock(101, 1);
            assertFalse(b.lockedByOthers(101, 1));
            assertTrue(a.tryReadLock(200, 1));
        }
        try (NativeFile c = NativeFile.open(path, true)) {
            assertFalse(c.lockedByOthers(100, 200), "close drops the descriptor's locks");
        }
    }

    @Test
    void shouldRefuseToOpenASymbolicLinkWithNoFollowButOpenTheFileItNames() throws Exception {
        Path target = dir.resolve("target");
        Files.write(target, new byte[] {7});
        Path link = Files.createSymbolicLink(dir.resolve("link"), target);
        NativeIoException e = assertThrows(NativeIoException.class, () -> NativeFile.openNoFollow(link, false));
        assertEquals(Errno.ELOOP, e.errno());
        try (NativeFile followed = NativeFile.open(link, true); NativeFile direct = NativeFile.openNoFollow(target, false)) {
            assertTrue(followed.isRegularFile());
            assertTrue(direct.isRegularFile());
            assertEquals(1, direct.size());
        }
    }

    @Test
    void shouldTellARegularFileFromADirectoryAndADevice() throws Exception {
        try (NativeFile devNull = NativeFile.open(Path.of("/dev/null"), true)) {
            assertFalse(devNull.isRegularFile(), "a character device");
        }
        try (NativeFile directory = NativeFile.open(dir, true)) {
            assertFalse(directory.isRegularFile(), "a directory opened read-only");
        }
        NativeFile closed = NativeFile.createNew(dir.resolve("c"), 0600);
        assertTrue(closed.isRegularFile());
        closed.close();
        assertEquals(Errno.EBADF, assertThrows(NativeIoException.class, closed::isRegularFile).errno());
    }

    @Test
    void shouldSyncADirectoryAndRefuseAFileOrAMissingOne() throws Exception {
        NativeFile.createNew(dir.resolve("entry"), 0600).close();
        NativeFile.syncDirectory(dir);
        assertEquals(Errno.ENOTDIR, assertThrows(NativeIoException.class,
                () -> NativeFile.syncDirectory(dir.resolve("entry"))).errno());
        NativeIoException missing = assertThrows(NativeIoException.class, () -> NativeFile.syncDirectory(dir.resolve("gone")));
        assertEquals(Errno.ENOENT, missing.errno());
        assertTrue(missing.getMessage().contains(dir.resolve("gone").toString()), missing.getMessage());
    }
}
