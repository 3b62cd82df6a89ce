package ferry.cli;

import ferry.image.raw.RawImage;
import ferry.vm.guest.RecordVerifier;
import ferry.vm.guest.VerifyReport;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * {@code ferry demo}: the seed's workflow on two "hosts" on this machine. A demo guest writes
 * self-checking records to its 256 MiB disk on the source; the destination waits with
 * {@code -incoming}; the source's monitor gets {@code migrate -d -b tcp://127.0.0.1:PORT} and
 * {@code info migrate} until done; the guest goes on writing on the destination; then every record
 * on the destination disk is verified. Ends with total time, downtime, disk and RAM bytes.
 */
final class DemoCommand {
    private static final long DISK_SIZE = 256L << 20;
    private static final int GUEST_SECONDS = 45;

    private DemoCommand() {}

    static final String HELP = """
            usage: ferry demo [--keep]
            Builds the demo guest (once), starts two local hosts with ferry run, lets the guest write to its disk,
            migrates it with its disk (migrate -d -b) and verifies the guest's records on the destination.
            --keep: leave the work directory (images, logs) behind.
            """;

    static int run(List<String> args) {
        if (args.contains("--help") || args.contains("-h")) {
            System.out.print(HELP);
            return 0;
        }
        boolean keep = args.contains("--keep");
        for (String arg : args) {
            if (!arg.equals("--keep")) {
                System.err.println("ferry demo: unknown option " + arg + " (usage: ferry demo [--keep])");
                return 2;
            }
        }
        try {
            return new DemoCommand().demo(keep);
        } catch (IOException e) {
            System.err.println("\nferry demo: FAILED: " + e.getMessage());
            return 1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            System.err.println("\nferry demo: interrupted");
            return 1;
        }
    }

    private int demo(boolean keep) throws IOException, InterruptedException {
        Path home = Path.of(System.getenv().getOrDefault("FERRY_HOME", ".")).toAbsolutePath();
        Path guest = buildGuest(home);
        Path work = Files.createTempDirectory("ferry-demo-");
        say("work directory " + work + (keep ? " (kept)" : ""));
        Path sourceDisk = work.resolve("source/disk.raw");
        Files.createDirectories(sourceDisk.getParent());
        RawImage.create(sourceDisk, DISK_SIZE).close();
        int port = freePort();
        String append = "console=ttyS0 quiet ferry.workload=write,rate=2M,seconds=" + GUEST_SECONDS;
        List<String> common = List.of("-name", "demo", "-m", "256", "-kernel", guest.resolve("vmlinuz").toString(),
                "-initrd", guest.resolve("initramfs.cpio.gz").toString(), "-append", append);
        long startNs = System.nanoTime();
        boolean ok = false;
        try (LocalHost source = LocalHost.start("source", LocalHost.ferryCommand(), work.resolve("source"),
                    concat(common, "-drive", "file=" + sourceDisk + ",format=raw,if=virtio,id=disk0"));
             LocalHost destination = LocalHost.start("destination", LocalHost.ferryCommand(), work.resolve("destination"),
                    concat(common, "-drive", "file=" + work.resolve("destination/disk.raw") + ",format=raw,if=virtio,id=disk0",
                            "-incoming", "tcp:127.0.0.1:" + port))) {
            say("source host:      ferry run -name demo -m 256 -drive file=" + sourceDisk + ",format=raw,if=virtio ...");
            say("destination host: ferry run ... -incoming tcp:127.0.0.1:" + port + "   (it waits)");
            say("booting the guest on the source (TCG: ~10 s) ...");
            source.awaitSerial("phase=write-start", 120_000);
            String beat = source.awaitSerial("heartbeat seq=", 30_000);
            say("guest writes records to /dev/vda at 2 MB/s: " + beat.substring(beat.indexOf("heartbeat")));
            Thread.sleep(2000);
            String command = "migrate -d -b tcp://127.0.0.1:" + port;
            say("(ferry) " + command);
            String reply = source.monitor(command);
            if (!reply.isBlank()) {
                throw new IOException("the source monitor refused '" + command + "': " + reply);
            }
            InfoMigrateText info = follow(source);
            if (!info.status().equals("completed")) {
                throw new IOException("migration did not complete: " + info.statusLine() + "; " + info.field("ferry error")
                        + " (logs in " + work + ")");
            }
            String status = destination.monitor("info status");
            say("destination: " + status + "; source: " + source.monitor("info status"));
            say("the guest goes on writing on the destination until its " + GUEST_SECONDS + " s are up ...");
            String done = destination.awaitSerial("phase=write-done", (GUEST_SECONDS + 60) * 1000L);
            int code = destination.awaitExit(60_000);
            source.monitor("quit");
            source.awaitExit(30_000);
            long lastSeq = Long.parseLong(done.replaceAll(".*seq=(\\d+).*", "$1"));
            VerifyReport report = RecordVerifier.verify(work.resolve("destination/disk.raw"));
            say(String.format(Locale.ROOT, "destination disk: %d records, highest seq %d (guest wrote %d), bad blocks %d",
                    report.records(), report.highestSeq(), lastSeq, report.badBlocks()));
            if (!report.ok() || report.highestSeq() != lastSeq || code != 0) {
                throw new IOException("verification failed: " + report + ", destination ferry exit " + code);
            }
            long totalMs = (System.nanoTime() - startNs) / 1_000_000;
            System.out.printf(Locale.ROOT, "%nferry demo: OK - the guest's records verify on the destination%n"
                            + "  migration total time: %d ms%n  downtime: %d ms%n  disk bytes: %d kbytes (of %d kbytes)%n"
                            + "  RAM bytes: %d kbytes%n  wire bytes: %s%n  demo wall time: %d ms%n",
                    info.number("total time"), info.number("downtime"), info.number("transferred disk"), info.number("total disk"),
                    info.number("transferred ram"), info.field("ferry wire bytes"), totalMs);
            ok = true;
            return 0;
        } finally {
            if (!ok || keep) {
                say("logs and disks kept in " + work);
            } else {
                deleteTree(work);
            }
        }
    }

    /** {@code info migrate} every half second with a one-line live display, until it finishes. */
    private static InfoMigrateText follow(LocalHost source) throws IOException, InterruptedException {
        InfoMigrateText info;
        while (true) {
            info = InfoMigrateText.parse(source.monitor("info migrate"));
            System.out.printf(Locale.ROOT, "\r  %-10s %-14s disk %6d/%d MiB  ram %5d MiB  %6d ms   ", info.status(),
                    info.field("ferry phase"), Math.max(0, info.number("transferred disk")) >> 10,
                    Math.max(0, info.number("total disk")) >> 10, Math.max(0, info.number("transferred ram")) >> 10,
                    info.number("total time"));
            System.out.flush();
            String status = info.status();
            if (status.equals("completed") || status.equals("failed") || status.equals("cancelled")) {
                System.out.println();
                say("(ferry) info migrate\n" + source.monitor("info migrate").indent(4));
                return info;
            }
            Thread.sleep(500);
        }
    }

    private static Path buildGuest(Path home) throws IOException, InterruptedException {
        Path script = home.resolve("guest/build.sh");
        if (!Files.isExecutable(script)) {
            throw new IOException("guest/build.sh not found under FERRY_HOME=" + home + " (run bin/ferry from the repository)");
        }
        say("building the demo guest (guest/build.sh: Debian kernel + busybox initramfs) ...");
        Process build = new ProcessBuilder(script.toString()).redirectErrorStream(true).start();
        String output = new String(build.getInputStream().readAllBytes());
        if (build.waitFor() != 0) {
            throw new IOException("guest/build.sh failed:\n" + output);
        }
        return home.resolve("guest/out");
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket()) {
            socket.bind(new InetSocketAddress("127.0.0.1", 4444));
            return 4444;
        } catch (IOException busy) {
            try (ServerSocket socket = new ServerSocket(0)) {
                return socket.getLocalPort();
            }
        }
    }

    private static List<String> concat(List<String> head, String... tail) {
        List<String> all = new java.util.ArrayList<>(head);
        all.addAll(List.of(tail));
        return all;
    }

    private static void deleteTree(Path dir) throws IOException {
        try (var walk = Files.walk(dir)) {
            for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    private static void say(String line) {
        System.out.println("ferry demo: " + line);
    }
}
