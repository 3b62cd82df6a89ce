package ferry.qmp;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * A drive's I/O limits: every throttle member of QEMU 7.2's {@code BlockDeviceInfo} (what {@code query-block}
 * reports under {@code inserted}) and of {@code BlockIOThrottle} (what {@code block_set_io_throttle} takes),
 * which are the same members. Read one with {@link QmpCommand.QueryBlock}, keep it, set a tighter one with
 * {@link #withWriteLimit}, and later send the kept one back: {@code query-block} then reports exactly what it
 * reported before.
 *
 * <p>Design notes, as QEMU 7.2 behaves (checked by QmpClientIT and by hand):
 * <ul>
 * <li>0 means "no limit". Six averages are always present. A burst ({@code *_max}) is reported only when it
 *     is not 0, and its length ({@code *_max_length}, seconds, default 1) exactly when its burst is;
 *     {@code iops_size} only when not 0; {@code group} whenever the drive is throttled at all. Sending the
 *     same presence back therefore restores the same state; all zeros switch throttling off and leave the
 *     group.</li>
 * <li>QEMU refuses a total limit together with a per-direction one ("bps(iops) and bps(iops)_rd/_wr cannot
 *     be used at the same time"), a burst below its average, a burst without its average, a length without
 *     its burst, and {@code iops_size} without an iops limit.</li>
 * <li>Drives in one {@code group} share one configuration: setting it on one drive changes it for all.</li>
 * </ul>
 *
 * @param bps total bytes per second; {@code bpsRd}, {@code bpsWr} per direction; {@code iops*} alike in requests
 * @param bpsMaxLengthSeconds and the other {@code *MaxLengthSeconds}: how long the burst may last, in seconds
 * @param iopsSize bytes that count as one request for the iops limits
 * @param group the throttle group's name; QEMU names it after the drive when none is given
 */
public record IoThrottle(long bps, long bpsRd, long bpsWr, long iops, long iopsRd, long iopsWr,
                         OptionalLong bpsMax, OptionalLong bpsRdMax, OptionalLong bpsWrMax,
                         OptionalLong iopsMax, OptionalLong iopsRdMax, OptionalLong iopsWrMax,
                         OptionalLong bpsMaxLengthSeconds, OptionalLong bpsRdMaxLengthSeconds,
                         OptionalLong bpsWrMaxLengthSeconds, OptionalLong iopsMaxLengthSeconds,
                         OptionalLong iopsRdMaxLengthSeconds, OptionalLong iopsWrMaxLengthSeconds,
                         OptionalLong iopsSize, Optional<String> group) {

    /** No limits: what {@code query-block} reports for a drive that was never throttled. */
    public static final IoThrottle NONE = new IoThrottle(0, 0, 0, 0, 0, 0,
            OptionalLong.empty(), OptionalLong.empty(), OptionalLong.empty(),
            OptionalLong.empty(), OptionalLong.empty(), OptionalLong.empty(),
            OptionalLong.empty(), OptionalLong.empty(), OptionalLong.empty(),
            OptionalLong.empty(), OptionalLong.empty(), OptionalLong.empty(),
            OptionalLong.empty(), Optional.empty());

    /** QAPI member names, in the schema's order; {@link #values} gives the numbers in the same order. */
    private static final String[] AVERAGES = {"bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"};
    private static final String[] OPTIONALS = {"bps_max", "bps_rd_max", "bps_wr_max", "iops_max", "iops_rd_max",
        "iops_wr_max", "bps_max_length", "bps_rd_max_length", "bps_wr_max_length", "iops_max_length",
        "iops_rd_max_length", "iops_wr_max_length", "iops_size"};

    public IoThrottle {
        Objects.requireNonNull(bpsMax, "bpsMax");
        Objects.requireNonNull(bpsRdMax, "bpsRdMax");
        Objects.requireNonNull(bpsWrMax, "bpsWrMax");
        Objects.requireNonNull(iopsMax, "iopsMax");
        Objects.requireNonNull(iopsRdMax, "iopsRdMax");
        Objects.requireNonNull(iopsWrMax, "iopsWrMax");
        Objects.requireNonNull(bpsMaxLengthSeconds, "bpsMaxLengthSeconds");
        Objects.requireNonNull(bpsRdMaxLengthSeconds, "bpsRdMaxLengthSeconds");
        Objects.requireNonNull(bpsWrMaxLengthSeconds, "bpsWrMaxLengthSeconds");
        Objects.requireNonNull(iopsMaxLengthSeconds, "iopsMaxLengthSeconds");
        Objects.requireNonNull(iopsRdMaxLengthSeconds, "iopsRdMaxLengthSeconds");
        Objects.requireNonNull(iopsWrMaxLengthSeconds, "iopsWrMaxLengthSeconds");
        Objects.requireNonNull(iopsSize, "iopsSize");
        Objects.requireNonNull(group, "group");
    }

    /** True when any average is set, i.e. QEMU throttles the drive. */
    public boolean limited() {
        return bps != 0 || bpsRd != 0 || bpsWr != 0 || iops != 0 || iopsRd != 0 || iopsWr != 0;
    }

    /**
     * These limits with guest writes held to at most {@code bytesPerSecond}, every other limit kept.
     * A write limit already lower stays. A total {@code bps} limit T (which QEMU does not allow beside a
     * write limit) becomes a read limit T, with its burst, and a write limit of at most T. The write burst is
     * dropped, as it would let writes run above the limit for its length.
     */
    public IoThrottle withWriteLimit(long bytesPerSecond) {
        if (bytesPerSecond <= 0) {
            throw new IllegalArgumentException("write limit must be positive: bytesPerSecond=" + bytesPerSecond);
        }
        long rd = bpsRd;
        OptionalLong rdMax = bpsRdMax;
        OptionalLong rdMaxLength = bpsRdMaxLengthSeconds;
        long wr = bpsWr == 0 ? bytesPerSecond : Math.min(bpsWr, bytesPerSecond);
        if (bps != 0) {
            rd = bps;
            rdMax = bpsMax;
            rdMaxLength = bpsMaxLengthSeconds;
            wr = Math.min(bps, bytesPerSecond);
        }
        return new IoThrottle(0, rd, wr, iops, iopsRd, iopsWr,
                OptionalLong.empty(), rdMax, OptionalLong.empty(), iopsMax, iopsRdMax, iopsWrMax,
                OptionalLong.empty(), rdMaxLength, OptionalLong.empty(),
                iopsMaxLengthSeconds, iopsRdMaxLengthSeconds, iopsWrMaxLengthSeconds, iopsSize, group);
    }

    /** Decodes the throttle members of a QAPI {@code BlockDeviceInfo} (query-block's {@code inserted}). */
    static IoThrottle decode(Json.Obj info) throws JsonException {
        long[] avg = new long[AVERAGES.length];
        for (int i = 0; i < avg.length; i++) {
            avg[i] = info.number(AVERAGES[i]);
        }
        OptionalLong[] opt = new OptionalLong[OPTIONALS.length];
        for (int i = 0; i < opt.length; i++) {
            opt[i] = info.optionalNumber(OPTIONALS[i]);
        }
        return new IoThrottle(avg[0], avg[1], avg[2], avg[3], avg[4], avg[5],
                opt[0], opt[1], opt[2], opt[3], opt[4], opt[5],
                opt[6], opt[7], opt[8], opt[9], opt[10], opt[11], opt[12], info.optionalString("group"));
    }

    /** Adds the members of a QAPI {@code BlockIOThrottle} to {@code out}: the six averages, then those present. */
    void encodeInto(Map<String, Json> out) {
        long[] avg = {bps, bpsRd, bpsWr, iops, iopsRd, iopsWr};
        for (int i = 0; i < avg.length; i++) {
            out.put(AVERAGES[i], Json.of(avg[i]));
        }
        OptionalLong[] opt = {bpsMax, bpsRdMax, bpsWrMax, iopsMax, iopsRdMax, iopsWrMax,
            bpsMaxLengthSeconds, bpsRdMaxLengthSeconds, bpsWrMaxLengthSeconds,
            iopsMaxLengthSeconds, iopsRdMaxLengthSeconds, iopsWrMaxLengthSeconds, iopsSize};
        for (int i = 0; i < opt.length; i++) {
            if (opt[i].isPresent()) {
                out.put(OPTIONALS[i], Json.of(opt[i].getAsLong()));
            }
        }
        group.ifPresent(g -> out.put("group", Json.of(g)));
    }

    /** The members as {@link #encodeInto} writes them. */
    Json.Obj encode() {
        Map<String, Json> out = new LinkedHashMap<>();
        encodeInto(out);
        return new Json.Obj(out);
    }
}
