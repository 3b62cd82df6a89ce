package ferry.migration;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtyTrackingImage;
import ferry.linux.Threads;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameReader;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The source side of one migration, DESIGN.md "Migration, step by step": handshake, bulk pass,
 * dirty passes with convergence control, RAM migration through the tunnel, switchover in QEMU's
 * {@code pre-switchover}, digest check, commit.
 *
 * <p>Until the COMMIT frame is sent, any failure resumes the source VM with its disks untouched.
 * After COMMIT the destination may already run the VM, so the source stays paused and says so:
 * running the VM twice would corrupt its disks.
 *
 * <p>Threads: {@link #start()} starts {@code migration-send} (the procedure below) which starts
 * {@code migration-recv} (frames from the destination) and the RAM tunnel's pump; {@link #close()}
 * joins them. {@link #cancel}, {@link #maxBandwidth} and {@link #stats()} may be called from any thread.
 */
public final class MigrationSource implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MigrationSource.class.getName());
    private static final int CONNECT_TIMEOUT_MS = 10_000;
    private static final long WELCOME_TIMEOUT_MS = 120_000;
    private static final long VERIFY_TIMEOUT_MS = 120_000;
    private static final long DEST_READY_TIMEOUT_MS = 300_000;
    private static final long RUNNING_TIMEOUT_MS = 60_000;
    /** Pause between dirty passes once the remainder is small, so an idle guest costs no busy loop. */
    private static final long IDLE_PASS_INTERVAL_MS = 20;
    /**
     * Socket buffers of the stream. Whatever sits in them when QEMU pauses at pre-switchover must
     * drain inside the downtime: 4 MiB buffers on both ends cost ~170 ms of it under TCG, 1 MiB is
     * still several times a LAN's bandwidth-delay product.
     */
    static final int SOCKET_BUFFER = 1 << 20;
    private static final long UNCAPPED_BYTES_PER_SEC = 1L << 40;

    private final String vmName;
    private final List<SourceDisk> disks;
    private final SourceVm vm;
    private final MigrationRequest request;
    private final Path runtimeDir;
    private final MigrationStats stats = new MigrationStats();
    private final BlockingQueue<SourceEvent> events = new LinkedBlockingQueue<>();
    private final WriteThrottle throttle = new WriteThrottle();
    private final RateLimiter limiter;
    private final long downtimeLimitMs;
    private final int granuleSize;

    private Thread sendThread;
    private volatile Thread recvThread;
    private volatile SocketChannel channel;
    private volatile FrameWriter writer;
    private volatile RamTunnel tunnel;
    private final List<DirtyBitmap> bitmaps = new ArrayList<>();
    private final List<GranuleDigests> digests = new ArrayList<>();
    private volatile Convergence convergence;

    // Flags set from events, read by the send thread only.
    private boolean ramStarted;
    private boolean preSwitchover;
    private boolean verified;
    private boolean destReady;
    private boolean running;
    private boolean committed;
    private long lastPassBytes;
    private long lastPassMs;

    public MigrationSource(String vmName, List<SourceDisk> disks, SourceVm vm, MigrationRequest request,
                           MigrationParameters parameters, Path runtimeDir) {
        this.vmName = vmName;
        this.disks = List.copyOf(disks);
        this.vm = vm;
        this.request = request;
        this.runtimeDir = runtimeDir;
        this.limiter = new RateLimiter(parameters.maxBandwidthBytesPerSec());
        this.downtimeLimitMs = parameters.downtimeLimitMs();
        this.granuleSize = parameters.granuleSize();
        long total = 0;
        for (SourceDisk disk : disks) {
            total += disk.image().size();
        }
        stats.diskTotalBytes(request.copyDisks() ? total : 0);
    }

    public MigrationStats stats() {
        return stats;
    }

    /** Changes the stream's bandwidth cap while the migration runs. */
    public void maxBandwidth(long bytesPerSec) {
        limiter.rate(bytesPerSec);
        Convergence c = convergence;
        if (c != null) {
            c.cap(bytesPerSec);
        }
    }

    public void start() {
        sendThread = Threads.unstartedVirtual("migration-send", this::run);
        sendThread.start();
    }

    /** Asks the migration to stop; it ends CANCELLED with the source VM running (unless already committed). */
    public void cancel(String reason) {
        events.add(new SourceEvent.CancelRequested(reason));
    }

    /** Waits until the migration has finished; true when it did within the time. */
    public boolean await(long timeoutMs) throws InterruptedException {
        return sendThread.join(java.time.Duration.ofMillis(timeoutMs));
    }

    private void run() {
        try {
            connect();
            handshake();
            if (request.copyDisks()) {
                copyDisks();
            } else {
                startRam();
                awaitPreSwitchoverWithoutDisks();
            }
            switchover();
            stats.phase(Phase.COMPLETE);
            stats.status(MigrationStatus.COMPLETED);
            LOG.log(System.Logger.Level.INFO, "migration of " + vmName + " completed in " + stats.elapsedMs() + " ms");
        } catch (Cancelled c) {
            recover(MigrationStatus.CANCELLED, "cancelled: " + c.getMessage(), new Frame.Cancel(c.getMessage()));
        } catch (MigrationException e) {
            recover(MigrationStatus.FAILED, e.oneLine(), new Frame.Error(e.phase().label(), e.getMessage()));
        } catch (IOException e) {
            String reason = peerReason().orElse("connection to the destination lost: " + e.getMessage());
            recover(MigrationStatus.FAILED, stats.phase().label() + ": " + reason, new Frame.Error(stats.phase().label(), reason));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            recover(MigrationStatus.FAILED, stats.phase().label() + ": interrupted", new Frame.Error(stats.phase().label(), "source interrupted"));
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "migration failed unexpectedly", t);
            String reason = stats.phase().label() + ": " + t;
            recover(MigrationStatus.FAILED, reason, new Frame.Error(stats.phase().label(), t.toString()));
        } finally {
            stopTracking();
        }
    }

    /**
     * When a send fails because the destination closed the stream, the destination usually said why
     * first (an ERROR frame the receiver thread queued): that reason beats "broken pipe".
     */
    private java.util.Optional<String> peerReason() {
        try {
            Thread recv = recvThread;
            if (recv != null) {
                recv.join(1000);            // let it queue what it read before the close
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (SourceEvent event : events) {
            if (event instanceof SourceEvent.PeerFrame(Frame.Error error)) {
                return java.util.Optional.of("destination failed in " + error.phase() + ": " + error.message());
            }
        }
        return java.util.Optional.empty();
    }

    // ---- setup --------------------------------------------------------------------------------

    private void connect() throws MigrationException {
        stats.phase(Phase.HANDSHAKE);
        try {
            SocketChannel ch = SocketChannel.open();
            ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
            ch.setOption(StandardSocketOptions.SO_KEEPALIVE, true);
            ch.setOption(StandardSocketOptions.SO_SNDBUF, SOCKET_BUFFER);
            ch.socket().connect(new InetSocketAddress(request.host(), request.port()), CONNECT_TIMEOUT_MS);
            channel = ch;
        } catch (IOException e) {
            throw new MigrationException(Phase.HANDSHAKE, "cannot connect to " + request.host() + ":" + request.port()
                    + ": " + e.getMessage() + " (is the destination started with -incoming tcp:0:" + request.port() + "?)", e);
        }
        writer = new FrameWriter(channel, limiter);
        FrameReader reader = new FrameReader(Channels.newChannel(channelInput()));
        stats.sources(this::remainingBytes, writer::bytesWritten, throttle::averageDelayUs, vm::ramStats);
        recvThread = Threads.unstartedVirtual("migration-recv", () -> receive(reader));
        recvThread.start();
    }

    private java.io.InputStream channelInput() throws MigrationException {
        try {
            return channel.socket().getInputStream();
        } catch (IOException e) {
            throw new MigrationException(Phase.HANDSHAKE, "cannot read from " + request.host() + ":" + request.port(), e);
        }
    }

    private void handshake() throws MigrationException, InterruptedException, Cancelled {
        List<Frame.DiskOffer> offers = new ArrayList<>();
        for (SourceDisk disk : disks) {
            offers.add(new Frame.DiskOffer(disk.id(), disk.image().size(), disk.image().format(),
                    request.incremental() ? disk.base() : java.util.Optional.empty()));
        }
        send(Phase.HANDSHAKE, new Frame.Hello(MigrationWire.VERSION, vmName, granuleSize, request.copyDisks(),
                request.incremental(), offers));
        Frame.Welcome welcome = awaitFrame(Frame.Welcome.class, WELCOME_TIMEOUT_MS, "the destination's WELCOME");
        if (request.copyDisks() && welcome.freshDisks().size() != disks.size()) {
            throw new MigrationException(Phase.HANDSHAKE, "destination prepared " + welcome.freshDisks().size()
                    + " disks, source has " + disks.size());
        }
        this.fresh = welcome.freshDisks();
        stats.status(MigrationStatus.ACTIVE);
    }

    private List<Boolean> fresh = List.of();

    // ---- disks --------------------------------------------------------------------------------

    private void copyDisks() throws Exception {
        convergence = new Convergence(limiter.rate(), System.nanoTime());
        List<BlockSender> senders = new ArrayList<>();
        for (int i = 0; i < disks.size(); i++) {
            DirtyTrackingImage image = disks.get(i).image();
            DirtyBitmap bitmap = new DirtyBitmap(image.size(), granuleSize);
            GranuleDigests digest = new GranuleDigests(image.size(), granuleSize);
            image.gate(throttle);
            image.track(bitmap);                 // from here on every guest write marks; the bulk reads after
            bitmaps.add(bitmap);
            digests.add(digest);
            senders.add(new BlockSender(i, image, digest, writer, stats));
        }
        bulkPass(senders);
        int pass = 0;
        while (!preSwitchover) {
            pass++;
            dirtyPass(senders, pass);
            drainEvents();
            long remaining = remainingBytes();
            stats.expectedDowntimeMs(convergence.expectedDowntimeMs(remaining));
            if (!ramStarted && convergence.readyForRam(remaining, downtimeLimitMs)) {
                startRam();
            }
            throttle.limit(convergence.afterPass(pass, remaining));
            if (!preSwitchover && remaining < 4L * granuleSize * 256) {
                waitEvents(IDLE_PASS_INTERVAL_MS);
            }
        }
    }

    private void bulkPass(List<BlockSender> senders) throws Exception {
        stats.phase(Phase.BULK_COPY);
        long start = System.nanoTime();
        long wireBefore = writer.bytesWritten();
        for (int i = 0; i < disks.size(); i++) {
            BulkPlan plan = BulkPlan.of(disks.get(i).image(), granuleSize, request.incremental(), fresh.get(i));
            LOG.log(System.Logger.Level.INFO, "bulk pass: disk=" + disks.get(i).id() + " data=" + plan.dataBytes()
                    + " bytes, zero granules=" + plan.zero().count());
            senders.get(i).sendZeroes(plan.zero());
            senders.get(i).afterEachRun(() -> throttle.limit(convergence.duringBulk(remainingBytes(), System.nanoTime())));
            senders.get(i).sendData(plan.data());
            senders.get(i).afterEachRun(() -> { });
            drainEvents();
        }
        convergence.passSent(writer.bytesWritten() - wireBefore, System.nanoTime() - start);
        send(Phase.BULK_COPY, new Frame.PassEnd(0, remainingBytes()));
    }

    private void dirtyPass(List<BlockSender> senders, int pass) throws Exception {
        stats.phase(Phase.ITERATE);
        stats.dirtyPass(pass);
        long start = System.nanoTime();
        long wireBefore = writer.bytesWritten();
        long found = 0;
        for (int i = 0; i < senders.size(); i++) {
            var snapshot = bitmaps.get(i).snapshotAndClear();   // clear BEFORE reading (DESIGN.md's invariant)
            found += snapshot.bytes();
            senders.get(i).sendData(snapshot);
        }
        convergence.snapshotTaken(found, start);
        convergence.passSent(writer.bytesWritten() - wireBefore, System.nanoTime() - start);
        stats.rates(convergence.bandwidthBytesPerSec(), convergence.dirtyRateBytesPerSec());
        send(Phase.ITERATE, new Frame.PassEnd(pass, remainingBytes()));
    }

    private static long sinceMs(long startNs) {
        return (System.nanoTime() - startNs) / 1_000_000;
    }

    private long remainingBytes() {
        long remaining = 0;
        for (DirtyBitmap bitmap : bitmaps) {
            remaining += bitmap.dirtyBytes();
        }
        return remaining;
    }

    // ---- RAM and switchover -------------------------------------------------------------------

    private void startRam() throws MigrationException {
        stats.phase(Phase.RAM);
        Path socket = runtimeDir.resolve("ram-out.sock");
        tunnel = RamTunnel.listening(socket, writer, e -> events.add(new SourceEvent.Failure(Phase.RAM, e)));
        try {
            tunnel.start();
        } catch (IOException e) {
            throw new MigrationException(Phase.RAM, "cannot listen for QEMU's migration stream at " + socket + ": " + e.getMessage(), e);
        }
        vm.startRamMigration(socket, status -> events.add(new SourceEvent.RamStatus(status)));
        ramStarted = true;
        LOG.log(System.Logger.Level.INFO, "RAM migration started; disk remainder " + remainingBytes() + " bytes");
    }

    private void awaitPreSwitchoverWithoutDisks() throws Exception {
        while (!preSwitchover) {
            waitEvents(1000);
            send(Phase.RAM, new Frame.PassEnd(0, 0));     // keeps the destination's read timeout at bay
        }
    }

    private void switchover() throws Exception {
        long pausedNs = System.nanoTime();
        stats.phase(Phase.SWITCHOVER);
        // The VM is paused: the bandwidth cap would only lengthen the downtime (QEMU lifts its own
        // rate limit at this point too).
        limiter.rate(UNCAPPED_BYTES_PER_SEC);
        if (request.copyDisks()) {
            long wire = writer.bytesWritten();
            for (int i = 0; i < disks.size(); i++) {
                BlockSender last = new BlockSender(i, disks.get(i).image(), digests.get(i), writer, stats);
                last.sendData(bitmaps.get(i).snapshotAndClear());
            }
            List<int[]> groups = new ArrayList<>();
            for (GranuleDigests d : digests) {
                groups.add(d.groupDigests());
            }
            send(Phase.SWITCHOVER, new Frame.DisksDone(groups));
            lastPassBytes = writer.bytesWritten() - wire;
            lastPassMs = sinceMs(pausedNs);
        }
        // The device state goes out while the destination flushes and compares digests: the destination
        // runs the VM only on COMMIT, and COMMIT waits for VERIFIED, so nothing runs on unverified disks.
        vm.continueSwitchover();
        awaitFlag(() -> verified || !request.copyDisks(), VERIFY_TIMEOUT_MS, "the destination's digest verification");
        long verifiedMs = sinceMs(pausedNs);
        awaitFlag(() -> destReady, DEST_READY_TIMEOUT_MS, "the destination QEMU to receive the device state");
        long deviceStateMs = sinceMs(pausedNs);
        send(Phase.SWITCHOVER, new Frame.Commit());
        committed = true;
        awaitFlag(() -> running, RUNNING_TIMEOUT_MS, "the destination to confirm that the VM runs");
        long downtimeMs = sinceMs(pausedNs);
        stats.downtimeMs(downtimeMs);
        // One line that says where the downtime went (measured from QEMU's pre-switchover event).
        LOG.log(System.Logger.Level.INFO, String.format("switchover: last pass %d bytes sent at +%d ms, disks verified at +%d ms,"
                + " device state in the destination QEMU at +%d ms, destination running at +%d ms",
                lastPassBytes, lastPassMs, verifiedMs, deviceStateMs, downtimeMs));
    }

    // ---- events -------------------------------------------------------------------------------

    private void receive(FrameReader reader) {
        try {
            while (true) {
                Frame frame = reader.next();
                switch (frame) {
                    case Frame.Ram ram -> tunnel().deliver(ram.data());
                    case Frame.RamEof eof -> tunnel().peerFinished();
                    default -> events.add(new SourceEvent.PeerFrame(frame));
                }
            }
        } catch (Exception e) {
            events.add(new SourceEvent.Failure(stats.phase(), e));
        }
    }

    private RamTunnel tunnel() throws IOException {
        RamTunnel t = tunnel;
        if (t == null) {
            throw new IOException("destination sent RAM data before the RAM migration started");
        }
        return t;
    }

    private void drainEvents() throws MigrationException, Cancelled {
        SourceEvent event;
        while ((event = events.poll()) != null) {
            handle(event);
        }
    }

    private void waitEvents(long timeoutMs) throws MigrationException, Cancelled, InterruptedException {
        SourceEvent event = events.poll(timeoutMs, TimeUnit.MILLISECONDS);
        if (event != null) {
            handle(event);
            drainEvents();
        }
    }

    private void awaitFlag(java.util.function.BooleanSupplier flag, long timeoutMs, String what)
            throws MigrationException, Cancelled, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        // One event at a time, checking the flag after each: RUNNING followed by the destination's
        // normal close must end in RUNNING, not in "connection lost".
        while (!flag.getAsBoolean()) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new MigrationException(stats.phase(), "timed out after " + timeoutMs + " ms waiting for " + what);
            }
            SourceEvent event = events.poll(left, TimeUnit.NANOSECONDS);
            if (event != null) {
                handle(event);
            }
        }
    }

    private <F extends Frame> F awaitFrame(Class<F> type, long timeoutMs, String what)
            throws MigrationException, InterruptedException, Cancelled {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            long left = deadline - System.nanoTime();
            SourceEvent event = left > 0 ? events.poll(left, TimeUnit.NANOSECONDS) : null;
            if (event == null) {
                throw new MigrationException(stats.phase(), "timed out after " + timeoutMs + " ms waiting for " + what);
            }
            if (event instanceof SourceEvent.PeerFrame(Frame frame) && type.isInstance(frame)) {
                return type.cast(frame);
            }
            handle(event);
        }
    }

    private void handle(SourceEvent event) throws MigrationException, Cancelled {
        switch (event) {
            case SourceEvent.CancelRequested c -> throw new Cancelled(c.reason());
            case SourceEvent.Failure f -> throw new MigrationException(f.phase(),
                    f.cause() instanceof java.io.EOFException ? "connection to the destination lost: " + f.cause().getMessage()
                            : String.valueOf(f.cause().getMessage()), f.cause());
            case SourceEvent.RamStatus r -> ramStatus(r.status());
            case SourceEvent.PeerFrame p -> peerFrame(p.frame());
        }
    }

    private void ramStatus(String status) throws MigrationException {
        switch (status) {
            case "pre-switchover" -> preSwitchover = true;
            case "failed", "cancelled" -> throw new MigrationException(Phase.RAM, "QEMU's RAM migration " + status);
            default -> LOG.log(System.Logger.Level.DEBUG, "QEMU migration status: " + status);
        }
    }

    private void peerFrame(Frame frame) throws MigrationException {
        switch (frame) {
            case Frame.Verified v -> verified = true;
            case Frame.DestReady r -> destReady = true;
            case Frame.Running r -> running = true;
            case Frame.Error e -> throw new MigrationException(stats.phase(), "destination failed in " + e.phase() + ": " + e.message());
            default -> throw new MigrationException(stats.phase(), "unexpected " + frame.type() + " frame from the destination");
        }
    }

    private void send(Phase phase, Frame frame) throws MigrationException, InterruptedException {
        try {
            writer.send(frame);
        } catch (IOException e) {
            throw new MigrationException(phase, "sending " + frame.type() + " to the destination failed: " + e.getMessage(), e);
        }
    }

    // ---- failure ------------------------------------------------------------------------------

    private void recover(MigrationStatus finalStatus, String reason, Frame farewell) {
        if (committed) {
            String message = reason + "; the VM may already run on the destination, so the source stays paused"
                    + " (the VM must never run twice): check the destination, and only if it does not run, `cont` here";
            LOG.log(System.Logger.Level.ERROR, "migration failed after commit: " + message);
            closeStream(null);
            stats.fail(MigrationStatus.FAILED, message);
            return;
        }
        LOG.log(System.Logger.Level.WARNING, "migration " + finalStatus.qemuName() + ": " + reason + "; resuming the source VM");
        closeStream(farewell);
        StringBuilder message = new StringBuilder(reason);
        if (ramStarted) {
            try {
                vm.cancelRamMigration();
            } catch (MigrationException e) {
                message.append("; cancelling QEMU's migration failed: ").append(e.getMessage());
            }
        }
        try {
            vm.resume();
        } catch (MigrationException e) {
            message.append("; RESUMING THE SOURCE VM FAILED: ").append(e.getMessage());
        }
        stats.fail(finalStatus, message.toString());
    }

    /** Tells the destination why (when the stream still works), then closes everything. */
    private void closeStream(Frame farewell) {
        FrameWriter w = writer;
        SocketChannel ch = channel;
        if (farewell != null && w != null && ch != null && ch.isOpen()) {
            try {
                ch.configureBlocking(true);
                ch.socket().setSoLinger(true, 2);
                w.send(farewell);
            } catch (IOException | InterruptedException e) {
                LOG.log(System.Logger.Level.DEBUG, "could not tell the destination why: " + e.getMessage());
            }
        }
        try {
            if (ch != null) {
                ch.close();
            }
            RamTunnel t = tunnel;
            if (t != null) {
                t.close();
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "closing the migration stream: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void stopTracking() {
        throttle.limit(0);
        for (SourceDisk disk : disks) {
            disk.image().untrack();
            disk.image().gate(DirtyTrackingImage.WriteGate.OPEN);
        }
    }

    @Override
    public void close() throws InterruptedException {
        cancel("closed");
        if (sendThread != null) {
            sendThread.join();
        }
        closeStream(null);
        Thread recv = recvThread;
        if (recv != null) {
            recv.join(5_000);
        }
    }

    /** The user cancelled. */
    private static final class Cancelled extends Exception {
        Cancelled(String reason) {
            super(reason);
        }
    }
}
