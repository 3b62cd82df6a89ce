package ferry.migration;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.UUID;

/**
 * The resume journals of one interrupted migration on the destination, one per disk, in the order of
 * the migration's disks. Either every disk has a journal of the same migration or none has: anything
 * else is a {@link JournalException} that names the journals.
 *
 * <h2>Design notes</h2>
 * The checkpoint of the whole migration is the minimum over the disks: a crash in step 3 of a commit
 * (see {@link ResumeJournal}) can leave some journals at c and others at c - 1, and c - 1 is then the
 * last checkpoint every disk holds. {@link #commit} runs step 2 on every journal before step 3 on any,
 * so no journal's header names a checkpoint whose pages another journal still lacks.
 *
 * <p>Threads: none of its own. One thread at a time, like {@link ResumeJournal}.
 */
public final class PartialMigration implements AutoCloseable {
    private final List<ResumeJournal> journals;

    private PartialMigration(List<ResumeJournal> journals) {
        this.journals = List.copyOf(journals);
    }

    /**
     * Creates the journals of a new migration, one per image, with these identities (same migration id).
     * All or none: when one cannot be created, those already created are removed.
     */
    public static PartialMigration create(List<Path> images, List<ResumeJournal.Identity> identities) throws IOException {
        if (images.size() != identities.size() || images.isEmpty()) {
            throw new IllegalArgumentException(images.size() + " images for " + identities.size() + " identities");
        }
        UUID id = identities.get(0).migrationId();
        if (!identities.stream().allMatch(i -> i.migrationId().equals(id))) {
            throw new IllegalArgumentException("the disks' identities name different migrations: " + identities);
        }
        List<ResumeJournal> created = new ArrayList<>();
        try {
            for (int i = 0; i < images.size(); i++) {
                created.add(ResumeJournal.create(images.get(i), identities.get(i)));
            }
            return new PartialMigration(created);
        } catch (IOException | RuntimeException | Error e) {
            for (ResumeJournal journal : created) {
                try {
                    journal.delete();
                } catch (IOException removal) {
                    e.addSuppressed(removal);
                }
            }
            throw e;
        }
    }

    /**
     * The journals beside these images: empty when none has one; every one when all have one of the
     * same migration. A mix, or journals of different migrations, is a {@link JournalException} naming them.
     */
    public static Optional<PartialMigration> find(List<Path> images) throws IOException {
        List<ResumeJournal> found = new ArrayList<>();
        List<Path> missing = new ArrayList<>();
        try {
            for (Path image : images) {
                Optional<ResumeJournal> journal = ResumeJournal.open(image);
                journal.ifPresent(found::add);
                if (journal.isEmpty()) {
                    missing.add(ResumeJournal.pathFor(image));
                }
            }
            if (found.isEmpty()) {
                return Optional.empty();
            }
            if (!missing.isEmpty()) {
                throw new JournalException(missing.get(0), "only some disks have a resume journal: " + paths(found)
                        + " exist, " + missing + " do not; remove the ones that exist and migrate without -r");
            }
            UUID id = found.get(0).identity().migrationId();
            for (ResumeJournal journal : found) {
                if (!journal.identity().migrationId().equals(id)) {
                    throw new JournalException(journal.path(), "resume journals of different migrations: " + found.get(0).path()
                            + " is of migration " + id + ", " + journal.path() + " of " + journal.identity().migrationId()
                            + "; remove them and migrate without -r");
                }
            }
            return Optional.of(new PartialMigration(found));
        } catch (IOException | RuntimeException | Error e) {
            closeAll(found, e);
            throw e;
        }
    }

    public UUID migrationId() {
        return journals.get(0).identity().migrationId();
    }

    /** When the migration started: the earliest disk's start. */
    public Instant startedAt() {
        return journals.stream().map(j -> j.identity().startedAt()).min(Instant::compareTo).orElseThrow();
    }

    /** The last checkpoint every disk committed: the minimum over the disks, -1 before the first. */
    public long checkpoint() {
        return journals.stream().mapToLong(ResumeJournal::checkpoint).min().orElseThrow();
    }

    /** One per disk, in the images' order. */
    public List<ResumeJournal.Identity> identities() {
        return journals.stream().map(ResumeJournal::identity).toList();
    }

    /** One per disk, in the images' order: {@link ResumeJournal#loadDigests()} gives what each image holds. */
    public List<ResumeJournal> journals() {
        return journals;
    }

    /**
     * Steps 2 and 3 of committing {@code checkpoint} (step 1, fdatasync of every image, is the caller's):
     * every journal's changed pages written and made durable, then every journal's header.
     */
    public void commit(long checkpoint, List<List<GranuleDigests.Page>> pagesPerDisk) throws IOException {
        if (pagesPerDisk.size() != journals.size()) {
            throw new IllegalArgumentException("pages for " + pagesPerDisk.size() + " disks, the migration has " + journals.size());
        }
        for (int i = 0; i < journals.size(); i++) {
            journals.get(i).writePages(pagesPerDisk.get(i));
            journals.get(i).syncData();
        }
        for (ResumeJournal journal : journals) {
            journal.commitHeader(checkpoint);
        }
    }

    /** The digests of what each disk's image holds, in the order of the disks (a resume goes on from them). */
    public List<GranuleDigests> loadDigests() throws IOException {
        List<GranuleDigests> digests = new ArrayList<>();
        for (ResumeJournal journal : journals) {
            digests.add(journal.loadDigests());
        }
        return digests;
    }

    /**
     * Removes every journal, durably; goes on past a failure and throws the first with the others
     * suppressed. Created images are the caller's to delete ({@link ResumeJournal.Identity#createdImage()}).
     */
    public void discard() throws IOException {
        forEachJournal(ResumeJournal::delete);
    }

    /** Closes every journal; throws the first failure with the others suppressed. */
    @Override
    public void close() throws IOException {
        forEachJournal(ResumeJournal::close);
    }

    /** One step on a journal. */
    @FunctionalInterface
    private interface JournalStep {
        void apply(ResumeJournal journal) throws IOException;
    }

    /** Runs {@code step} on every journal, going on past a failure; throws the first with the others suppressed. */
    private void forEachJournal(JournalStep step) throws IOException {
        IOException first = null;
        for (ResumeJournal journal : journals) {
            try {
                step.apply(journal);
            } catch (IOException e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    private static List<Path> paths(List<ResumeJournal> journals) {
        return journals.stream().map(ResumeJournal::path).toList();
    }

    private static void closeAll(List<ResumeJournal> journals, Throwable failure) {
        for (ResumeJournal journal : journals) {
            try {
                journal.close();
            } catch (IOException e) {
                failure.addSuppressed(e);
            }
        }
    }
}
