package ferry.qmp;

import java.util.OptionalLong;

/**
 * The reply of {@code query-memory-size-summary} (QAPI {@code MemoryInfo}).
 *
 * @param baseMemoryBytes the guest's boot memory ({@code -m}), in bytes
 * @param pluggedMemoryBytes memory hot-plugged since, in bytes; absent when the machine cannot hot-plug
 */
public record MemorySizeSummary(long baseMemoryBytes, OptionalLong pluggedMemoryBytes) {
    static MemorySizeSummary decode(Json.Obj ret) throws JsonException {
        return new MemorySizeSummary(ret.number("base-memory"), ret.optionalNumber("plugged-memory"));
    }
}
