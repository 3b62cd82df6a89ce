/*
 * ferry-disk: the demo guest's disk workload. Writes self-checking 4 KiB records at random
 * 4 KiB-aligned offsets of a block device, or verifies every block of it, or measures the disk's
 * throughput (bench/steady-state.sh).
 *
 * The record layout is specified in guest/README.md; ferry.vm.guest.RecordVerifier implements
 * the same checks on the host. Keep the three in step.
 *
 *   ferry-disk write DEVICE [rate=BYTES/s|max] [seconds=N] [count=N]
 *   ferry-disk verify DEVICE
 *   ferry-disk randwrite|randread|seqwrite DEVICE [seconds=N]
 *
 * Output lines start with "ferry-guest: " so that the host can find them on the serial console.
 * Built with: gcc -static -O2 -o ferry-disk ferry-disk.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

/* Record layout, little-endian (guest/README.md). */
#define RECORD_SIZE      4096
#define OFF_MAGIC        0    /* u64 "FERRYREC" as bytes */
#define OFF_VERSION      8    /* u32 = 1 */
#define OFF_RECORD_SIZE  12   /* u32 = 4096 */
#define OFF_SEQ          16   /* u64, first record is 1 */
#define OFF_OFFSET       24   /* u64, byte offset of this record on the disk */
#define OFF_BOOT_ID      32   /* u64, random per run */
#define OFF_TIME_NS      40   /* u64, CLOCK_REALTIME when written */
#define OFF_PAYLOAD      48   /* pattern bytes up to OFF_CRC */
#define OFF_CRC          4092 /* u32 CRC32C (Castagnoli) over bytes [0, 4092) */
#define RECORD_VERSION   1
static const char MAGIC[8] = {'F', 'E', 'R', 'R', 'Y', 'R', 'E', 'C'};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { (void) sig; stop_requested = 1; }

static uint32_t crc_table[256];

static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32c(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char) (v >> (8 * i)); }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char) (v >> (8 * i)); }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ferry-guest: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static int fail(const char *what, const char *dev) {
    say("error %s: device=%s: %s", what, dev, strerror(errno));
    return 2;
}

/* Parses "2M", "512k", "1048576" or "max" (0 = unlimited). Returns -1 on bad input. */
static int64_t parse_size(const char *s) {
    if (strcmp(s, "max") == 0) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    if (*end == 'k' || *end == 'K') { v *= 1024; end++; }
    else if (*end == 'M' || *end == 'm') { v *= 1024 * 1024; end++; }
    else if (*end == 'G' || *end == 'g') { v *= 1024ull * 1024 * 1024; end++; }
    if (*end != '\0') return -1;
    return (int64_t) v;
}

static uint64_t device_size(int fd) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) == 0) return size;
    struct stat st;
    if (fstat(fd, &st) == 0) return (uint64_t) st.st_size;
    return 0;
}

static uint64_t random_seed(void) {
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof seed) != sizeof seed) seed = 0;
        close(fd);
    }
    seed ^= realtime_ns();
    return seed ? seed : 0x9E3779B97F4A7C15ull;
}

static void fill_record(unsigned char *r, uint64_t seq, uint64_t offset, uint64_t boot_id) {
    memcpy(r + OFF_MAGIC, MAGIC, 8);
    put32(r + OFF_VERSION, RECORD_VERSION);
    put32(r + OFF_RECORD_SIZE, RECORD_SIZE);
    put64(r + OFF_SEQ, seq);
    put64(r + OFF_OFFSET, offset);
    put64(r + OFF_BOOT_ID, boot_id);
    put64(r + OFF_TIME_NS, realtime_ns());
    uint64_t s = seq ^ boot_id ^ 0xA5A5A5A5A5A5A5A5ull;
    if (s == 0) s = 1;
    for (int i = OFF_PAYLOAD; i + 8 <= OFF_CRC; i += 8) put64(r + i, xorshift64(&s));
    put32(r + OFF_CRC, crc32c(r, OFF_CRC));
}

static int do_write(const char *dev, int argc, char **argv) {
    int64_t rate = 0, seconds = 0, count = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int64_t *dst = NULL;
        const char *v = NULL;
        if (strncmp(a, "rate=", 5) == 0) { dst = &rate; v = a + 5; }
        else if (strncmp(a, "seconds=", 8) == 0) { dst = &seconds; v = a + 8; }
        else if (strncmp(a, "count=", 6) == 0) { dst = &count; v = a + 6; }
        if (!dst || (*dst = parse_size(v)) < 0) {
            say("error bad write option: option=%s (expected rate=N[k|M]|max, seconds=N, count=N)", a);
            return 2;
        }
    }
    int fd = open(dev, O_WRONLY | O_DIRECT | O_DSYNC);
    if (fd < 0) return fail("open for write failed", dev);
    uint64_t size = device_size(fd);
    uint64_t blocks = size / RECORD_SIZE;
    if (blocks == 0) { say("error device too small: device=%s size=%" PRIu64, dev, size); return 2; }
    unsigned char *rec;
    if (posix_memalign((void **) &rec, RECORD_SIZE, RECORD_SIZE) != 0) { say("error out of memory"); return 2; }

    uint64_t boot_id = random_seed();
    uint64_t rng = boot_id ^ 0x5DEECE66Dull;
    say("phase=write-start device=%s size=%" PRIu64 " rate=%" PRId64 " seconds=%" PRId64 " count=%" PRId64
        " boot-id=%016" PRIx64, dev, size, rate, seconds, count, boot_id);

    double start = now_s(), next_beat = start + 1.0;
    uint64_t seq = 0;
    while (!stop_requested) {
        double now = now_s();
        if (seconds > 0 && now - start >= (double) seconds) break;
        if (count > 0 && seq >= (uint64_t) count) break;
        if (now >= next_beat) {
            say("heartbeat seq=%" PRIu64 " bytes=%" PRIu64, seq, seq * RECORD_SIZE);
            next_beat += 1.0;
        }
        if (rate > 0) {
            double due = start + (double) seq * RECORD_SIZE / (double) rate;
            if (due > now) {
                double wait = due - now;
                if (wait > 0.1) wait = 0.1; /* stay responsive to heartbeats and limits */
                struct timespec ts = {(time_t) wait, (long) ((wait - (time_t) wait) * 1e9)};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        uint64_t offset = (xorshift64(&rng) % blocks) * RECORD_SIZE;
        fill_record(rec, seq + 1, offset, boot_id);
        ssize_t n = pwrite(fd, rec, RECORD_SIZE, (off_t) offset);
        if (n != RECORD_SIZE) {
            if (n < 0 && errno == EINTR) continue;
            say("error write failed: device=%s offset=%" PRIu64 " seq=%" PRIu64 ": %s", dev, offset, seq + 1,
                n < 0 ? strerror(errno) : "short write");
            return 2;
        }
        seq++;
    }
    if (fdatasync(fd) != 0) return fail("fdatasync failed", dev);
    close(fd);
    say("phase=write-done seq=%" PRIu64 " bytes=%" PRIu64 " seconds=%.1f reason=%s", seq, seq * RECORD_SIZE,
        now_s() - start, stop_requested ? "signal" : "limit");
    return 0;
}

/*
 * Throughput workloads. One request at a time (queue depth 1), O_DIRECT so that the guest's page
 * cache neither absorbs writes nor answers reads: every request reaches the virtio disk.
 *   randwrite  4 KiB writes at random 4 KiB-aligned offsets over the whole device
 *   randread   4 KiB reads, likewise (the host fills the disk first, so no read is of a hole)
 *   seqwrite   1 MiB writes from offset 0 upwards, wrapping at the end of the device
 * The writers end with fdatasync, inside the timed interval: the data is durable when the figure
 * is printed, whoever carries it to the file. The payload is a fixed xorshift pattern (not zeros,
 * so that no layer can take a write for a zero write), with the request number in its first 8
 * bytes. Result, one line: bench mode=M bytes=B ops=N seconds=S mib_per_s=X iops=Y
 */
#define BENCH_RANDOM_LENGTH      4096
#define BENCH_SEQUENTIAL_LENGTH  (1 << 20)

enum bench_mode { BENCH_RANDWRITE, BENCH_RANDREAD, BENCH_SEQWRITE };

static int do_bench(enum bench_mode mode, const char *name, const char *dev, int argc, char **argv) {
    int64_t seconds = 10;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "seconds=", 8) != 0 || (seconds = parse_size(argv[i] + 8)) <= 0) {
            say("error bad %s option: option=%s (expected seconds=N, N > 0)", name, argv[i]);
            return 2;
        }
    }
    const size_t length = mode == BENCH_SEQWRITE ? BENCH_SEQUENTIAL_LENGTH : BENCH_RANDOM_LENGTH;
    const int writes = mode != BENCH_RANDREAD;
    int fd = open(dev, (writes ? O_WRONLY : O_RDONLY) | O_DIRECT);
    if (fd < 0) return fail("open for bench failed", dev);
    uint64_t size = device_size(fd);
    uint64_t slots = size / length;   /* request-sized, request-aligned places on the device */
    if (slots == 0) { say("error device too small: device=%s size=%" PRIu64, dev, size); return 2; }
    unsigned char *buf;
    if (posix_memalign((void **) &buf, RECORD_SIZE, length) != 0) { say("error out of memory"); return 2; }
    uint64_t rng = random_seed();
    for (size_t i = 0; i + 8 <= length; i += 8) put64(buf + i, xorshift64(&rng));
    say("phase=bench-start mode=%s device=%s size=%" PRIu64 " length=%zu seconds=%" PRId64, name, dev, size, length,
        seconds);

    double start = now_s(), deadline = start + (double) seconds;
    uint64_t ops = 0;
    while (!stop_requested && now_s() < deadline) {
        uint64_t offset = (mode == BENCH_SEQWRITE ? ops % slots : xorshift64(&rng) % slots) * length;
        ssize_t n;
        if (writes) {
            put64(buf, ops);
            n = pwrite(fd, buf, length, (off_t) offset);
        } else {
            n = pread(fd, buf, length, (off_t) offset);
        }
        if (n != (ssize_t) length) {
            if (n < 0 && errno == EINTR) continue;
            say("error %s failed: device=%s offset=%" PRIu64 " length=%zu: %s", name, dev, offset, length,
                n < 0 ? strerror(errno) : "short transfer");
            return 2;
        }
        ops++;
    }
    if (writes && fdatasync(fd) != 0) return fail("fdatasync failed", dev);
    double elapsed = now_s() - start;
    close(fd);
    uint64_t bytes = ops * length;
    say("bench mode=%s bytes=%" PRIu64 " ops=%" PRIu64 " seconds=%.3f mib_per_s=%.2f iops=%.1f", name, bytes, ops,
        elapsed, (double) bytes / elapsed / (1024.0 * 1024.0), (double) ops / elapsed);
    return 0;
}

/* Returns NULL when the block is a valid record at `offset`, else the reason. Zero blocks are reported separately. */
static const char *check_record(const unsigned char *r, uint64_t offset) {
    if (memcmp(r + OFF_MAGIC, MAGIC, 8) != 0) return "bad-magic";
    if (get32(r + OFF_VERSION) != RECORD_VERSION) return "bad-version";
    if (get32(r + OFF_RECORD_SIZE) != RECORD_SIZE) return "bad-record-size";
    if (get32(r + OFF_CRC) != crc32c(r, OFF_CRC)) return "bad-checksum";
    if (get64(r + OFF_OFFSET) != offset) return "wrong-offset";
    if (get64(r + OFF_SEQ) == 0) return "zero-seq";
    return NULL;
}

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) if (p[i]) return 0;
    return 1;
}

static int do_verify(const char *dev) {
    int fd = open(dev, O_RDONLY | O_DIRECT);
    if (fd < 0) return fail("open for verify failed", dev);
    uint64_t size = device_size(fd);
    const size_t chunk = 1 << 20;
    unsigned char *buf;
    if (posix_memalign((void **) &buf, RECORD_SIZE, chunk) != 0) { say("error out of memory"); return 2; }
    say("phase=verify-start device=%s size=%" PRIu64, dev, size);
    uint64_t records = 0, highest = 0, bad = 0;
    for (uint64_t pos = 0; pos + RECORD_SIZE <= size;) {
        size_t want = size - pos < chunk ? (size_t) (size - pos) / RECORD_SIZE * RECORD_SIZE : chunk;
        ssize_t n = pread(fd, buf, want, (off_t) pos);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return fail("read failed", dev);
        for (ssize_t b = 0; b + RECORD_SIZE <= n; b += RECORD_SIZE) {
            const unsigned char *r = buf + b;
            uint64_t offset = pos + (uint64_t) b;
            if (all_zero(r, RECORD_SIZE)) continue;
            const char *why = check_record(r, offset);
            if (why) {
                if (bad < 10) say("verify bad-block offset=%" PRIu64 " reason=%s", offset, why);
                bad++;
                continue;
            }
            records++;
            uint64_t seq = get64(r + OFF_SEQ);
            if (seq > highest) highest = seq;
        }
        pos += (uint64_t) n / RECORD_SIZE * RECORD_SIZE;
    }
    close(fd);
    say("verify records=%" PRIu64 " highest-seq=%" PRIu64 " bad=%" PRIu64, records, highest, bad);
    say(bad == 0 ? "verify ok" : "verify FAILED");
    return bad == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    crc32c_init();
    if (argc < 3) {
        fprintf(stderr, "usage: ferry-disk write DEVICE [rate=N[k|M]|max] [seconds=N] [count=N]\n"
                        "       ferry-disk verify DEVICE\n"
                        "       ferry-disk randwrite|randread|seqwrite DEVICE [seconds=N]\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (strcmp(argv[1], "write") == 0) return do_write(argv[2], argc - 3, argv + 3);
    if (strcmp(argv[1], "verify") == 0) return do_verify(argv[2]);
    if (strcmp(argv[1], "randwrite") == 0) return do_bench(BENCH_RANDWRITE, argv[1], argv[2], argc - 3, argv + 3);
    if (strcmp(argv[1], "randread") == 0) return do_bench(BENCH_RANDREAD, argv[1], argv[2], argc - 3, argv + 3);
    if (strcmp(argv[1], "seqwrite") == 0) return do_bench(BENCH_SEQWRITE, argv[1], argv[2], argc - 3, argv + 3);
    say("error unknown mode: mode=%s (expected write, verify, randwrite, randread or seqwrite)", argv[1]);
    return 2;
}
