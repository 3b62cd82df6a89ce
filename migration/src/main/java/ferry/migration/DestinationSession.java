package ferry.migration;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.migration.stream.MigrationStream;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import java.io.EOFException;
import java.io.IOException;
import java.net.SocketTimeoutException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * One incoming migration, from HELLO to RUNNING, on the {@code migration-listen} thread.
 *
 * <p>Receiver states (docs/migration-protocol.md): AWAIT_HELLO -> RECEIVING (blocks, RAM, pass ends)
 * -> VERIFIED (after DISKS_DONE matched) -> READY (QEMU has the device state; DEST_READY sent)
 * -> RUNNING (after COMMIT and {@code cont}). Every block is written before the next frame is read,
 * so QEMU never gets RAM bytes that follow a block in the stream before that block is on disk.
 * Any failure aborts the prepared VM: QEMU stops, created images are removed.
 */
final class DestinationSession {
    private static final System.Logger LOG = System.getLogger(DestinationSession.class.getName());
    static final long SOURCE_SILENCE_TIMEOUT_MS = 120_000;
    /**
     * From the stream's acceptance (after TLS) to a complete HELLO. Ferry's source sends HELLO right after
     * connecting (it hashes bases before it connects), so this only stops a peer that connects and then
     * trickles or sends nothing, holding the destination's one session.
     */
    static final long HELLO_TIMEOUT_MS = 10_000;
    /** A frame, once its first byte arrived, must be complete within this (a trickling peer, byte by byte). */
    static final long FRAME_TIMEOUT_MS = 120_000;
    /**
     * Heap the granule digests of one session may take: half the heap. Digest pages grow with the data
     * received (4 KiB per 1024 granules touched, GranuleDigests), so this is reached only after about
     * (heap / 2) * 1024 bytes at 4 KiB granules: 1 TiB of data with a 2 GiB heap.
     */
    static long digestBudgetBytes() {
        return Runtime.getRuntime().maxMemory() / 2;
    }
    /**
     * Writeback starts every 32 MiB received: one burst of 256 MiB after the bulk pass was still
     * being written when the source paused, and on a shared disk it delayed the source QEMU's own
     * flush at STOP by ~400 ms (benchmark timelines).
     */
    static final long WRITEBACK_CHUNK = 32L << 20;
    /**
     * Test hook: {@code -Dferry.fault=drop-block} drops the first BLOCK_DATA frame and every later one
     * that covers its first byte again, which the digest check must catch. (Dropping only the first
     * frame was healed, now and then, when the guest rewrote that granule and a dirty pass resent it.)
     */
    private final boolean dropOneBlock = "drop-block".equals(System.getProperty("ferry.fault"));

    private enum State { AWAIT_HELLO, RECEIVING, VERIFIED, RUNNING }

    private final MigrationStream channel;
    private final String peer;
    private final FrameReader reader;
    private final FrameWriter writer;
    private final DestinationHost host;
    private final MigrationStats stats;
    private final long helloTimeoutMs;
    private final java.util.concurrent.CountDownLatch helloArrived = new java.util.concurrent.CountDownLatch(1);
    private State state = State.AWAIT_HELLO;
    private volatile DestinationHost.PreparedVm prepared;
    private volatile RamTunnel tunnel;
    private Thread vmStart;
    private volatile MigrationException vmStartFailure;
    private volatile boolean destReadySent;
    private volatile String asyncFailure;
    private final List<BlockImage> images = new ArrayList<>();
    private final List<GranuleDigests> digests = new ArrayList<>();
    private boolean dropped;
    private int droppedDisk = -1;
    private long droppedOffset = -1;
    /** Frames for {@code migration-reply} to send; {@link #NO_MORE_REPLIES} ends it. */
    private final java.util.concurrent.BlockingQueue<Frame> replies = new java.util.concurrent.LinkedBlockingQueue<>();
    private static final Frame NO_MORE_REPLIES = new Frame.PassEnd(-1, -1);
    private Thread replyThread;
    private boolean copyDisks;
    private long unflushedBytes;
    /** Makes checkpoints durable (with -b, from WELCOME until DISKS_DONE). */
    private CheckpointWriter checkpoints;
    /** The received disks differ from the source's: the partial state is worthless and goes with the attempt. */
    private boolean disksDiffer;
    /** COMMIT arrived: from here on the VM is this host's, whatever fails next (never stopped, never removed). */
    private volatile boolean committed;

    /** A HELLO the listener already read (a source that reconnected while its old session still ran); null: read it here. */
    private Frame.Hello firstHello;
    private volatile java.util.UUID migrationId;

    DestinationSession(MigrationStream channel, String peer, FrameReader reader, FrameWriter writer,
                       DestinationHost host, MigrationStats stats, long helloTimeoutMs, Optional<Frame.Hello> firstHello) {
        this.firstHello = firstHello.orElse(null);
        this.helloTimeoutMs = helloTimeoutMs;
        this.channel = channel;
        this.peer = peer;
        this.reader = reader;
        this.writer = writer;
        this.host = host;
        this.stats = stats;
    }

    /** Runs the session; the received VM when it runs here, empty when the attempt failed. */
    Optional<DestinationHost.PreparedVm> run() {
        replyThread = ferry.linux.Threads.unstartedVirtual("migration-reply", this::sendReplies);
        replyThread.start();
        Thread helloDeadline = ferry.linux.Threads.unstartedVirtual("migration-hello-deadline", this::enforceHelloDeadline);
        helloDeadline.start();
        try {
            return receiveAndRun();
        } finally {
            helloArrived.countDown();
            helloDeadline.interrupt();
            replies.add(NO_MORE_REPLIES);
            try {
                replyThread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** On {@code migration-hello-deadline}: ends a session whose HELLO is not complete in time ({@link #HELLO_TIMEOUT_MS}). */
    private void enforceHelloDeadline() {
        try {
            if (!helloArrived.await(helloTimeoutMs, java.util.concurrent.TimeUnit.MILLISECONDS)) {
                abort("the source " + peer + " sent no complete HELLO within " + helloTimeoutMs + " ms");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private Optional<DestinationHost.PreparedVm> receiveAndRun() {
        try {
            receive();
            stats.phase(Phase.COMPLETE);
            stats.status(MigrationStatus.COMPLETED);
            LOG.log(System.Logger.Level.INFO, "incoming migration from " + peer + " completed; the VM runs here");
            return Optional.ofNullable(prepared);
        } catch (SourceCancelled c) {
            finish(MigrationStatus.CANCELLED, "cancelled by the source: " + c.getMessage(), null);
        } catch (MigrationException e) {
            if (committed) {
                return keepAfterCommit(e.localLine());
            }
            finish(MigrationStatus.FAILED, e.localLine(), new Frame.Error(e.phase().label(), e.getMessage()));
        } catch (Exception e) {
            String reason = describe(e);
            if (committed) {
                return keepAfterCommit(stats.phase().label() + ": " + reason);
            }
            finish(MigrationStatus.FAILED, stats.phase().label() + ": " + reason, new Frame.Error(stats.phase().label(), forSource(e)));
        } catch (Throwable t) {                   // an Error (OutOfMemoryError ...): the listener must go on
            LOG.log(System.Logger.Level.ERROR, "incoming migration from " + peer + ": " + t, t);
            if (committed) {
                return keepAfterCommit(stats.phase().label() + ": " + t);
            }
            finish(MigrationStatus.FAILED, stats.phase().label() + ": " + t, new Frame.Error(stats.phase().label(),
                    "the destination failed (its log says why)"));
        }
        return Optional.empty();
    }

    /**
     * A failure after COMMIT (the source lost, RUNNING not delivered, even {@code cont} refused): the
     * source has handed the VM over and stays paused, so this host keeps it, running or paused, with
     * its disks. Stopping or removing it here could lose the only copy of what the guest wrote since.
     */
    private Optional<DestinationHost.PreparedVm> keepAfterCommit(String reason) {
        LOG.log(System.Logger.Level.ERROR, "incoming migration: failure after COMMIT: " + reason
                + "; the VM stays on this host with its disks (check `info status`; `cont` it if it is paused)");
        stats.fail(state == State.RUNNING ? MigrationStatus.COMPLETED : MigrationStatus.FAILED, "after commit: " + reason
                + "; the VM stays on this host");
        return Optional.ofNullable(prepared);
    }

    private String describe(Exception e) {
        if (asyncFailure != null) {
            return asyncFailure;
        }
        if (e instanceof SocketTimeoutException) {
            return "the source " + peer + " sent nothing for " + SOURCE_SILENCE_TIMEOUT_MS + " ms";
        }
        if (e instanceof EOFException) {
            return "connection to the source " + peer + " lost: " + e.getMessage();
        }
        if (e instanceof MigrationWire.WireException) {
            return "corrupt migration stream from " + peer + ": " + e.getMessage();
        }
        return e.getMessage() == null ? e.toString() : e.getMessage();
    }

    /**
     * What the source may read of a failure that is not a {@link MigrationException}: the stream's own
     * problems (timeouts, EOF, a corrupt frame) say what they are; anything else may carry this host's
     * paths or tools' messages, so the source only learns that the log says why.
     */
    private String forSource(Exception e) {
        if (asyncFailure != null || e instanceof java.io.InterruptedIOException || e instanceof EOFException
                || e instanceof MigrationWire.WireException) {
            return describe(e);
        }
        return "the destination failed (" + e.getClass().getSimpleName() + "; its log says why)";
    }

    /** Stops the session from another thread. */
    void abort(String reason) {
        asyncFailure = reason;
        try {
            channel.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "closing the migration stream: " + e.getMessage());
        }
    }

    /** The id of the migration this session receives, once its HELLO arrived. */
    Optional<java.util.UUID> migrationId() {
        return Optional.ofNullable(migrationId);
    }

    private void receive() throws Exception {
        while (true) {
            Frame frame = firstHello != null ? firstHello : reader.next();
            firstHello = null;
            if (state == State.AWAIT_HELLO && !(frame instanceof Frame.Hello || frame instanceof Frame.Cancel
                    || frame instanceof Frame.Error)) {
                unexpected(frame);             // nothing but HELLO moves a session forward before HELLO
            }
            switch (frame) {
                case Frame.Hello hello -> hello(hello);
                case Frame.BlockData block -> block(block);
                case Frame.BlockZero zero -> zero(zero);
                case Frame.PassEnd pass -> passEnd(pass);
                case Frame.Checkpoint checkpoint -> checkpoint(checkpoint);
                case Frame.Ram ram -> ram().deliver(ram.data());
                case Frame.RamEof eof -> ram().peerFinished();
                case Frame.DisksDone done -> verify(done);
                case Frame.Commit commit -> {
                    commit();
                    return;
                }
                case Frame.Cancel cancel -> throw new SourceCancelled(cancel.reason());
                case Frame.Error error -> throw new MigrationException(stats.phase(),
                        "the source gave up in " + error.phase() + ": " + error.message());
                case Frame.Welcome w -> unexpected(frame);
                case Frame.Verified v -> unexpected(frame);
                case Frame.DestReady r -> unexpected(frame);
                case Frame.Running r -> unexpected(frame);
                case Frame.Confirmed c -> unexpected(frame);
            }
        }
    }

    private void unexpected(Frame frame) throws MigrationException {
        throw new MigrationException(stats.phase(), "protocol error: unexpected " + frame.type() + " frame in state " + state);
    }

    private void hello(Frame.Hello hello) throws Exception {
        if (state != State.AWAIT_HELLO) {
            unexpected(hello);
        }
        if (hello.version() != MigrationWire.VERSION) {
            throw new MigrationException(Phase.HANDSHAKE, "unsupported protocol version " + hello.version()
                    + " (this destination speaks " + MigrationWire.VERSION + ")");
        }
        checkBounds(hello);
        helloArrived.countDown();
        migrationId = hello.migrationId();
        copyDisks = hello.copyDisks();
        long startNs = System.nanoTime();
        prepared = host.prepare(hello);
        LOG.log(System.Logger.Level.INFO, "prepared " + hello.disks().size() + " disks for " + hello.vmName() + " in "
                + (System.nanoTime() - startNs) / 1_000_000 + " ms" + (hello.incremental() ? " (incremental)" : ""));
        long checkpoint = -1;
        if (hello.copyDisks()) {
            images.addAll(prepared.images());
            for (int i = 0; i < images.size(); i++) {
                long expected = hello.disks().get(i).size();
                if (images.get(i).size() != expected) {
                    throw new MigrationException(Phase.HANDSHAKE, "disk " + hello.disks().get(i).id() + ": prepared image has "
                            + images.get(i).size() + " bytes, source has " + expected);
                }
                stats.diskTotalBytes(stats.report().diskTotalBytes() + expected);
            }
            PartialMigration journal = prepared.journal();
            if (hello.resume().isPresent()) {
                checkpoint = resume(hello, journal);
            } else {
                for (Frame.DiskOffer disk : hello.disks()) {
                    digests.add(new GranuleDigests(disk.size(), hello.granuleSize()));
                }
            }
            checkpoints = new CheckpointWriter(images, journal, replies::add, this::abort);
            checkpoints.start();
        }
        vmStart = ferry.linux.Threads.unstartedVirtual("vm-start", this::startVm);
        vmStart.start();
        stats.sources(() -> 0, reader::bytesRead, () -> 0, () -> MigrationReport.Ram.NONE);
        prepared.ramListener(this::ramStatus);
        writer.send(new Frame.Welcome(hello.copyDisks() ? prepared.fresh() : List.of(), checkpoint));
        state = State.RECEIVING;
        stats.status(MigrationStatus.ACTIVE);
        stats.phase(hello.copyDisks() ? Phase.BULK_COPY : Phase.RAM);
    }

    /**
     * A resume: the journals are of this migration (the host checked id, disks and sizes), hold at least what
     * the source knows was confirmed, and the sampled granules read here as they do on the source. Loads the
     * digests of what the images hold; returns the journals' checkpoint for WELCOME.
     */
    private long resume(Frame.Hello hello, PartialMigration journal) throws MigrationException {
        Frame.ResumeClaim claim = hello.resume().orElseThrow();
        long held = journal.checkpoint();
        if (held < claim.confirmedCheckpoint()) {
            throw new MigrationException(Phase.HANDSHAKE, "resume refused: this destination's journal holds checkpoint " + held
                    + " but it confirmed " + claim.confirmedCheckpoint() + " to the source (an older copy of its disks?):"
                    + " migrate without -r to start over");
        }
        try {
            digests.addAll(journal.loadDigests());
        } catch (IOException e) {
            throw new MigrationException(Phase.HANDSHAKE, "resume refused: the destination cannot read its resume journal",
                    e.getMessage(), e);
        }
        if (claim.samples().size() != images.size()) {
            throw new MigrationException(Phase.HANDSHAKE, "protocol error: resume samples for " + claim.samples().size()
                    + " disks, HELLO offers " + images.size());
        }
        java.nio.ByteBuffer buffer = java.nio.ByteBuffer.allocateDirect(hello.granuleSize());
        for (int disk = 0; disk < images.size(); disk++) {
            GranuleDigests d = digests.get(disk);
            long granules = (images.get(disk).size() + d.granuleSize() - 1) / d.granuleSize();
            for (Frame.Sample sample : claim.samples().get(disk)) {
                if (sample.granule() < 0 || sample.granule() >= granules) {
                    throw new MigrationException(Phase.HANDSHAKE, "protocol error: resume sample granule " + sample.granule()
                            + " outside disk " + disk + " of " + granules + " granules");
                }
                int length = d.granuleLength(sample.granule());
                buffer.clear().limit(length);
                try {
                    images.get(disk).read(sample.granule() * d.granuleSize(), buffer);
                } catch (ImageException e) {
                    throw new MigrationException(Phase.HANDSHAKE, "reading disk " + disk + " for the resume check failed: " + e.kind(),
                            e.getMessage(), e);
                }
                buffer.flip();
                if (GranuleDigests.digestOfGranule(buffer) != sample.digest()) {
                    throw new MigrationException(Phase.HANDSHAKE, "resume refused: disk " + hello.disks().get(disk).id()
                            + " differs from the source at " + String.format("byte 0x%x", sample.granule() * d.granuleSize())
                            + " (this destination's partial state is not what the source left): migrate without -r to start over");
                }
            }
        }
        LOG.log(System.Logger.Level.INFO, "resuming migration " + hello.migrationId() + " at checkpoint " + held + "; "
                + claim.samples().stream().mapToInt(List::size).sum() + " sampled granules match the source");
        return held;
    }

    /** CHECKPOINT: copies the digest pages changed since the last one and hands them to {@code migration-journal}. */
    private void checkpoint(Frame.Checkpoint checkpoint) throws MigrationException {
        if (state != State.RECEIVING || checkpoints == null) {
            unexpected(checkpoint);
        }
        List<List<GranuleDigests.Page>> pages = new ArrayList<>();
        for (GranuleDigests d : digests) {
            pages.add(d.takeChangedPages());
        }
        checkpoints.submit(checkpoint.number(), pages);
    }

    /**
     * What HELLO may ask for, checked before anything is prepared or allocated: granule size, each disk's
     * size, that the group digests fit one DISKS_DONE, and the heap the digests' page tables take.
     */
    static void checkBounds(Frame.Hello hello) throws MigrationException {
        if (!hello.copyDisks()) {
            return;
        }
        int granule = hello.granuleSize();
        if (granule < MigrationWire.MIN_GRANULE_SIZE || granule > MigrationWire.MAX_GRANULE_SIZE || Integer.bitCount(granule) != 1) {
            throw new MigrationException(Phase.HANDSHAKE, "bad granule size " + Integer.toUnsignedString(granule) + ": a power of two from "
                    + MigrationWire.MIN_GRANULE_SIZE + " to " + MigrationWire.MAX_GRANULE_SIZE + " is needed");
        }
        List<Long> sizes = new ArrayList<>();
        long tableBytes = 0;
        for (Frame.DiskOffer disk : hello.disks()) {
            if (disk.size() <= 0 || disk.size() > MigrationWire.MAX_DISK_SIZE) {
                throw new MigrationException(Phase.HANDSHAKE, "disk " + disk.id() + ": size " + Long.toUnsignedString(disk.size())
                        + " is out of range (1 byte .. " + MigrationWire.MAX_DISK_SIZE + ")");
            }
            sizes.add(disk.size());
            tableBytes += GranuleDigests.tableBytes(disk.size(), granule);
        }
        if (MigrationWire.disksDoneLength(sizes, granule) > MigrationWire.MAX_PAYLOAD) {
            throw new MigrationException(Phase.HANDSHAKE, "the disks' digests at granule size " + granule + " would not fit one"
                    + " DISKS_DONE frame: migrate with granule-size " + MigrationWire.smallestGranuleFor(sizes, granule) + " or more");
        }
        if (tableBytes > digestBudgetBytes()) {
            throw new MigrationException(Phase.HANDSHAKE, "the disks' digest tables need " + (tableBytes >> 20) + " MiB of heap,"
                    + " this destination allows " + (digestBudgetBytes() >> 20) + " MiB: migrate with a larger granule-size");
        }
    }

    /** Refuses, before it is exceeded, a session whose digests would take more heap than {@link #digestBudgetBytes()}. */
    private void checkDigestBudget() throws MigrationException {
        long inUse = 0;
        for (GranuleDigests d : digests) {
            inUse += d.pageBytesInUse();
        }
        long budget = digestBudgetBytes();
        if (inUse > budget) {
            long worst = 0;
            for (int i = 0; i < digests.size(); i++) {
                worst += GranuleDigests.allPagesBytes(images.get(i).size(), digests.get(i).granuleSize());
            }
            throw new MigrationException(stats.phase(), "the granule digests of the data received so far take " + (inUse >> 20)
                    + " MiB of heap, more than this destination allows (" + (budget >> 20) + " MiB, half its heap); all of these disks"
                    + " would need " + (worst >> 20) + " MiB: restart the destination with a larger -Xmx or migrate with a larger granule-size");
        }
    }

    /** On {@code vm-start}: QEMU starts while the bulk pass arrives. */
    private void startVm() {
        try {
            prepared.startVm();
        } catch (MigrationException e) {
            vmStartFailure = e;
        }
    }

    private void awaitVmStart() throws MigrationException, InterruptedException {
        vmStart.join();
        if (vmStartFailure != null) {
            throw vmStartFailure;
        }
    }

    /** Waits for {@code vm-start}; then the RAM tunnel can connect to QEMU. */
    private RamTunnel connectTunnel() throws Exception {
        awaitVmStart();
        RamTunnel t = RamTunnel.connecting(prepared.ramSocket(), writer, e -> {
            LOG.log(System.Logger.Level.WARNING, "the destination QEMU's incoming migration socket failed: " + e.getMessage());
            abort("the destination QEMU's incoming migration socket failed (its log says why)");   // no local path to the source
        });
        t.start();
        return t;
    }

    /**
     * From QEMU's event thread: the incoming RAM migration's status. Sends nothing itself (a blocked
     * send would stall QEMU's events): DEST_READY goes to {@code migration-reply}.
     */
    private void ramStatus(RamStatus status) {
        switch (status) {
            case COMPLETED -> {
                destReadySent = true;          // before the send: the source's COMMIT may come back at once
                replies.add(new Frame.DestReady());
            }
            case FAILED -> abort("the destination QEMU's incoming migration failed (see its log)");
            case SETUP, ACTIVE, PRE_SWITCHOVER, DEVICE, CANCELLING, CANCELLED, OTHER ->
                    LOG.log(System.Logger.Level.DEBUG, "destination QEMU migration status: " + status);
        }
    }

    /** On {@code migration-reply}: sends the frames that events (not the session's reads) give rise to. */
    private void sendReplies() {
        try {
            for (Frame frame = replies.take(); frame != NO_MORE_REPLIES; frame = replies.take()) {
                writer.send(frame);
            }
        } catch (IOException e) {
            abort("telling the source that the device state arrived failed: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private BlockImage image(int disk, long offset, long length) throws MigrationException {
        if (state != State.RECEIVING) {
            throw new MigrationException(stats.phase(), "protocol error: block frame in state " + state);
        }
        if (disk < 0 || disk >= images.size()) {
            throw new MigrationException(stats.phase(), "protocol error: block frame for disk " + disk + " of " + images.size());
        }
        BlockImage image = images.get(disk);
        int granule = digests.get(disk).granuleSize();
        boolean endsAtDisk = length <= image.size() - offset && offset + length == image.size();
        if (offset < 0 || length <= 0 || offset > image.size() || length > image.size() - offset || offset % granule != 0
                || (length % granule != 0 && !endsAtDisk)) {
            throw new MigrationException(stats.phase(), "protocol error: block range offset=" + offset + " length=" + length
                    + " is not whole granules of " + granule + " inside disk " + disk + " of " + image.size() + " bytes");
        }
        return image;
    }

    private void block(Frame.BlockData block) throws MigrationException {
        int length = block.data().remaining();
        BlockImage image = image(block.disk(), block.offset(), length);
        if (dropOneBlock && (!dropped || (block.disk() == droppedDisk && block.offset() <= droppedOffset
                && droppedOffset < block.offset() + length))) {
            if (!dropped) {
                dropped = true;
                droppedDisk = block.disk();
                droppedOffset = block.offset();
            }
            LOG.log(System.Logger.Level.WARNING, "test hook ferry.fault=drop-block: dropping block at offset " + block.offset());
            return;
        }
        try {
            image.write(block.offset(), block.data().duplicate());
        } catch (ImageException e) {
            throw new MigrationException(stats.phase(), "writing disk " + block.disk() + " failed at offset " + block.offset() + ": "
                    + e.kind(), e.getMessage(), e);
        }
        GranuleDigests d = digests.get(block.disk());
        d.recordData(block.offset() / d.granuleSize(), block.data());
        checkDigestBudget();
        stats.addDiskBytes(length);
        unflushedBytes += length;
        if (unflushedBytes >= WRITEBACK_CHUNK) {
            startWriteback();                 // spread the bulk pass's writeback instead of one burst at its end
        }
    }

    private void zero(Frame.BlockZero zero) throws MigrationException {
        BlockImage image = image(zero.disk(), zero.offset(), zero.length());
        try {
            image.writeZeroes(zero.offset(), zero.length(), true);
        } catch (ImageException e) {
            throw new MigrationException(stats.phase(), "zeroing disk " + zero.disk() + " failed at offset " + zero.offset() + ": "
                    + e.kind(), e.getMessage(), e);
        }
        GranuleDigests d = digests.get(zero.disk());
        d.recordZero(zero.offset() / d.granuleSize(), (zero.length() + d.granuleSize() - 1) / d.granuleSize());
        checkDigestBudget();
        unflushedBytes += 1;
    }

    /**
     * Starts writing back what the pass wrote, without waiting: the flush at switchover (inside the
     * downtime) then has only the last pass's blocks left. A blocking fdatasync here stalled the
     * stream for ~0.5 s after a 256 MiB bulk pass (benchmark timelines).
     */
    private void passEnd(Frame.PassEnd pass) throws MigrationException {
        stats.dirtyPass(pass.pass());
        if (unflushedBytes > 0) {
            startWriteback();
        }
    }

    private void startWriteback() throws MigrationException {
        for (BlockImage image : images) {
            try {
                image.startWriteback();
            } catch (ImageException e) {
                throw new MigrationException(stats.phase(), "writing back a disk failed: " + e.kind(), e.getMessage(), e);
            }
        }
        unflushedBytes = 0;
    }

    private void flushImages(Phase phase) throws MigrationException {
        for (BlockImage image : images) {
            try {
                image.flush();
            } catch (ImageException e) {
                throw new MigrationException(phase, "flushing a disk failed: " + e.kind(), e.getMessage(), e);
            }
        }
    }

    private void verify(Frame.DisksDone done) throws Exception {
        if (state != State.RECEIVING) {
            unexpected(done);
        }
        stats.phase(Phase.SWITCHOVER);
        awaitVmStart();                        // QEMU is up and, for -i, the bases matched the source's
        if (checkpoints != null) {
            checkpoints.finish();              // no journal write may touch the images once QEMU owns them
        }
        flushImages(Phase.SWITCHOVER);
        prepared.imagesComplete();             // QEMU alone owns the images before it gets the device state
        if (done.groupDigests().size() != digests.size()) {
            throw new MigrationException(Phase.SWITCHOVER, "source sent digests for " + done.groupDigests().size()
                    + " disks, destination has " + digests.size());
        }
        for (int i = 0; i < digests.size(); i++) {
            int mismatch = GranuleDigests.firstMismatch(digests.get(i).groupDigests(), done.groupDigests().get(i));
            if (mismatch >= 0) {
                disksDiffer = true;
                throw new MigrationException(Phase.SWITCHOVER, "disk " + i + " differs from the source at "
                        + digests.get(i).describeGroup(mismatch) + ": digest mismatch, switchover aborted");
            }
        }
        writer.send(new Frame.Verified());
        state = State.VERIFIED;
        LOG.log(System.Logger.Level.INFO, "disks verified against the source's digests");
    }

    private void commit() throws Exception {
        if (copyDisks && state != State.VERIFIED) {
            throw new MigrationException(Phase.SWITCHOVER, "protocol error: COMMIT in state " + state
                    + ": the disks were never verified");
        }
        if (!destReadySent) {
            throw new MigrationException(Phase.SWITCHOVER, "protocol error: COMMIT before the device state arrived");
        }
        committed = true;
        prepared.resume();
        state = State.RUNNING;
        writer.send(new Frame.Running());
        ram().close();
        dropJournal();
    }

    /** The VM runs here: nothing is left to resume, and the journals go (a failure to remove one is only logged). */
    private void dropJournal() {
        if (!copyDisks) {
            return;
        }
        try {
            PartialMigration journal = prepared.journal();
            journal.close();
            journal.discard();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "the migration completed, but removing its resume journals failed: " + e.getMessage()
                    + " (the files ending in " + ResumeJournal.SUFFIX + " beside the images may be deleted)");
        }
    }

    private RamTunnel ram() throws Exception {
        if (prepared == null) {
            throw new MigrationException(stats.phase(), "protocol error: RAM frame before HELLO");
        }
        if (tunnel == null) {
            tunnel = connectTunnel();
        }
        return tunnel;
    }

    private void finish(MigrationStatus status, String reason, Frame farewell) {
        LOG.log(System.Logger.Level.WARNING, "incoming migration " + status.qemuName() + ": " + reason);
        if (farewell != null && channel.isOpen()) {
            try {
                writer.send(farewell);
            } catch (IOException | InterruptedException e) {
                LOG.log(System.Logger.Level.DEBUG, "could not tell the source why: " + e.getMessage());
            }
        }
        try {
            if (tunnel != null) {
                tunnel.close();
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "closing the RAM tunnel: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (vmStart != null) {
            try {
                if (prepared != null) {
                    prepared.stopStarting();      // a base digest in progress stops at its next chunk
                }
                vmStart.join();                   // never abort a VM that is still starting
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (checkpoints != null) {
            try {
                checkpoints.finish();             // what arrived before the failure is worth keeping for a resume
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (prepared != null) {
            prepared.abort(reason, copyDisks && !disksDiffer);
        }
        stats.fail(status, reason);
    }

    private static final class SourceCancelled extends Exception {
        SourceCancelled(String reason) {
            super(reason);
        }
    }
}
