package ferry.migration;

import ferry.image.BlockImage;
import ferry.image.ImageException;
import ferry.image.raw.RawImage;
import ferry.migration.wire.Frame;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Stand-ins for the two QEMU processes, for in-process protocol tests: the source "QEMU" writes a
 * known RAM stream into the tunnel, pauses at pre-switchover, and writes a device-state tail after
 * migrate-continue; the destination "QEMU" listens, collects every byte, and reports completed at
 * EOF-of-stream marker. The real QEMU is used by the VM tests.
 */
final class FakeQemu {
    static final byte[] RAM = pattern(3 << 20, 7);
    static final byte[] DEVICE_STATE = pattern(4096, 11);

    static byte[] pattern(int length, int seed) {
        byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++) {
            bytes[i] = (byte) (i * 31 + seed + (i >>> 9));
        }
        return bytes;
    }

    /** The source side. */
    static final class Source implements SourceVm {
        final AtomicBoolean resumed = new AtomicBoolean();
        /** Runs where QEMU would pause the vCPUs and drain disk I/O, before pre-switchover. */
        volatile Runnable pauseGuest = () -> { };
        /** How long QEMU's STOP comes before pre-switchover (QEMU: a moment; a busy event thread: longer). */
        volatile long stopBeforePreSwitchoverMs;
        final AtomicBoolean cancelled = new AtomicBoolean();
        private volatile SocketChannel tunnel;
        private volatile RamListener listener;
        private Thread writerThread;

        @Override
        public void startRamMigration(Path tunnelSocket, RamListener listener) throws MigrationException {
            this.listener = listener;
            writerThread = Thread.ofVirtual().name("fake-qemu-src").start(() -> {
                try {
                    SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                    ch.connect(UnixDomainSocketAddress.of(tunnelSocket));
                    tunnel = ch;
                    listener.ramStatus(RamStatus.ACTIVE);
                    writeAll(ch, RAM);
                    pauseGuest.run();
                    listener.vmStopped(System.nanoTime());
                    Thread.sleep(stopBeforePreSwitchoverMs);
                    listener.ramStatus(RamStatus.PRE_SWITCHOVER);
                } catch (IOException e) {
                    if (!cancelled.get()) {
                        listener.ramStatus(RamStatus.FAILED);
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
        }

        @Override
        public void continueSwitchover() throws MigrationException {
            try {
                writeAll(tunnel, DEVICE_STATE);
                tunnel.close();
                listener.ramStatus(RamStatus.COMPLETED);
            } catch (IOException e) {
                throw new MigrationException(Phase.SWITCHOVER, "fake QEMU could not send its device state", e);
            }
        }

        @Override
        public void cancelRamMigration() {
            cancelled.set(true);
            try {
                if (tunnel != null) {
                    tunnel.close();
                }
                if (writerThread != null) {
                    writerThread.join();
                }
            } catch (IOException | InterruptedException e) {
                throw new AssertionError(e);
            }
        }

        @Override
        public void resume() {
            resumed.set(true);
        }

        @Override
        public ferry.migration.wire.VmFingerprint fingerprint() {
            return ferry.migration.wire.VmFingerprint.of(new ferry.migration.wire.VmFingerprint.Item("memory", "256 MiB"));
        }

        @Override
        public MigrationReport.Ram ramStats() {
            return MigrationReport.Ram.NONE;
        }

        @Override
        public void detach() {
            detached.set(true);
        }

        final AtomicBoolean detached = new AtomicBoolean();
    }

    static void writeAll(SocketChannel ch, byte[] bytes) throws IOException {
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        while (buffer.hasRemaining()) {
            ch.write(buffer);
        }
    }

    /**
     * The destination side: creates images (one per disk id) with resume journals in a directory, "QEMU"
     * collects its RAM stream. A resume reopens the images and journals a failed attempt kept.
     */
    static final class Destination implements DestinationHost {
        private final Path dir;
        final List<Prepared> prepared = new ArrayList<>();
        /** The next prepared VM refuses {@code cont}. */
        volatile boolean failResume;
        /** When set, every prepared VM's start fails with it (as a base image that differs does), not retried. */
        volatile MigrationException failStart;

        Destination(Path dir) {
            this.dir = dir;
        }

        @Override
        public PreparedVm prepare(Frame.Hello hello) throws MigrationException {
            try {
                List<Path> paths = hello.disks().stream().map(d -> dir.resolve(d.id() + "." + d.format())).toList();
                Optional<PartialMigration> kept = hello.copyDisks() ? PartialMigration.find(paths) : Optional.empty();
                PartialMigration journal;
                if (hello.resume().isPresent()) {
                    if (kept.isEmpty() || !kept.get().migrationId().equals(hello.migrationId())) {
                        if (kept.isPresent()) {
                            kept.get().close();
                        }
                        throw new MigrationException(Phase.HANDSHAKE, "resume refused: this destination holds no partial state of migration "
                                + hello.migrationId());
                    }
                    journal = kept.get();
                } else {
                    if (kept.isPresent()) {
                        kept.get().discard();
                    }
                    for (Path path : paths) {
                        Files.deleteIfExists(path);
                    }
                    journal = null;
                }
                Prepared vm = new Prepared(dir, hello, prepared.size(), paths, journal);
                vm.failResume = failResume;
                vm.failStart = failStart;
                prepared.add(vm);
                return vm;
            } catch (IOException e) {
                throw new MigrationException(Phase.HANDSHAKE, "fake destination could not prepare: " + e.getMessage(), e);
            }
        }

        Prepared last() {
            return prepared.get(prepared.size() - 1);
        }
    }

    static final class Prepared implements DestinationHost.PreparedVm {
        final List<BlockImage> images = new ArrayList<>();
        final List<Path> paths = new ArrayList<>();
        final Path socket;
        final java.io.ByteArrayOutputStream received = new java.io.ByteArrayOutputStream();
        final AtomicBoolean resumed = new AtomicBoolean();
        final AtomicReference<String> aborted = new AtomicReference<>();
        private final ServerSocketChannel server;
        private final Thread reader;
        private volatile SourceVm.RamListener listener;

        /** The images' journals; null without -b. */
        final PartialMigration journal;
        private final boolean resumed0;

        Prepared(Path dir, Frame.Hello hello, int attempt, List<Path> diskPaths, PartialMigration kept) throws IOException {
            resumed0 = kept != null;
            List<ResumeJournal.Identity> identities = new ArrayList<>();
            for (int i = 0; i < hello.disks().size(); i++) {
                Frame.DiskOffer offer = hello.disks().get(i);
                Path path = diskPaths.get(i);
                images.add(kept != null ? ferry.image.Images.open(path, offer.format(), false)
                        : ferry.image.Images.create(path, offer.format(), offer.size()));
                paths.add(path);
                identities.add(new ResumeJournal.Identity(hello.migrationId(), offer.id(), offer.size(), hello.granuleSize(),
                        offer.format(), true, java.time.Instant.now()));
            }
            journal = !hello.copyDisks() ? null : kept != null ? kept : PartialMigration.create(paths, identities);
            socket = dir.resolve("qemu-in-" + attempt + "-" + Long.toHexString(System.nanoTime()) + ".sock");
            server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            server.bind(UnixDomainSocketAddress.of(socket));
            reader = Thread.ofVirtual().name("fake-qemu-dst").start(this::collect);
        }

        private void collect() {
            try (SocketChannel ch = server.accept()) {
                ByteBuffer buffer = ByteBuffer.allocate(64 << 10);
                while (ch.read(buffer.clear()) >= 0) {
                    synchronized (received) {
                        received.write(buffer.array(), 0, buffer.position());
                        if (received.size() == RAM.length + DEVICE_STATE.length && listener != null) {
                            listener.ramStatus(RamStatus.COMPLETED);
                        }
                    }
                }
            } catch (IOException e) {
                // the session closed the tunnel: the test's assertions say whether that was right
            }
        }

        byte[] receivedBytes() {
            synchronized (received) {
                return received.toByteArray();
            }
        }

        @Override public List<BlockImage> images() { return images; }
        @Override public void imagesComplete() throws MigrationException {
            try {
                for (BlockImage image : images) {
                    image.flush();
                }
            } catch (ImageException e) {
                throw new MigrationException(Phase.SWITCHOVER, "fake destination flush failed", e);
            }
        }
        @Override public List<Boolean> fresh() { return images.stream().map(i -> !resumed0).toList(); }
        @Override public PartialMigration journal() { return journal; }
        volatile MigrationException failStart;

        @Override public void startVm() throws MigrationException {
            if (failStart != null) {
                throw failStart;
            }
        }
        @Override public void stopStarting() { }
        @Override public Path ramSocket() { return socket; }
        @Override public void ramListener(SourceVm.RamListener listener) { this.listener = listener; }
        volatile boolean failResume;

        @Override public void resume() throws MigrationException {
            if (failResume) {
                throw new MigrationException(Phase.COMPLETE, "fake QEMU refused cont");
            }
            resumed.set(true);
        }

        /** Whether the last abort kept the partial state. */
        volatile boolean keptPartial;

        @Override
        public void abort(String reason, boolean keepPartial) {
            try {
                server.close();
                for (BlockImage image : images) {
                    image.close();
                }
                if (journal != null) {
                    journal.close();
                    if (!keepPartial) {
                        journal.discard();
                    }
                }
                if (!keepPartial || journal == null) {
                    for (Path path : paths) {
                        Files.deleteIfExists(path);
                    }
                }
                keptPartial = keepPartial && journal != null;
                aborted.set(reason);           // last: the test reads it as "everything is undone"
            } catch (IOException e) {
                throw new AssertionError(e);
            }
        }

        void close() throws ImageException, IOException {
            server.close();
            for (BlockImage image : images) {
                image.close();
            }
        }
    }
}
