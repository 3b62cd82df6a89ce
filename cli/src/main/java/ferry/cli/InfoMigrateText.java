package ferry.cli;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads {@code info migrate} output the way an admin's script does: {@code key: value} lines.
 * The format is specified in docs/monitor.md.
 */
public record InfoMigrateText(Map<String, String> fields) {

    public static InfoMigrateText parse(String text) {
        Map<String, String> fields = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            int colon = line.indexOf(':');
            if (colon > 0) {
                fields.put(line.substring(0, colon).strip(), line.substring(colon + 1).strip());
            }
        }
        return new InfoMigrateText(fields);
    }

    /** {@code setup}, {@code active}, {@code completed}, {@code failed}, ... or {@code none}. */
    public String status() {
        String status = fields.getOrDefault("Migration status", "none");
        int space = status.indexOf(' ');
        return space < 0 ? status : status.substring(0, space);
    }

    public String statusLine() {
        return fields.getOrDefault("Migration status", "none");
    }

    /** The leading number of a field ({@code 123} of {@code "123 kbytes"}), or -1. */
    public long number(String key) {
        String value = fields.get(key);
        if (value == null) {
            return -1;
        }
        String digits = value.split(" ")[0];
        try {
            return (long) Double.parseDouble(digits);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    public String field(String key) {
        return fields.getOrDefault(key, "");
    }
}
