package ferry.migration;

/**
 * The tunables {@code migrate_set_parameter} and friends change, with QEMU's names and defaults
 * where QEMU has them. {@code maxBandwidthBytesPerSec} caps the one TCP stream (disks and RAM together).
 *
 * @param maxBandwidthBytesPerSec QEMU's {@code max-bandwidth}; default 128 MiB/s as in QEMU
 * @param downtimeLimitMs QEMU's {@code downtime-limit}; default 300 ms as in QEMU
 * @param granuleSize bytes per dirty-tracking granule (Ferry's {@code granule-size})
 */
public record MigrationParameters(long maxBandwidthBytesPerSec, long downtimeLimitMs, int granuleSize) {
    public static final long DEFAULT_MAX_BANDWIDTH = 128L << 20;
    public static final long DEFAULT_DOWNTIME_LIMIT_MS = 300;
    public static final int DEFAULT_GRANULE_SIZE = 4 << 10;   // the guest's write size: no amplification (DESIGN.md)

    public static MigrationParameters defaults() {
        return new MigrationParameters(DEFAULT_MAX_BANDWIDTH, DEFAULT_DOWNTIME_LIMIT_MS, DEFAULT_GRANULE_SIZE);
    }

    public MigrationParameters {
        if (maxBandwidthBytesPerSec <= 0) {
            throw new IllegalArgumentException("max-bandwidth must be positive: " + maxBandwidthBytesPerSec);
        }
        if (downtimeLimitMs < 0 || downtimeLimitMs > 2_000_000) {
            throw new IllegalArgumentException("downtime-limit must be 0..2000000 ms: " + downtimeLimitMs);
        }
        if (granuleSize < 4096 || granuleSize > (16 << 20) || Integer.bitCount(granuleSize) != 1) {
            throw new IllegalArgumentException("granule-size must be a power of two from 4 KiB to 16 MiB: " + granuleSize);
        }
    }

    public MigrationParameters withMaxBandwidth(long bytesPerSec) {
        return new MigrationParameters(bytesPerSec, downtimeLimitMs, granuleSize);
    }

    public MigrationParameters withDowntimeLimitMs(long ms) {
        return new MigrationParameters(maxBandwidthBytesPerSec, ms, granuleSize);
    }

    public MigrationParameters withGranuleSize(int bytes) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, bytes);
    }
}
