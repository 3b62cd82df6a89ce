package ferry.migration;

import java.util.Objects;
import java.util.regex.Pattern;

/**
 * The tunables {@code migrate_set_parameter} and friends change, with QEMU's names and defaults
 * where QEMU has them. {@code maxBandwidthBytesPerSec} caps the one TCP stream (disks and RAM together).
 *
 * @param maxBandwidthBytesPerSec QEMU's {@code max-bandwidth}; default 128 MiB/s as in QEMU
 * @param downtimeLimitMs QEMU's {@code downtime-limit}; default 300 ms as in QEMU
 * @param granuleSize bytes per dirty-tracking granule (Ferry's {@code granule-size})
 * @param tlsCreds QEMU's {@code tls-creds}: the id of a {@code tls-creds-x509} object; empty: no TLS
 * @param tlsHostname QEMU's {@code tls-hostname}: the name the destination's certificate must carry;
 *     empty: the host of the {@code migrate} URI
 * @param tlsAuthz QEMU's {@code tls-authz}: the id of an {@code authz-simple} or {@code authz-list-file}
 *     object that decides which client certificates a destination accepts; empty: any the CA signed
 * @param retryWindowMs Ferry's {@code retry-window}: how long a source whose link dropped reconnects on its
 *     own, with backoff, before it gives up (the migration then stays resumable with {@code migrate -r}); 0: never
 * @param partialTimeoutMs Ferry's {@code partial-timeout}: how long a destination keeps the partial state of a
 *     failed incoming migration for a resume before it removes it
 */
public record MigrationParameters(long maxBandwidthBytesPerSec, long downtimeLimitMs, int granuleSize,
                                  String tlsCreds, String tlsHostname, String tlsAuthz, long retryWindowMs, long partialTimeoutMs) {
    public static final long DEFAULT_RETRY_WINDOW_MS = 60_000;
    public static final long DEFAULT_PARTIAL_TIMEOUT_MS = 24L * 3600 * 1000;
    public static final long DEFAULT_MAX_BANDWIDTH = 128L << 20;
    public static final long DEFAULT_DOWNTIME_LIMIT_MS = 300;
    public static final int DEFAULT_GRANULE_SIZE = 4 << 10;   // the guest's write size: no amplification (DESIGN.md)
    /** QEMU's {@code id_wellformed}: the ids of {@code -object}s. */
    public static final Pattern OBJECT_ID = Pattern.compile("[A-Za-z][A-Za-z0-9_.-]*");

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
        Objects.requireNonNull(tlsCreds, "tlsCreds");
        Objects.requireNonNull(tlsHostname, "tlsHostname");
        Objects.requireNonNull(tlsAuthz, "tlsAuthz");
        if (!tlsCreds.isEmpty() && !OBJECT_ID.matcher(tlsCreds).matches()) {
            throw new IllegalArgumentException("tls-creds must be an object id: '" + tlsCreds + "'");
        }
        if (!tlsAuthz.isEmpty() && !OBJECT_ID.matcher(tlsAuthz).matches()) {
            throw new IllegalArgumentException("tls-authz must be an object id: '" + tlsAuthz + "'");
        }
        if (retryWindowMs < 0 || retryWindowMs > 7L * 24 * 3600 * 1000) {
            throw new IllegalArgumentException("retry-window must be 0..604800000 ms (a week): " + retryWindowMs);
        }
        if (partialTimeoutMs < 0 || partialTimeoutMs > 30L * 24 * 3600 * 1000) {
            throw new IllegalArgumentException("partial-timeout must be 0..2592000000 ms (30 days): " + partialTimeoutMs);
        }
    }

    /** With the TLS parameters and Ferry's resume defaults. */
    public MigrationParameters(long maxBandwidthBytesPerSec, long downtimeLimitMs, int granuleSize,
                               String tlsCreds, String tlsHostname, String tlsAuthz) {
        this(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, tlsCreds, tlsHostname, tlsAuthz, DEFAULT_RETRY_WINDOW_MS,
                DEFAULT_PARTIAL_TIMEOUT_MS);
    }

    /** Without TLS. */
    public MigrationParameters(long maxBandwidthBytesPerSec, long downtimeLimitMs, int granuleSize) {
        this(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, "", "", "");
    }

    public MigrationParameters withMaxBandwidth(long bytesPerSec) {
        return new MigrationParameters(bytesPerSec, downtimeLimitMs, granuleSize, tlsCreds, tlsHostname, tlsAuthz, retryWindowMs, partialTimeoutMs);
    }

    public MigrationParameters withDowntimeLimitMs(long ms) {
        return new MigrationParameters(maxBandwidthBytesPerSec, ms, granuleSize, tlsCreds, tlsHostname, tlsAuthz, retryWindowMs, partialTimeoutMs);
    }

    public MigrationParameters withGranuleSize(int bytes) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, bytes, tlsCreds, tlsHostname, tlsAuthz, retryWindowMs, partialTimeoutMs);
    }

    public MigrationParameters withTlsCreds(String id) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, id, tlsHostname, tlsAuthz, retryWindowMs, partialTimeoutMs);
    }

    public MigrationParameters withTlsHostname(String name) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, tlsCreds, name, tlsAuthz, retryWindowMs, partialTimeoutMs);
    }

    public MigrationParameters withTlsAuthz(String id) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, tlsCreds, tlsHostname, id, retryWindowMs, partialTimeoutMs);
    }

    public MigrationParameters withRetryWindowMs(long ms) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, tlsCreds, tlsHostname, tlsAuthz, ms,
                partialTimeoutMs);
    }

    public MigrationParameters withPartialTimeoutMs(long ms) {
        return new MigrationParameters(maxBandwidthBytesPerSec, downtimeLimitMs, granuleSize, tlsCreds, tlsHostname, tlsAuthz,
                retryWindowMs, ms);
    }
}
