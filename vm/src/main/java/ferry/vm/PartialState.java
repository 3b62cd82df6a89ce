package ferry.vm;

import ferry.linux.Threads;
import ferry.migration.GranuleDigests;
import ferry.migration.JournalException;
import ferry.migration.MigrationException;
import ferry.migration.PartialMigration;
import ferry.migration.Phase;
import ferry.migration.ResumeInfo;
import ferry.migration.ResumeJournal;
import ferry.migration.wire.Frame;
import ferry.monitor.MonitorException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.function.LongSupplier;

/**
 * The partial state of an interrupted incoming migration that this destination keeps for a resume
 * (DESIGN.md "Resume"): the images that were being received and their resume journals, one journal
 * beside each image. One per VM ({@link Migrations#partial()}), shared by {@link IncomingVm} and
 * {@link AttachedIncoming}, so that both destinations keep, resume and remove it by one path.
 *
 * <p>Where it is, as a type ({@link Holding}): nothing; {@link Kept} (the journals closed, waiting for a
 * resume); or {@link InUse} by the session that receives into it. A session takes it with {@link #create}
 * (a fresh start: a kept state is discarded first, with {@link #discardForFresh}) or {@link #claim} (a resume:
 * it must be the same migration with the same disks), and gives it back with {@link #release} (kept again,
 * or removed), {@link #unprepared} (its prepare failed) or {@link #completed} (the session removes the
 * journals itself). A kept state is also found at start ({@link #find}), and removed by {@code quit},
 * {@code migrate_incoming_discard} ({@link #discard}) and after {@code partial-timeout}. Removing means the
 * journals and the images Ferry created for that migration ({@link ResumeJournal.Identity#createdImage()});
 * an image that existed before stays. Each of these steps logs one line.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Nothing removes a state {@link InUse}: the timeout only acts on the {@link Kept} it was started for,
 *       and {@link #discard} refuses. A session always gives the state back when it ends.</li>
 *   <li>{@code since} is the newest journal's modification time: the last checkpoint made durable (a commit
 *       writes the journal), which stays true across a restart of the destination; the removal time is
 *       {@code since + partial-timeout}, with the parameter's value at the time of checking, so a changed
 *       {@code partial-timeout} applies to the state already kept.</li>
 *   <li>The bytes held are counted once, when the state is kept or found (reading the journals' digests):
 *       {@code info migrate} then costs nothing.</li>
 * </ul>
 *
 * <p>Threads: a kept state starts {@code partial-timeout} (virtual), which waits until the removal time and
 * ends once the state is resumed or removed; {@link #close()} interrupts and joins it. Every other method
 * comes from the session's thread ({@code migration-listen}, {@code migration-conn-N}), a monitor or QMP
 * client, or the supervisor; all are synchronized.
 */
final class PartialState implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(PartialState.class.getName());

    /** Where the partial state is. */
    sealed interface Holding permits Nothing, Kept, InUse { }

    /** No partial state is kept. */
    record Nothing() implements Holding { }

    /**
     * Kept for a resume: {@code journals} are closed; {@code images} in the migration's disk order.
     * {@code heldBytes}: what the journals say the images hold; {@code since}: the last durable checkpoint.
     */
    record Kept(PartialMigration journals, List<Path> images, long heldBytes, Instant since) implements Holding {
        Kept {
            images = List.copyOf(images);
        }
    }

    /** Used by a session: {@code journals} open; {@code before}: what a failed resume prepare goes back to. */
    record InUse(PartialMigration journals, List<Path> images, Optional<Kept> before) implements Holding {
        InUse {
            images = List.copyOf(images);
        }
    }

    private static final Holding NOTHING = new Nothing();

    private final LongSupplier timeoutMs;
    private Holding holding = NOTHING;
    private Thread timer;

    /** @param timeoutMs the {@code partial-timeout} parameter, read each time the removal time is checked */
    PartialState(LongSupplier timeoutMs) {
        this.timeoutMs = timeoutMs;
    }

    synchronized Holding holding() {
        return holding;
    }

    /** The kept state, for {@code info migrate}; empty when there is none or a session uses it. */
    synchronized Optional<ResumeInfo.PartialHeld> held() {
        return holding instanceof Kept kept ? Optional.of(info(kept)) : Optional.empty();
    }

    private ResumeInfo.PartialHeld info(Kept kept) {
        return new ResumeInfo.PartialHeld(kept.journals().migrationId(), kept.heldBytes(), kept.since(),
                kept.since().plusMillis(timeoutMs.getAsLong()));
    }

    /**
     * At start: the journals beside {@code images}, left by an earlier run of this destination (killed, or
     * restarted), become the kept state. A journal that cannot be used is logged in one line and left alone.
     */
    synchronized void find(List<Path> images) {
        if (!(holding instanceof Nothing)) {
            return;
        }
        try {
            Optional<Kept> found = found(images);
            if (found.isPresent()) {
                keep(found.get());
                LOG.log(System.Logger.Level.INFO, "found the partial state of migration " + found.get().journals().migrationId()
                        + " (" + found.get().heldBytes() + " bytes, last checkpoint " + seconds(found.get().since()) + "): `migrate -r` on"
                        + " the source goes on from it");
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "not keeping the resume journals beside " + images + ": " + e.getMessage()
                    + (e instanceof JournalException ? "" : " (left as they are)"));
        }
    }

    /** The journals beside {@code images} as a kept state, closed again; empty when there are none. */
    private static Optional<Kept> found(List<Path> images) throws IOException {
        Optional<PartialMigration> found = PartialMigration.find(images);
        if (found.isEmpty()) {
            return Optional.empty();
        }
        return Optional.of(keptOf(found.get(), images));
    }

    /** Counts what {@code journals} (open) say the images hold, notes their time, and closes them. */
    private static Kept keptOf(PartialMigration journals, List<Path> images) throws IOException {
        try (journals) {
            long held = 0;
            for (GranuleDigests digests : journals.loadDigests()) {
                held += digests.touchedBytes();
            }
            Instant since = Instant.EPOCH;
            for (ResumeJournal journal : journals.journals()) {
                Instant modified = Files.getLastModifiedTime(journal.path()).toInstant();
                since = modified.isAfter(since) ? modified : since;
            }
            return new Kept(journals, images, held, since);
        }
    }

    /**
     * A fresh start (a HELLO without a resume claim) on this host: a kept state, of whatever migration, is
     * removed first (one drive never holds two partial states). Returns the images of that state that stay
     * (Ferry did not create them) and hold what Ferry wrote, so that the new migration may write over them.
     */
    synchronized Set<Path> discardForFresh(UUID next) throws MigrationException {
        return switch (holding) {
            case Nothing n -> Set.of();
            case InUse u -> throw new MigrationException(Phase.HANDSHAKE, "busy: this destination's partial state of migration "
                    + u.journals().migrationId() + " is in use by another session");
            case Kept kept -> {
                Set<Path> written = new HashSet<>();
                List<ResumeJournal.Identity> identities = kept.journals().identities();
                for (int i = 0; i < identities.size(); i++) {
                    if (!identities.get(i).createdImage()) {
                        written.add(kept.images().get(i));
                    }
                }
                String removed = remove(kept.journals(), kept.images());
                set(NOTHING);
                LOG.log(System.Logger.Level.INFO, "discarded the partial state of migration " + kept.journals().migrationId() + " ("
                        + kept.heldBytes() + " bytes) for the fresh migration " + next + removed);
                yield Set.copyOf(written);
            }
        };
    }

    /**
     * A fresh start's journals, one beside each of {@code files} (those in {@code created} were created for this
     * migration), with the identities the HELLO gives. A journal already there that this state does not know (a
     * damaged one, left at start) is removed first: its image is about to be written over.
     */
    synchronized PartialMigration create(Frame.Hello hello, List<Path> files, List<Path> created) throws IOException {
        if (!(holding instanceof Nothing)) {
            throw new IllegalStateException("a partial state is still " + holding.getClass().getSimpleName()
                    + ": discardForFresh comes first");
        }
        List<ResumeJournal.Identity> identities = new ArrayList<>();
        Instant now = Instant.now();
        for (int i = 0; i < files.size(); i++) {
            ResumeJournal.discard(files.get(i));
            Frame.DiskOffer offer = hello.disks().get(i);
            identities.add(new ResumeJournal.Identity(hello.migrationId(), offer.id(), offer.size(), hello.granuleSize(),
                    offer.format(), created.contains(files.get(i)), now));
        }
        PartialMigration journals = PartialMigration.create(files, identities);
        set(new InUse(journals, files, Optional.empty()));
        return journals;
    }

    /**
     * A resume (a HELLO with a resume claim): the kept state (found now if this host has not seen it yet) must
     * be of that migration, with the same disks; refuses with one line for the source otherwise. Returns its
     * journals, opened again, for the session.
     */
    synchronized PartialMigration claim(Frame.Hello hello, List<Path> files) throws MigrationException {
        UUID wanted = hello.migrationId();
        if (holding instanceof Nothing) {
            try {
                found(files).ifPresent(this::keep);
            } catch (IOException e) {
                throw new MigrationException(Phase.HANDSHAKE, "resume refused: this destination's resume journals of migration "
                        + wanted + " cannot be used: migrate without -r to start over", e.getMessage(), e);
            }
        }
        Kept kept = switch (holding) {
            case Nothing n -> throw refused("this destination holds no partial state of migration " + wanted);
            case InUse u -> throw new MigrationException(Phase.HANDSHAKE, "resume refused: the partial state of migration "
                    + u.journals().migrationId() + " is in use by another session here");
            case Kept k -> k;
        };
        Optional<String> mismatch = mismatch(kept.journals().migrationId(), kept.journals().identities(), hello);
        if (mismatch.isPresent()) {
            throw refused(mismatch.get());
        }
        if (!kept.images().equals(files)) {
            throw new MigrationException(Phase.HANDSHAKE, "resume refused: this destination's disks are not the ones it kept"
                    + " migration " + wanted + " in: migrate without -r to start over", "kept " + kept.images() + ", the drives are "
                    + files, null);
        }
        PartialMigration journals;
        try {
            journals = PartialMigration.find(files).filter(j -> j.migrationId().equals(wanted)).orElseThrow(() -> new JournalException(
                    ResumeJournal.pathFor(files.getFirst()), "the resume journals of migration " + wanted + " are gone"));
        } catch (IOException e) {
            throw new MigrationException(Phase.HANDSHAKE, "resume refused: this destination cannot open its resume journals"
                    + " of migration " + wanted + ": migrate without -r to start over", e.getMessage(), e);
        }
        set(new InUse(journals, files, Optional.of(kept)));
        LOG.log(System.Logger.Level.INFO, "resuming the partial state of migration " + wanted + " (" + kept.heldBytes()
                + " bytes held since " + seconds(kept.since()) + ")");
        return journals;
    }

    private static MigrationException refused(String why) {
        return new MigrationException(Phase.HANDSHAKE, "resume refused: " + why + ": migrate without -r to start over");
    }

    /**
     * What differs between a kept state (migration {@code kept}, disks {@code identities}) and a resuming HELLO,
     * in the words the source shows; empty when it is the same migration with the same disks.
     */
    static Optional<String> mismatch(UUID kept, List<ResumeJournal.Identity> identities, Frame.Hello hello) {
        if (!kept.equals(hello.migrationId())) {
            return Optional.of("this destination holds migration " + kept + ", not " + hello.migrationId());
        }
        if (identities.size() != hello.disks().size()) {
            return Optional.of("this destination holds " + identities.size() + " disks of migration " + kept + ", the source offers "
                    + hello.disks().size());
        }
        for (int i = 0; i < identities.size(); i++) {
            ResumeJournal.Identity held = identities.get(i);
            Frame.DiskOffer offer = hello.disks().get(i);
            if (!held.diskId().equals(offer.id())) {
                return Optional.of("disk " + (i + 1) + " was " + held.diskId() + " here, the source offers " + offer.id());
            }
            if (held.diskSize() != offer.size()) {
                return Optional.of("disk " + held.diskId() + " had " + held.diskSize() + " bytes, the source offers " + offer.size());
            }
            if (!held.format().equals(offer.format())) {
                return Optional.of("disk " + held.diskId() + " was " + held.format() + " here, the source offers " + offer.format());
            }
            if (held.granuleSize() != hello.granuleSize()) {
                return Optional.of("disk " + held.diskId() + " was received in granules of " + held.granuleSize()
                        + " bytes, the source resumes with " + hello.granuleSize());
            }
        }
        return Optional.empty();
    }

    /**
     * A prepare that took the state ({@link #create} or {@link #claim}) failed before a session began: a claimed
     * state is kept again as it was; a fresh one is removed.
     */
    synchronized void unprepared() {
        if (!(holding instanceof InUse use)) {
            return;
        }
        closeQuietly(use.journals());
        if (use.before().isPresent()) {
            keep(use.before().get());
        } else {
            String removed = remove(use.journals(), use.images());
            set(NOTHING);
            LOG.log(System.Logger.Level.INFO, "the prepare of migration " + use.journals().migrationId() + " failed" + removed);
        }
    }

    /**
     * The session that uses {@code journals} ended without the VM (the destination's {@code abort}): with
     * {@code keep}, the state is kept for a resume; without, the journals and the images created for the
     * migration are removed.
     */
    synchronized void release(PartialMigration journals, boolean keep) {
        if (!(holding instanceof InUse use) || use.journals() != journals) {
            return;
        }
        if (!keep) {
            String removed = remove(use.journals(), use.images());
            set(NOTHING);
            LOG.log(System.Logger.Level.INFO, "not keeping what migration " + use.journals().migrationId() + " left here" + removed);
            return;
        }
        try {
            Kept kept = keptOf(use.journals(), use.images());
            keep(kept);
            LOG.log(System.Logger.Level.INFO, "keeping the partial state of migration " + kept.journals().migrationId() + " ("
                    + kept.heldBytes() + " bytes) for a resume: `migrate -r` on the source goes on from here");
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "not keeping the partial state of migration " + use.journals().migrationId()
                    + ": its journals cannot be read (" + e.getMessage() + "); its files are left as they are");
            set(NOTHING);
        }
    }

    /** The VM was received and runs here: the session removes the journals; nothing is kept. */
    synchronized void completed(PartialMigration journals) {
        if (holding instanceof InUse use && use.journals() == journals) {
            set(NOTHING);
        }
    }

    /**
     * {@code migrate_incoming_discard} and {@code quit}: removes the kept state now, logging {@code why}; returns
     * what was removed, empty when nothing was kept. Refused while a session uses the state.
     */
    synchronized Optional<ResumeInfo.PartialHeld> discard(String why) throws MonitorException {
        return switch (holding) {
            case Nothing n -> Optional.empty();
            case InUse u -> throw new MonitorException(MonitorException.Kind.REFUSED, "the partial state of migration "
                    + u.journals().migrationId() + " is in use by the incoming migration that resumes it; it is kept or removed"
                    + " when that ends");
            case Kept kept -> {
                ResumeInfo.PartialHeld info = info(kept);
                String removed = remove(kept.journals(), kept.images());
                set(NOTHING);
                LOG.log(System.Logger.Level.INFO, "removed the partial state of migration " + info.migrationId() + " ("
                        + info.heldBytes() + " bytes held since " + seconds(info.since()) + "): " + why + removed);
                yield Optional.of(info);
            }
        };
    }

    /** {@code partial-timeout} changed: a waiting removal checks its time again. */
    synchronized void timeoutChanged() {
        notifyAll();
    }

    private void keep(Kept kept) {
        set(kept);
        Thread t = Threads.unstartedVirtual("partial-timeout", () -> expire(kept));
        timer = t;
        t.start();
    }

    /** Moves to {@code next}; a waiting {@code partial-timeout} sees that its state is no longer kept and ends. */
    private void set(Holding next) {
        holding = next;
        notifyAll();
    }

    /** On {@code partial-timeout}: removes {@code kept} at its removal time, unless it was resumed or removed before. */
    private synchronized void expire(Kept kept) {
        try {
            while (holding == kept) {
                long waitMs = kept.since().toEpochMilli() + timeoutMs.getAsLong() - System.currentTimeMillis();
                if (waitMs <= 0) {
                    String removed = remove(kept.journals(), kept.images());
                    set(NOTHING);
                    LOG.log(System.Logger.Level.INFO, "removed the partial state of migration " + kept.journals().migrationId() + " ("
                            + kept.heldBytes() + " bytes held since " + seconds(kept.since()) + "): partial-timeout ("
                            + timeoutMs.getAsLong() + " ms) has passed" + removed);
                    return;
                }
                wait(waitMs);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();       // close(): the state stays on disk for the next start
        }
    }

    /** Waits until the current {@code partial-timeout} thread has ended (tests). */
    void awaitTimer() throws InterruptedException {
        Thread t;
        synchronized (this) {
            t = timer;
        }
        if (t != null) {
            t.join();
        }
    }

    /**
     * Removes the journals (closed first), then the images created for their migration; failures are logged (ERROR,
     * what to delete by hand). Returns the end of the caller's one log line: which images went with the journals.
     */
    private static String remove(PartialMigration journals, List<Path> images) {
        List<ResumeJournal.Identity> identities = journals.identities();
        try {
            journals.close();
            journals.discard();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.ERROR, "removing the resume journals of migration " + journals.migrationId() + " failed: "
                    + e.getMessage() + "; delete the files ending in " + ResumeJournal.SUFFIX + " beside " + images + " by hand");
        }
        List<Path> removed = new ArrayList<>();
        for (int i = 0; i < identities.size(); i++) {
            if (!identities.get(i).createdImage()) {
                continue;
            }
            Path image = images.get(i);
            try {
                Files.deleteIfExists(image);
                removed.add(image);
            } catch (IOException e) {
                LOG.log(System.Logger.Level.ERROR, "could not remove " + image + ": " + e.getMessage()
                        + "; it is incomplete: delete it by hand");
            }
        }
        return removed.isEmpty() ? "; its journals are removed, its images stay (they existed before it)"
                : "; its journals are removed, and " + removed + " (created for it)";
    }

    /** An instant in log lines: UTC, to the second. */
    private static Instant seconds(Instant instant) {
        return instant.truncatedTo(java.time.temporal.ChronoUnit.SECONDS);
    }

    private static void closeQuietly(PartialMigration journals) {
        try {
            journals.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "closing the resume journals of migration " + journals.migrationId() + ": "
                    + e.getMessage());
        }
    }

    /** Stops waiting for the timeout (the kept state stays on disk, for the next start to find) and joins the thread. */
    @Override
    public void close() throws InterruptedException {
        Thread t;
        synchronized (this) {
            t = timer;
        }
        if (t != null) {
            t.interrupt();
            t.join();
        }
    }
}
