package ferry.migration.wire;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Optional;

/**
 * The frames of Ferry's migration stream, one record per frame type. Layouts and the session are
 * specified in docs/migration-protocol.md; {@link MigrationWire} encodes and decodes them.
 * Exhaustive switches over this sealed interface break the build when a frame type is added.
 */
public sealed interface Frame {

    MigrationWire.Type type();

    /**
     * Source -> destination, first frame: who we are and what we bring. Without {@code copyDisks}
     * the disks are shared (same path on both hosts) and only RAM moves. {@code fingerprint} (from
     * version 2) is the source VM's configuration, which the destination compares with its own first.
     * {@code migrationId} (from version 3) names this migration across its attempts; {@code resume}, when
     * present, asks the destination to go on from the partial state it kept of that migration.
     */
    record Hello(int version, String vmName, int granuleSize, boolean copyDisks, boolean incremental, List<DiskOffer> disks,
                 VmFingerprint fingerprint, java.util.UUID migrationId, Optional<ResumeClaim> resume) implements Frame {
        /** A fresh start without a migration id (the nil UUID): tests, and peers that never resume. */
        public Hello(int version, String vmName, int granuleSize, boolean copyDisks, boolean incremental, List<DiskOffer> disks,
                     VmFingerprint fingerprint) {
            this(version, vmName, granuleSize, copyDisks, incremental, disks, fingerprint, new java.util.UUID(0, 0), Optional.empty());
        }

        public MigrationWire.Type type() { return MigrationWire.Type.HELLO; }
    }

    /**
     * What a resuming source says of the destination's partial state: the last checkpoint the destination
     * confirmed to it, and per disk a few granules the destination must hold exactly as the source does now
     * (granule index, digest as {@code GranuleDigests} computes it), checked before anything is written.
     */
    record ResumeClaim(long confirmedCheckpoint, List<List<Sample>> samples) { }

    /** One sampled granule of a resume claim. */
    record Sample(long granule, int digest) { }

    /** One disk as the source describes it. {@code base} is set for incremental migration. */
    record DiskOffer(String id, long size, String format, Optional<BaseIdentity> base) { }

    /** The base image an incremental migration builds on: both hosts must hold the same one. */
    record BaseIdentity(String fileName, long size, byte[] sha256) { }

    /**
     * Destination -> source: ready; per disk, whether its image starts out all zero (holes may be skipped);
     * {@code checkpoint}: on a resume, the last checkpoint its journal holds (-1 on a fresh start).
     */
    record Welcome(List<Boolean> freshDisks, long checkpoint) implements Frame {
        /** A fresh start: no journal checkpoint. */
        public Welcome(List<Boolean> freshDisks) {
            this(freshDisks, -1);
        }

        public MigrationWire.Type type() { return MigrationWire.Type.WELCOME; }
    }

    /** Source -> destination: granule data. {@code data} is read from position to limit. */
    record BlockData(int disk, long offset, ByteBuffer data) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.BLOCK_DATA; }
    }

    /** Source -> destination: a range that reads as zeroes. */
    record BlockZero(int disk, long offset, long length) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.BLOCK_ZERO; }
    }

    /** Source -> destination: a copy pass ended (0 = bulk). */
    record PassEnd(int pass, long dirtyBytesLeft) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.PASS_END; }
    }

    /**
     * Source -> destination: every block frame before this one is part of checkpoint {@code number}; the
     * destination makes them durable, records them in its journal and answers CONFIRMED.
     */
    record Checkpoint(long number) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.CHECKPOINT; }
    }

    /** Destination -> source: checkpoint {@code number} (and every one before it) is durable and journaled. */
    record Confirmed(long number) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.CONFIRMED; }
    }

    /** Either direction: bytes of QEMU's own migration stream. */
    record Ram(ByteBuffer data) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.RAM; }
    }

    /** Either direction: the sender's QEMU closed its end of the RAM stream. */
    record RamEof() implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.RAM_EOF; }
    }

    /** Source -> destination: every block is sent; per disk, digests over groups of granule digests. */
    record DisksDone(List<int[]> groupDigests) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.DISKS_DONE; }
    }

    /** Destination -> source: blocks written, flushed, and their digests match. */
    record Verified() implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.VERIFIED; }
    }

    /** Destination -> source: its QEMU received the whole RAM and device state and waits, paused. */
    record DestReady() implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.DEST_READY; }
    }

    /** Source -> destination: run the VM. After sending it, the source never resumes on its own. */
    record Commit() implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.COMMIT; }
    }

    /** Destination -> source: the VM runs on the destination. */
    record Running() implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.RUNNING; }
    }

    /** Either direction: the sender gives up; {@code phase} is where, {@code message} says why. */
    record Error(String phase, String message) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.ERROR; }
    }

    /** Source -> destination: the user cancelled. */
    record Cancel(String reason) implements Frame {
        public MigrationWire.Type type() { return MigrationWire.Type.CANCEL; }
    }
}
