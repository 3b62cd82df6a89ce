package ferry.monitor;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads a size the way QEMU's {@code qemu_strtosz} does, as checked against QEMU 7.2's
 * {@code migrate_set_parameter max-bandwidth}: a decimal number, optionally with a fraction
 * ({@code 1.5k} = 1536, {@code 0.1k} = 102, rounded down), or a hex integer ({@code 0x10}), then an
 * optional one-letter suffix B, K, M, G, T, P or E in either case (powers of 1024). Without a suffix
 * the number is in {@code defaultUnit}: QEMU reads a bare {@code max-bandwidth 100} as 100 MiB/s.
 * Rejected like QEMU: negative numbers, exponents ({@code 1e3}), two-letter suffixes ({@code 100MB}),
 * and a fraction of a byte ({@code 1.5} when the unit is bytes).
 */
final class SizeArgument {
    enum Unit {
        BYTES(1), MIB(1L << 20);

        final long multiplier;

        Unit(long multiplier) {
            this.multiplier = multiplier;
        }
    }

    private static final Pattern SIZE = Pattern.compile("(?:0[xX]([0-9a-fA-F]+)|([0-9]+(?:\\.[0-9]*)?|\\.[0-9]+))([bBkKmMgGtTpPeE])?");

    private SizeArgument() {}

    /** The size in bytes, or empty when {@code text} is not a size. Sizes beyond {@code Long.MAX_VALUE} are not sizes. */
    static Optional<Long> parse(String text, Unit defaultUnit) {
        Matcher matcher = SIZE.matcher(text);
        if (!matcher.matches()) {
            return Optional.empty();
        }
        BigDecimal number = matcher.group(1) != null
                ? new BigDecimal(new BigInteger(matcher.group(1), 16))
                : new BigDecimal(matcher.group(2));
        long multiplier = matcher.group(3) == null ? defaultUnit.multiplier : suffixMultiplier(matcher.group(3).charAt(0));
        if (multiplier == 1 && number.stripTrailingZeros().scale() > 0) {
            return Optional.empty();
        }
        BigInteger bytes = number.multiply(BigDecimal.valueOf(multiplier)).toBigInteger();
        if (bytes.bitLength() > 63) {
            return Optional.empty();
        }
        return Optional.of(bytes.longValueExact());
    }

    private static long suffixMultiplier(char suffix) {
        return switch (Character.toUpperCase(suffix)) {
            case 'B' -> 1;
            case 'K' -> 1L << 10;
            case 'M' -> 1L << 20;
            case 'G' -> 1L << 30;
            case 'T' -> 1L << 40;
            case 'P' -> 1L << 50;
            case 'E' -> 1L << 60;
            default -> throw new IllegalArgumentException("not a size suffix: " + suffix);
        };
    }
}
