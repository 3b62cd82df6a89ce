package ferry.vm.guest;

import java.util.Optional;

/**
 * The result of checking a disk written by the demo guest, as {@code ferry-guest: verify ...} reports it.
 *
 * @param records valid records found
 * @param highestSeq the largest sequence number among them (0 when none)
 * @param badBlocks blocks that are neither zero nor a valid record
 * @param firstError the first bad block, {@code offset=N reason=R}
 */
public record VerifyReport(long records, long highestSeq, long badBlocks, Optional<String> firstError) {
    public boolean ok() {
        return badBlocks == 0;
    }

    @Override public String toString() {
        return "verify records=" + records + " highest-seq=" + highestSeq + " bad=" + badBlocks
                + firstError.map(e -> " first-error=" + e).orElse("");
    }
}
