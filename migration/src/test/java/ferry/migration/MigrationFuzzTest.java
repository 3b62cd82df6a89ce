package ferry.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ferry.dirty.DirtyTrackingImage;
import ferry.image.raw.RawImage;
import ferry.migration.wire.Frame;
import ferry.migration.wire.FrameWriter;
import ferry.migration.wire.MigrationWire;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.stream.Stream;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Seeded fuzzing of a destination, as NbdFuzzTest does for the NBD server: first a real migration is
 * recorded in-process (MigrationSource to a MigrationDestination with the QEMU stand-ins, through a relay
 * that keeps the source's bytes); then, against another destination, {@link #CASES} sessions, each on a fresh connection to one
 * listening destination: random bytes, the recording's frames with bytes flipped, with fields set to
 * boundary values and the CRC made right again (so that the payload decoders and the session see
 * them), dropped, repeated or swapped frames, and HELLOs with hostile sizes, counts, granules and names.
 * Afterwards: no thread died of an uncaught throwable, nothing outside the destination's drive
 * directory changed and nothing stayed inside it, the listener still listens, and a real source
 * migrates through it. The same cases run every time (about 15 s on 2 busy cores).
 */
class MigrationFuzzTest {
    private static final long SEED = 20261129L;
    private static final int CASES = 10_000;
    /** Only bounds the run, so that a destination that stopped answering cannot hang the build. */
    private static final long LIMIT_NS = 120_000_000_000L;
    /** Bytes of recorded frames a case sends at most: the session's control paths, not bulk throughput. */
    private static final int CASE_BYTES = 256 << 10;
    private static final long DISK_SIZE = 1L << 20;
    private static final long[] INTERESTING = {0, 1, -1, 2, 4095, 4096, 4097, 1 << 20, 1 << 24, 1L << 31, 1L << 32,
            Long.MAX_VALUE, Long.MIN_VALUE, Long.MAX_VALUE - 7, MigrationWire.MAX_DISK_SIZE, MigrationWire.MAX_DISK_SIZE + 1,
            DISK_SIZE, DISK_SIZE - 4096, DISK_SIZE + 4096, 0xffff, 0x10000};
    private static final List<String> HOSTILE_NAMES = List.of("/etc/shadow", "../../../../etc/hostname", "..", "", "a/b",
            "disk0\0", "x".repeat(MigrationWire.MAX_STRING));

    @TempDir Path tmp;

    /** Like IncomingVm: the images are this host's own, named by its configuration, never by what the source calls them. */
    private static final class OwnDrives implements DestinationHost {
        final FakeQemu.Destination fake;

        OwnDrives(Path dir) {
            fake = new FakeQemu.Destination(dir);
        }

        @Override
        public PreparedVm prepare(Frame.Hello hello) throws MigrationException {
            if (hello.disks().size() != 1 || !hello.disks().getFirst().format().equals("raw")) {
                throw new MigrationException(Phase.HANDSHAKE, "this destination has one raw -drive");
            }
            Frame.DiskOffer offer = hello.disks().getFirst();
            return fake.prepare(new Frame.Hello(hello.version(), "vm", hello.granuleSize(), hello.copyDisks(), hello.incremental(),
                    List.of(new Frame.DiskOffer("disk0", offer.size(), "raw", Optional.empty())), hello.fingerprint(),
                    hello.migrationId(), hello.resume()));
        }
    }

    @Test
    void shouldSurviveRandomAndMutatedSessionsAndThenMigrate() throws Exception {
        Path srcDir = Files.createDirectories(tmp.resolve("src"));
        Path dstDir = Files.createDirectories(tmp.resolve("dst"));
        Path elsewhere = Files.createDirectories(tmp.resolve("elsewhere"));
        Files.writeString(elsewhere.resolve("precious"), "not a drive");
        RawImage raw = RawImage.create(srcDir.resolve("disk0.raw"), DISK_SIZE);
        byte[] data = new byte[256 << 10];
        new Random(1).nextBytes(data);
        raw.write(64 << 10, ByteBuffer.wrap(data));
        DirtyTrackingImage source = new DirtyTrackingImage(raw);
        ConcurrentLinkedQueue<Throwable> uncaught = new ConcurrentLinkedQueue<>();
        Thread.UncaughtExceptionHandler previous = Thread.getDefaultUncaughtExceptionHandler();
        Thread.setDefaultUncaughtExceptionHandler((thread, e) -> uncaught.add(new AssertionError(thread.getName() + " died", e)));
        OwnDrives host = new OwnDrives(dstDir);
        MigrationDestination destination = new MigrationDestination("127.0.0.1", 0, host);
        try {
            List<byte[]> frames;
            try (MigrationDestination recorder = new MigrationDestination("127.0.0.1", 0,
                    new FakeQemu.Destination(Files.createDirectories(tmp.resolve("recorded"))))) {
                recorder.start();
                frames = frames(record(recorder, source, srcDir));
            }
            destination.start();
            Map<String, String> before = snapshot(tmp, dstDir);
            Map<String, Integer> outcomes = fuzz(destination, frames);
            assertTrue(uncaught.isEmpty(), () -> "uncaught: " + uncaught);
            assertEquals(before, snapshot(tmp, dstDir), "a file outside the destination's drive directory changed");
            try (Stream<Path> left = Files.list(dstDir)) {
                // A failed case that got as far as WELCOME keeps its partial state for a resume; the next case's fresh
                // start replaces it: one drive never holds two, and nothing else is left.
                List<String> files = left.map(p -> p.getFileName().toString()).filter(n -> !n.endsWith(".sock")).sorted().toList();
                assertTrue(files.isEmpty() || files.equals(List.of("disk0.raw", "disk0.raw" + ResumeJournal.SUFFIX)),
                        () -> "left behind: " + files);
            }
            assertTrue(outcomes.getOrDefault("WELCOME", 0) > 500 && outcomes.getOrDefault("ERROR", 0) > 2000, outcomes.toString());
            // A real source still migrates through the same listener.
            MigrationSource migration = migrate(destination.port(), source, srcDir);
            assertTrue(migration.await(60_000));
            assertEquals(MigrationStatus.COMPLETED, migration.stats().report().status(), () -> migration.stats().report().error().orElse(""));
            FakeQemu.Prepared prepared = host.fake.last();
            prepared.close();
            assertEquals(-1, Files.mismatch(srcDir.resolve("disk0.raw"), prepared.paths.getFirst()));
        } finally {
            Thread.setDefaultUncaughtExceptionHandler(previous);
            destination.close();
            raw.close();
        }
    }

    private static MigrationSource migrate(int port, DirtyTrackingImage source, Path srcDir) {
        FakeBlocks blocks = FakeBlocks.of(source);
        MigrationSource migration = new MigrationSource("test-vm", blocks.disks(), new FakeQemu.Source(), blocks,
                new MigrationRequest("127.0.0.1", port, true, false), MigrationParameters.defaults(), srcDir);
        migration.start();
        return migration;
    }

    /** A whole migration to {@code destination}, recorded: every byte the source sent. */
    private static byte[] record(MigrationDestination destination, DirtyTrackingImage source, Path srcDir) throws Exception {
        ByteArrayOutputStream recorded = new ByteArrayOutputStream();
        try (ServerSocketChannel relay = ServerSocketChannel.open().bind(new InetSocketAddress("127.0.0.1", 0))) {
            Thread relayThread = Thread.ofVirtual().start(() -> {
                try (SocketChannel from = relay.accept();
                     SocketChannel to = SocketChannel.open(new InetSocketAddress("127.0.0.1", destination.port()))) {
                    Thread back = Thread.ofVirtual().start(() -> copy(to, from, null));
                    copy(from, to, recorded);
                    back.join();
                } catch (IOException | InterruptedException e) {
                    // the migration below says whether the recording is whole
                }
            });
            MigrationSource migration = migrate(((InetSocketAddress) relay.getLocalAddress()).getPort(), source, srcDir);
            assertTrue(migration.await(60_000));
            relayThread.join(10_000);
            assertEquals(MigrationStatus.COMPLETED, migration.stats().report().status(), () -> migration.stats().report().error().orElse(""));
        }
        return recorded.toByteArray();
    }

    private static void copy(SocketChannel from, SocketChannel to, ByteArrayOutputStream keep) {
        ByteBuffer buffer = ByteBuffer.allocate(64 << 10);
        try {
            while (from.read(buffer.clear()) >= 0) {
                buffer.flip();
                if (keep != null) {
                    synchronized (keep) {
                        keep.write(buffer.array(), 0, buffer.limit());
                    }
                }
                while (buffer.hasRemaining()) {
                    to.write(buffer);
                }
            }
            to.shutdownOutput();
        } catch (IOException e) {
            // one side closed: the relay ends
        }
    }

    /** The recording cut into whole frames (header and payload), in order. */
    private static List<byte[]> frames(byte[] stream) {
        List<byte[]> frames = new ArrayList<>();
        ByteBuffer b = ByteBuffer.wrap(stream);
        while (b.remaining() >= MigrationWire.HEADER_LENGTH) {
            int length = b.getInt(b.position() + MigrationWire.LENGTH_OFFSET);
            byte[] frame = new byte[MigrationWire.HEADER_LENGTH + length];
            b.get(frame);
            frames.add(frame);
        }
        assertTrue(frames.size() > 10, "recorded " + frames.size() + " frames");
        assertEquals(MigrationWire.Type.HELLO.code, ByteBuffer.wrap(frames.getFirst()).getShort(MigrationWire.TYPE_OFFSET));
        return frames;
    }

    /** Runs the cases; what the destination answered first, counted by frame type ("EOF": nothing). */
    private static Map<String, Integer> fuzz(MigrationDestination destination, List<byte[]> frames) throws Exception {
        Random random = new Random(SEED);
        Map<String, Integer> outcomes = new TreeMap<>();
        long deadline = System.nanoTime() + LIMIT_NS;
        for (int i = 0; i < CASES; i++) {
            assertTrue(System.nanoTime() < deadline, "only " + i + " cases within the limit");
            byte[] bytes = switch (random.nextInt(5)) {
                case 0 -> randomBytes(random);
                case 1 -> join(flipped(prefix(frames, random), random));
                case 2 -> join(fieldMutated(prefix(frames, random), random));
                case 3 -> join(shuffled(prefix(frames, random), random));
                default -> join(hostileHello(frames, random));
            };
            String outcome = session(destination, bytes);
            outcomes.merge(outcome, 1, Integer::sum);
            long idle = System.nanoTime() + 10_000_000_000L;
            while (destination.sessionRunning()) {                 // the next case must find the destination free
                assertTrue(System.nanoTime() < idle, "case " + i + ": the session did not end after the source's EOF");
                Thread.onSpinWait();
            }
            assertTrue(destination.runningVm().isEmpty(), "case " + i + " completed a migration");
        }
        return outcomes;
    }

    /** Sends one case, half-closes, and reads what comes back until the destination closes. */
    private static String session(MigrationDestination destination, byte[] bytes) throws Exception {
        try (SocketChannel ch = SocketChannel.open(new InetSocketAddress("127.0.0.1", destination.port()))) {
            ch.socket().setSoTimeout(10_000);
            try {
                FakeQemu.writeAll(ch, bytes);
                ch.shutdownOutput();
            } catch (IOException refusedMidway) {
                // the destination refused and closed before it read everything
            }
            InputStream in = ch.socket().getInputStream();
            byte[] header = in.readNBytes(MigrationWire.HEADER_LENGTH);
            String outcome = header.length < MigrationWire.HEADER_LENGTH ? "EOF"
                    : String.valueOf(MigrationWire.Type.of(ByteBuffer.wrap(header).getShort(MigrationWire.TYPE_OFFSET)));
            while (in.read(new byte[8192]) >= 0) {
                // until the destination closes; a SocketTimeoutException fails the test
            }
            return outcome;
        } catch (java.net.SocketException reset) {
            return "RESET";                                          // closed with our bytes unread: a refusal
        }
    }

    private static byte[] randomBytes(Random random) {
        byte[] bytes = new byte[random.nextInt(300)];
        random.nextBytes(bytes);
        if (bytes.length >= 4 && random.nextInt(4) == 0) {
            ByteBuffer.wrap(bytes).putInt(0, MigrationWire.MAGIC);
        }
        return bytes;
    }

    /** The first frames of the recording, at most {@link #CASE_BYTES}, each a copy. */
    private static List<byte[]> prefix(List<byte[]> frames, Random random) {
        List<byte[]> out = new ArrayList<>();
        int count = 1 + random.nextInt(Math.min(frames.size(), 60));
        int bytes = 0;
        for (int i = 0; i < count && bytes + frames.get(i).length <= CASE_BYTES; i++) {
            out.add(frames.get(i).clone());
            bytes += frames.get(i).length;
        }
        if (out.isEmpty()) {
            out.add(frames.getFirst().clone());
        }
        return out;
    }

    private static List<byte[]> flipped(List<byte[]> frames, Random random) {
        for (int n = 1 + random.nextInt(3); n > 0; n--) {
            byte[] frame = frames.get(random.nextInt(frames.size()));
            frame[random.nextInt(frame.length)] ^= (byte) (1 << random.nextInt(8));
        }
        return frames;
    }

    /** Header or payload fields set to boundary values, payloads cut or grown; the CRC made right again. */
    private static List<byte[]> fieldMutated(List<byte[]> frames, Random random) {
        for (int n = 1 + random.nextInt(3); n > 0; n--) {
            int index = random.nextInt(frames.size());
            byte[] frame = frames.get(index);
            ByteBuffer b = ByteBuffer.wrap(frame);
            switch (random.nextInt(5)) {
                case 0 -> b.putShort(MigrationWire.TYPE_OFFSET, (short) random.nextInt(16));
                case 1 -> frame = resized(frame, random.nextInt(frame.length + 32));
                case 2 -> {
                    if (frame.length > MigrationWire.HEADER_LENGTH + 1) {
                        int at = MigrationWire.HEADER_LENGTH + random.nextInt(frame.length - MigrationWire.HEADER_LENGTH - 1);
                        b.putShort(at, (short) INTERESTING[random.nextInt(INTERESTING.length)]);
                    }
                }
                case 3 -> {
                    if (frame.length >= MigrationWire.HEADER_LENGTH + 4) {
                        b.putInt(MigrationWire.HEADER_LENGTH + random.nextInt(frame.length - MigrationWire.HEADER_LENGTH - 3),
                                (int) INTERESTING[random.nextInt(INTERESTING.length)]);
                    }
                }
                default -> {
                    if (frame.length >= MigrationWire.HEADER_LENGTH + 8) {
                        b.putLong(MigrationWire.HEADER_LENGTH + random.nextInt(frame.length - MigrationWire.HEADER_LENGTH - 7),
                                INTERESTING[random.nextInt(INTERESTING.length)]);
                    }
                }
            }
            frames.set(index, withCrc(frame));
        }
        return frames;
    }

    /** {@code frame} with its payload cut or zero-extended to {@code payloadLength} and its length field set. */
    private static byte[] resized(byte[] frame, int payloadLength) {
        byte[] out = java.util.Arrays.copyOf(frame, MigrationWire.HEADER_LENGTH + payloadLength);
        ByteBuffer.wrap(out).putInt(MigrationWire.LENGTH_OFFSET, payloadLength);
        return out;
    }

    /** The CRC32C over header bytes 0..11 and the payload, written into the header (docs/migration-protocol.md). */
    private static byte[] withCrc(byte[] frame) {
        CRC32C crc = new CRC32C();
        crc.update(frame, 0, MigrationWire.CRC_OFFSET);
        crc.update(frame, MigrationWire.HEADER_LENGTH, frame.length - MigrationWire.HEADER_LENGTH);
        ByteBuffer.wrap(frame).putInt(MigrationWire.CRC_OFFSET, (int) crc.getValue());
        return frame;
    }

    private static List<byte[]> shuffled(List<byte[]> frames, Random random) {
        for (int n = 1 + random.nextInt(3); n > 0; n--) {
            int a = random.nextInt(frames.size());
            switch (random.nextInt(3)) {
                case 0 -> frames.remove(a);
                case 1 -> frames.add(a, frames.get(a).clone());
                default -> java.util.Collections.swap(frames, a, random.nextInt(frames.size()));
            }
            if (frames.isEmpty()) {
                frames.add(new byte[0]);
            }
        }
        return frames;
    }

    /** A well-formed HELLO asking for what it may not, then the recording's next frames. */
    private static List<byte[]> hostileHello(List<byte[]> frames, Random random) throws Exception {
        byte[] first = frames.getFirst();
        Frame.Hello hello = (Frame.Hello) MigrationWire.decodePayload(MigrationWire.Type.HELLO,
                ByteBuffer.wrap(first, MigrationWire.HEADER_LENGTH, first.length - MigrationWire.HEADER_LENGTH));
        Frame.DiskOffer disk = hello.disks().getFirst();
        int granule = hello.granuleSize();
        List<Frame.DiskOffer> disks = new ArrayList<>(List.of(disk));
        boolean incremental = hello.incremental();
        switch (random.nextInt(4)) {
            case 0 -> granule = (int) INTERESTING[random.nextInt(INTERESTING.length)];
            case 1 -> disks.set(0, new Frame.DiskOffer(disk.id(), INTERESTING[random.nextInt(INTERESTING.length)], disk.format(), disk.base()));
            case 2 -> {
                incremental = true;
                disks.set(0, new Frame.DiskOffer(disk.id(), disk.size(), random.nextBoolean() ? "raw" : "qcow2", Optional.of(new Frame.BaseIdentity(
                        HOSTILE_NAMES.get(random.nextInt(HOSTILE_NAMES.size())), INTERESTING[random.nextInt(INTERESTING.length)], new byte[32]))));
            }
            default -> {
                for (int n = random.nextInt(MigrationWire.MAX_DISKS); n > 0; n--) {
                    disks.add(new Frame.DiskOffer(HOSTILE_NAMES.get(random.nextInt(HOSTILE_NAMES.size())), disk.size(), "raw", Optional.empty()));
                }
            }
        }
        List<byte[]> out = new ArrayList<>();
        out.add(encode(new Frame.Hello(hello.version(), hello.vmName(), granule, hello.copyDisks(), incremental, disks, hello.fingerprint())));
        List<byte[]> rest = prefix(frames, random);
        out.addAll(rest.subList(1, rest.size()));
        return out;
    }

    private static byte[] encode(Frame frame) throws Exception {
        MigrationWireTest.ByteArrayChannel out = new MigrationWireTest.ByteArrayChannel();
        new FrameWriter(out, new RateLimiter(Long.MAX_VALUE / 4)).send(frame);
        return out.bytes();
    }

    private static byte[] join(List<byte[]> frames) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        frames.forEach(out::writeBytes);
        return out.toByteArray();
    }

    /** Every file below {@code root} except under {@code drives}: its size and modification time. */
    private static Map<String, String> snapshot(Path root, Path drives) throws IOException {
        Map<String, String> files = new TreeMap<>();
        try (Stream<Path> walk = Files.walk(root)) {
            for (Path p : walk.filter(p -> !p.startsWith(drives)).toList()) {
                files.put(root.relativize(p).toString(), Files.isRegularFile(p)
                        ? Files.size(p) + "@" + Files.getLastModifiedTime(p).toMillis() : "dir");
            }
        }
        return files;
    }
}
