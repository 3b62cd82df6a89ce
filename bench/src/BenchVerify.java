import ferry.vm.guest.GuestRecord;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

/**
 * Verifies a migrated disk for bench/migration.py: every 4 KiB block of DISK is either a valid guest
 * record (GuestRecord, guest/README.md) or equal to the same block of BASE (the image the run started
 * from, with its random fill). Prints one line: {@code records=N highest-seq=N bad=N first-bad=OFFSET:REASON}.
 * Exit 0 when bad is 0 and, if EXPECTED_SEQ is given, highest-seq equals it; 1 otherwise; 2 on bad usage.
 */
public final class BenchVerify {
    private static final int CHUNK = 1 << 20;

    public static void main(String[] args) throws IOException {
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: BenchVerify DISK BASE [EXPECTED_SEQ]");
            System.exit(2);
        }
        long expected = args.length == 3 ? Long.parseLong(args[2]) : -1;
        long records = 0, highest = 0, bad = 0;
        String firstBad = "none";
        try (FileChannel disk = FileChannel.open(Path.of(args[0]), StandardOpenOption.READ);
             FileChannel base = FileChannel.open(Path.of(args[1]), StandardOpenOption.READ)) {
            if (disk.size() != base.size()) {
                System.out.println("bad size: disk=" + disk.size() + " base=" + base.size());
                System.exit(1);
            }
            ByteBuffer d = ByteBuffer.allocateDirect(CHUNK), b = ByteBuffer.allocateDirect(CHUNK);
            byte[] db = new byte[GuestRecord.SIZE], bb = new byte[GuestRecord.SIZE];
            for (long pos = 0; pos < disk.size(); pos += CHUNK) {
                read(disk, d, pos);
                read(base, b, pos);
                for (int off = 0; off < CHUNK && pos + off < disk.size(); off += GuestRecord.SIZE) {
                    d.position(off);
                    switch (GuestRecord.check(d, pos + off)) {
                        case GuestRecord.Block.Valid v -> {
                            records++;
                            highest = Math.max(highest, v.seq());
                        }
                        case GuestRecord.Block.Zero z -> {
                            if (!baseEquals(d, b, off, db, bb)) {
                                bad++;
                                if (firstBad.equals("none")) firstBad = (pos + off) + ":zeroed";
                            }
                        }
                        case GuestRecord.Block.Bad x -> {
                            if (!baseEquals(d, b, off, db, bb)) {
                                bad++;
                                if (firstBad.equals("none")) firstBad = (pos + off) + ":" + x.reason();
                            }
                        }
                    }
                }
            }
        }
        System.out.println("records=" + records + " highest-seq=" + highest + " bad=" + bad + " first-bad=" + firstBad);
        System.exit(bad == 0 && (expected < 0 || highest == expected) ? 0 : 1);
    }

    private static boolean baseEquals(ByteBuffer d, ByteBuffer b, int off, byte[] db, byte[] bb) {
        d.get(off, db);
        b.get(off, bb);
        return Arrays.equals(db, bb);
    }

    private static void read(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        buf.clear();
        while (buf.hasRemaining()) {
            if (ch.read(buf, pos + buf.position()) < 0) {
                while (buf.hasRemaining()) buf.put((byte) 0);
            }
        }
        buf.flip();
    }
}
