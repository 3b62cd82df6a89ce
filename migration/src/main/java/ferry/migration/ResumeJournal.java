package ferry.migration;

import ferry.linux.Errno;
import ferry.linux.NativeFile;
import ferry.linux.NativeIoException;
import ferry.migration.wire.MigrationWire;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.IntBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.UUID;

/**
 * The destination's crash-safe record of one disk of an interrupted migration: which migration, the
 * last checkpoint the destination committed, and the granule digests of what the image durably holds,
 * so that {@code migrate -r} sends only what the destination lacks. One file per destination image, at
 * {@link #pathFor} = the image's path + {@value #SUFFIX}: in the image's directory, so it lives and
 * dies with the image, and a destination never keeps two partial states for one drive. The format's
 * spec, with the same layout: docs/resume-journal.md.
 *
 * <h2>File layout, version 1 (big-endian)</h2>
 * <pre>
 *  0        header slot 0, 512 bytes  \  the valid one with the higher sequence is the header
 *  512      header slot 1, 512 bytes  /  (commits alternate between them)
 *  1024     zeroes
 *  4096     digest page of group 0: 1024 x u32, the granule digests of GranuleDigests (0 = untouched)
 *  4096 + g * 4096    digest page of group g
 * </pre>
 * A header slot ({@link JournalSlot}):
 * <pre>
 *  | magic "FERRYRSJ" | version u32 (1) | sequence u64 | checkpoint i64 | migration id 16 bytes |
 *  0                  8                 12             20               28                      44
 *  | granule size u32 | disk size u64 | created image u8 | started at, epoch ms i64 |
 *  44                 48              56                 57                         65
 *  | format length u8 | format, US-ASCII (<= 16) | disk id length u16 | disk id, UTF-8 (<= 256) | CRC32C u32 | zeroes .. 512
 *  65                 66                         66+F                 68+F                      68+F+D
 * </pre>
 * <ul>
 *   <li>sequence: 1 when created, +1 per committed checkpoint; a slot fails when its magic or its
 *       CRC32C (over the slot's bytes before it) is wrong; a slot of zeroes was never written.</li>
 *   <li>checkpoint: the last checkpoint whose data and digests are durable, -1 before the first.</li>
 *   <li>created image: 1 when Ferry created the image file for this migration, so discarding the
 *       partial state also deletes the image; 0 for an image that existed before, which is left.</li>
 *   <li>The page area is sparse: a page never written reads as zeroes, i.e. every granule untouched.
 *       A 16 TiB disk at 4 KiB granules has a 16 GiB journal that holds only the pages of groups the
 *       migration touched, and {@link #loadDigests()} skips the holes (SEEK_DATA / SEEK_HOLE).</li>
 *   <li>Versioning: a slot with a valid CRC and another version is refused with a message naming it,
 *       never read as version 1; a newer Ferry writes a new version number.</li>
 * </ul>
 *
 * <h2>Crash safety</h2>
 * A commit of checkpoint c across all disks (see {@link PartialMigration#commit}) is:
 * <ol>
 *   <li>fdatasync every image (the caller);</li>
 *   <li>write the changed digest pages of every journal ({@link #writePages}) and fdatasync each ({@link #syncData});</li>
 *   <li>write each journal's other header slot with sequence + 1 and c, and fdatasync each ({@link #commitHeader}).</li>
 * </ol>
 * Only then is CONFIRMED(c) sent. Pages always describe data that is already durable in the image
 * (step 1 before step 2). Everything sent after the last confirmed checkpoint is sent again on resume,
 * which makes every torn state harmless:
 * <ul>
 *   <li>a crash in or after step 2 but before step 3 reopens at the old checkpoint with some or all of
 *       the new pages: they describe data the image already holds, and every granule they mention
 *       was sent after that checkpoint, so it is sent again;</li>
 *   <li>a torn page mixes old, new and zero digests of granules that are all sent again;</li>
 *   <li>a torn header slot fails its CRC, so the other slot, the previous checkpoint, wins;</li>
 *   <li>a crash in step 3 after some journals committed leaves disks at c and others at c - 1:
 *       {@link PartialMigration#checkpoint()} is the minimum, c - 1, so the source re-sends c's data to all.</li>
 * </ul>
 * Between checkpoints the image may hold newer bytes than the digests say; those granules were sent
 * after the last confirmed checkpoint too. {@link #create} fsyncs the directory as well, so that the
 * journal's existence survives a crash; {@link #delete} does the same for its removal.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Two alternating header slots rather than a write to a temporary file and a rename: a commit
 *       is one 512-byte pwrite and one fdatasync, with no directory update, and the header slot
 *       needs no fsync of the directory. 512 bytes is the smallest sector, but no atomicity is assumed:
 *       the CRC decides.</li>
 *   <li>Pages at fixed offsets (group g at 4096 + g * 4096), not appended records: a checkpoint rewrites
 *       a changed page in place, the file never grows past the disk's page count, and no compaction is needed.
 *       fdatasync covers the file size when a page write extends the file.</li>
 *   <li>The journal is opened with O_NOFOLLOW and must be a regular file (statx), so a symbolic
 *       link planted beside an image cannot redirect the destination's writes or reads.</li>
 * </ul>
 *
 * <p>Threads: none of its own. One thread at a time (the destination session, or the thread it hands
 * a checkpoint's pages to).
 */
public final class ResumeJournal implements AutoCloseable {
    public static final String SUFFIX = ".ferry-resume";
    static final int[] SLOT_OFFSETS = {0, JournalSlot.LENGTH};
    static final long PAGES_OFFSET = 4096;
    static final int PAGE_LENGTH = GranuleDigests.PAGE_BYTES;
    /** Consecutive pages moved by one pread or pwrite (256 KiB). */
    private static final int PAGES_PER_IO = 64;
    private static final int FILE_MODE = 0600;

    /**
     * What the journal is about: one disk of one migration. {@code createdImage}: Ferry created the image
     * file for this migration, so discarding the partial state deletes it too. {@code startedAt} keeps
     * milliseconds, as the file does.
     */
    public record Identity(UUID migrationId, String diskId, long diskSize, int granuleSize, String format,
                           boolean createdImage, Instant startedAt) {
        public Identity {
            Objects.requireNonNull(migrationId, "migrationId");
            Objects.requireNonNull(diskId, "diskId");
            Objects.requireNonNull(format, "format");
            Objects.requireNonNull(startedAt, "startedAt");
            if (diskSize <= 0 || diskSize > MigrationWire.MAX_DISK_SIZE) {
                throw new IllegalArgumentException("disk " + diskId + ": size " + diskSize + " is out of range (1 .. "
                        + MigrationWire.MAX_DISK_SIZE + ")");
            }
            if (granuleSize < MigrationWire.MIN_GRANULE_SIZE || granuleSize > MigrationWire.MAX_GRANULE_SIZE
                    || Integer.bitCount(granuleSize) != 1) {
                throw new IllegalArgumentException("disk " + diskId + ": granule size " + granuleSize + " is not a power of two from "
                        + MigrationWire.MIN_GRANULE_SIZE + " to " + MigrationWire.MAX_GRANULE_SIZE);
            }
            if (format.isEmpty() || format.length() > JournalSlot.MAX_FORMAT_BYTES
                    || !format.chars().allMatch(c -> c > ' ' && c < 0x7f)) {
                throw new IllegalArgumentException("disk " + diskId + ": format \"" + format + "\" is not 1 to "
                        + JournalSlot.MAX_FORMAT_BYTES + " printable US-ASCII characters");
            }
            if (!StandardCharsets.UTF_8.newEncoder().canEncode(diskId)
                    || diskId.getBytes(StandardCharsets.UTF_8).length > JournalSlot.MAX_DISK_ID_BYTES) {
                throw new IllegalArgumentException("disk id " + diskId + " is not text of at most "
                        + JournalSlot.MAX_DISK_ID_BYTES + " UTF-8 bytes");
            }
            try {
                startedAt = Instant.ofEpochMilli(startedAt.toEpochMilli());
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException("disk " + diskId + ": start time " + startedAt + " is out of range", e);
            }
        }
    }

    private final Path path;
    private final NativeFile file;
    private final Identity identity;
    private final long groups;
    private int slot;          // where the current header is: 0 or 1
    private long sequence;
    private long checkpoint;
    private ByteBuffer pageBuffer;

    private ResumeJournal(Path path, NativeFile file, int slot, JournalSlot header) {
        this.path = path;
        this.file = file;
        this.identity = header.identity();
        this.groups = GranuleDigests.groups(identity.diskSize(), identity.granuleSize());
        this.slot = slot;
        this.sequence = header.sequence();
        this.checkpoint = header.checkpoint();
    }

    /** Where the journal of {@code image} lives: beside it, named after it + {@value #SUFFIX}. */
    public static Path pathFor(Path image) {
        Path name = image.getFileName();
        if (name == null) {
            throw new IllegalArgumentException("not a file path, so no resume journal beside it: " + image);
        }
        return image.resolveSibling(name + SUFFIX);
    }

    /**
     * Creates the journal of {@code image}, mode 0600, exclusively (an existing file or link is an
     * error naming it): header slot 0 with sequence 1 and checkpoint -1, made durable with its
     * directory entry. A failure removes what was created.
     */
    public static ResumeJournal create(Path image, Identity identity) throws IOException {
        Path path = pathFor(image);
        NativeFile file;
        try {
            file = NativeFile.createNew(path, FILE_MODE);   // O_CREAT | O_EXCL: never follows a link either
        } catch (NativeIoException e) {
            if (e.errno().equals(Errno.EEXIST)) {
                throw new JournalException(path, "a resume journal already exists at " + path
                        + " (left by an interrupted migration): resume it with migrate -r, or remove it to start over", e);
            }
            throw e;
        }
        try {
            JournalSlot first = new JournalSlot(1, -1, identity);
            file.write(SLOT_OFFSETS[0], first.encode());
            file.dataSync();
            NativeFile.syncDirectory(directoryOf(path));
            return new ResumeJournal(path, file, 0, first);
        } catch (IOException | RuntimeException | Error e) {
            closeAfter(file, e);
            try {
                Files.deleteIfExists(path);
            } catch (IOException removal) {
                e.addSuppressed(removal);
            }
            throw e;
        }
    }

    /**
     * Opens the journal of {@code image}, read-write; empty when there is none. Refuses a symbolic link
     * or anything but a regular file, a journal whose two header copies are both unusable, and one of
     * another format version: {@link JournalException}, one line that says what to do.
     */
    public static Optional<ResumeJournal> open(Path image) throws IOException {
        Path path = pathFor(image);
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            return Optional.empty();
        }
        if (!attributes.isRegularFile()) {
            throw notAFile(path, attributes.isSymbolicLink());
        }
        NativeFile file;
        try {
            file = NativeFile.openNoFollow(path, false);
        } catch (NativeIoException e) {
            if (e.errno().equals(Errno.ENOENT)) {
                return Optional.empty();               // removed since we looked
            }
            if (e.errno().equals(Errno.ELOOP)) {
                throw notAFile(path, true);            // replaced by a link since we looked
            }
            throw e;
        }
        try {
            if (!file.isRegularFile()) {
                throw notAFile(path, false);
            }
            ByteBuffer head = ByteBuffer.allocateDirect(2 * JournalSlot.LENGTH);   // zeroes past a short file's end
            file.read(0, head);
            return Optional.of(fromHeader(path, file, head.clear()));
        } catch (IOException | RuntimeException | Error e) {
            closeAfter(file, e);
            throw e;
        }
    }

    /** The header: the valid slot with the higher sequence. */
    private static ResumeJournal fromHeader(Path path, NativeFile file, ByteBuffer head) throws JournalException {
        JournalSlot[] valid = new JournalSlot[2];
        List<String> problems = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            switch (JournalSlot.decode(head.slice(SLOT_OFFSETS[i], JournalSlot.LENGTH))) {
                case JournalSlot.Valid v -> valid[i] = v.slot();
                case JournalSlot.Invalid invalid -> problems.add(invalid.reason());
                case JournalSlot.OtherVersion other -> throw new JournalException(path, "journal " + path + " has format version "
                        + other.version() + ", this Ferry reads version " + JournalSlot.VERSION
                        + ": resume with the Ferry that wrote it, or remove it and migrate without -r");
            }
        }
        if (valid[0] == null && valid[1] == null) {
            String why = problems.get(0).equals(problems.get(1)) && problems.get(0).equals("fails its checksum")
                    ? "both header copies fail their checksum"
                    : "header copy 0 " + problems.get(0) + ", header copy 1 " + problems.get(1);
            throw damaged(path, why);
        }
        if (valid[0] != null && valid[1] != null) {
            if (!valid[0].identity().equals(valid[1].identity())) {
                throw damaged(path, "its two header copies describe different migrations");
            }
            if (valid[0].sequence() == valid[1].sequence()) {
                throw damaged(path, "both header copies claim sequence " + valid[0].sequence());
            }
        }
        int current = valid[1] == null || (valid[0] != null && valid[0].sequence() > valid[1].sequence()) ? 0 : 1;
        return new ResumeJournal(path, file, current, valid[current]);
    }

    public Path path() {
        return path;
    }

    public Identity identity() {
        return identity;
    }

    /** The last committed checkpoint, -1 before the first. */
    public long checkpoint() {
        return checkpoint;
    }

    /**
     * The granule digests the journal holds, in a new {@link GranuleDigests} with no change marks. Reads only
     * the file's data extents. A page that cannot belong to this disk is a {@link JournalException}.
     */
    public GranuleDigests loadDigests() throws IOException {
        GranuleDigests digests = new GranuleDigests(identity.diskSize(), identity.granuleSize());
        ByteBuffer buffer = pageBuffer();
        int[] page = new int[GranuleDigests.GROUP_GRANULES];
        long data = file.seekData(PAGES_OFFSET);
        while (data != NativeFile.NO_MORE) {
            long hole = file.seekHole(data);
            long end = pageStart(hole + PAGE_LENGTH - 1);   // whole pages: a hole may start inside one at the end of file
            for (long offset = pageStart(data); offset < end; offset += buffer.capacity()) {
                MemorySegment.ofBuffer(buffer.clear()).fill((byte) 0);
                buffer.limit((int) Math.min(buffer.capacity(), end - offset));
                file.read(offset, buffer);   // stops at the end of file: the rest stays zero
                IntBuffer ints = buffer.position(0).asIntBuffer();
                for (long pageOffset = offset; ints.hasRemaining(); pageOffset += PAGE_LENGTH) {
                    ints.get(page);
                    load(digests, (pageOffset - PAGES_OFFSET) / PAGE_LENGTH, page);
                }
            }
            data = file.seekData(end);
        }
        return digests;
    }

    private void load(GranuleDigests digests, long group, int[] page) throws JournalException {
        boolean zero = true;
        for (int digest : page) {
            zero &= digest == 0;
        }
        if (zero) {
            return;
        }
        if (group >= groups) {
            throw damaged(path, "it holds digests for group " + group + ", past the last group " + (groups - 1)
                    + " of a disk of " + identity.diskSize() + " bytes");
        }
        try {
            digests.loadPage((int) group, page);
        } catch (IllegalArgumentException e) {
            throw damaged(path, e.getMessage());
        }
    }

    /** Writes these pages at their places (step 2 of a commit, before {@link #syncData()}); pages of consecutive groups go in one pwrite. */
    public void writePages(List<GranuleDigests.Page> pages) throws IOException {
        ByteBuffer buffer = pageBuffer();
        int next = 0;
        while (next < pages.size()) {
            int first = pages.get(next).group();
            buffer.clear();
            for (int run = 0; next < pages.size() && run < PAGES_PER_IO && pages.get(next).group() == first + run; run++, next++) {
                int group = pages.get(next).group();
                if (group >= groups) {
                    throw new IllegalArgumentException("journal " + path + ": page of group " + group + ", the disk has " + groups);
                }
                buffer.asIntBuffer().put(pages.get(next).digests());
                buffer.position(buffer.position() + PAGE_LENGTH);
            }
            file.write(pageOffset(first), buffer.flip());
        }
    }

    /** Makes the pages written so far durable ({@code fdatasync}). */
    public void syncData() throws IOException {
        file.dataSync();
    }

    /**
     * Commits {@code checkpoint} (step 3): writes the other header slot with the next sequence, then
     * fdatasyncs. After a failure the file holds the old checkpoint or the new one, and the journal
     * should be closed: the migration has failed.
     */
    public void commitHeader(long checkpoint) throws IOException {
        if (checkpoint <= this.checkpoint) {
            throw new IllegalArgumentException("journal " + path + ": checkpoint " + checkpoint + " after " + this.checkpoint);
        }
        JournalSlot next = new JournalSlot(sequence + 1, checkpoint, identity);
        int other = 1 - slot;
        file.write(SLOT_OFFSETS[other], next.encode());
        file.dataSync();
        slot = other;
        sequence = next.sequence();
        this.checkpoint = checkpoint;
    }

    @Override
    public void close() throws IOException {
        file.close();
    }

    /** Closes and removes the journal, and makes the removal durable. The image is the caller's. */
    public void delete() throws IOException {
        file.close();
        Files.deleteIfExists(path);   // unlink: removes a link, never what it points to
        NativeFile.syncDirectory(directoryOf(path));
    }

    /**
     * Removes the journal of {@code image} if there is one, durably; false when there was none. Refuses
     * to remove anything but a regular file (a directory or a symbolic link there is not Ferry's).
     */
    public static boolean discard(Path image) throws IOException {
        Path path = pathFor(image);
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(path, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            return false;
        }
        if (!attributes.isRegularFile()) {
            throw new JournalException(path, "not removing " + path + ": it is " + (attributes.isSymbolicLink() ? "a symbolic link" : "not a regular file")
                    + ", not a resume journal Ferry wrote; remove it yourself");
        }
        boolean removed = Files.deleteIfExists(path);
        NativeFile.syncDirectory(directoryOf(path));
        return removed;
    }

    private ByteBuffer pageBuffer() {
        if (pageBuffer == null) {
            pageBuffer = ByteBuffer.allocateDirect(PAGES_PER_IO * PAGE_LENGTH);   // big-endian, as the file
        }
        return pageBuffer;
    }

    private static long pageOffset(long group) {
        return PAGES_OFFSET + group * PAGE_LENGTH;
    }

    /** The start of the page {@code offset} lies in (the page area starts at {@link #PAGES_OFFSET}, which is page-aligned). */
    private static long pageStart(long offset) {
        return Math.max(PAGES_OFFSET, offset - offset % PAGE_LENGTH);
    }

    private static Path directoryOf(Path path) {
        return path.toAbsolutePath().getParent();
    }

    private static JournalException damaged(Path path, String why) {
        return new JournalException(path, "journal " + path + " is damaged (" + why + "): remove it and migrate without -r");
    }

    private static JournalException notAFile(Path path, boolean link) {
        return new JournalException(path, "journal " + path + " is " + (link ? "a symbolic link" : "not a regular file")
                + ", not a file Ferry wrote: refusing to use it; remove it and migrate without -r");
    }

    private static void closeAfter(NativeFile file, Throwable failure) {
        try {
            file.close();
        } catch (IOException e) {
            failure.addSuppressed(e);
        }
    }

    @Override
    public String toString() {
        return "ResumeJournal[" + path + ", checkpoint " + checkpoint + "]";
    }
}
