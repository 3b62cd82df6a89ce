package ferry.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.image.ImageLock.Permission;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Each ImageLock has its own open file description, so two in one process conflict as two processes would. */
class ImageLockTest {
    @TempDir Path dir;

    private Path image() throws Exception {
        Path path = dir.resolve("disk.raw");
        Files.write(path, new byte[64 * 1024]);
        return path;
    }

    @Test
    void shouldRefuseASecondWriterWithQemusMessageNamingTheImage() throws Exception {
        Path path = image();
        try (ImageLock first = ImageLock.forServing(path, false)) {
            ImageException e = assertThrows(ImageException.class, () -> ImageLock.forServing(path, false));
            assertEquals(ImageException.Kind.IN_USE, e.kind());
            assertTrue(e.getMessage().contains("Failed to get \"write\" lock"), e.getMessage());
            assertTrue(e.getMessage().contains("path=" + path), e.getMessage());
        }
        ImageLock.forServing(path, false).close();   // the first one's close released everything
    }

    @Test
    void shouldRefuseAReaderThatUnsharesWriteWhileAWriterHoldsTheImage() throws Exception {
        Path path = image();
        try (ImageLock writer = ImageLock.forServing(path, false)) {
            ImageException e = assertThrows(ImageException.class, () -> ImageLock.forServing(path, true));
            assertTrue(e.getMessage().contains("Failed to get shared \"write\" lock"), e.getMessage());
        }
    }

    @Test
    void shouldLetReadersShareAndKeepWritersOut() throws Exception {
        Path path = image();
        try (ImageLock a = ImageLock.forServing(path, true); ImageLock b = ImageLock.forServing(path, true)) {
            assertThrows(ImageException.class, () -> ImageLock.forServing(path, false));
        }
    }

    @Test
    void shouldLetAUserThatSharesEverythingInBesideAWriter() throws Exception {
        Path path = image();   // like qemu-img info -U (force share): it wants consistent read and unshares nothing
        try (ImageLock writer = ImageLock.forServing(path, false);
                ImageLock forceShare = ImageLock.acquire(path, EnumSet.of(Permission.CONSISTENT_READ), EnumSet.allOf(Permission.class))) {
            assertTrue(forceShare.toString().contains("disk.raw"));
        }
    }
}
