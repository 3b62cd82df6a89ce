package ferry.migration.wire;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/**
 * What must be the same on both hosts for QEMU's device state to load: machine type, memory, vCPUs and
 * the devices in their order, each as QEMU reports it (the vm module reads it over QMP). The source sends
 * it in HELLO; the destination compares it with its own before it creates anything, so that a mismatch
 * (QEMU would fail on it only when the device state arrives, at the very end) is refused with one line.
 *
 * <p>Items are key and value text, e.g. {@code memory} = {@code 256 MiB}, {@code pci 00:02.0} =
 * {@code 1af4:1001 SCSI controller}: a key names one thing, the value says how it is. Order is the
 * source's; the comparison looks at keys, so a device in another slot shows up under its address.
 */
public record VmFingerprint(List<Item> items) {
    /** One thing that must match, e.g. {@code vcpus} = {@code 2}. */
    public record Item(String key, String value) {
        public Item {
            Objects.requireNonNull(key, "key");
            Objects.requireNonNull(value, "value");
        }
    }

    public VmFingerprint {
        items = List.copyOf(items);
    }

    public static VmFingerprint of(Item... items) {
        return new VmFingerprint(List.of(items));
    }

    /**
     * The first difference between this host's fingerprint and the source's, as one phrase
     * ("memory 128 MiB here, 256 MiB on the source"), with a count of any further ones; empty when
     * they agree.
     */
    public Optional<String> differenceFrom(VmFingerprint source) {
        Map<String, String> here = asMap(this);
        Map<String, String> there = asMap(source);
        List<String> keys = new ArrayList<>(there.keySet());
        here.keySet().stream().filter(k -> !there.containsKey(k)).forEach(keys::add);
        List<String> differences = new ArrayList<>();
        for (String key : keys) {
            String ours = here.getOrDefault(key, "none");
            String theirs = there.getOrDefault(key, "none");
            if (!ours.equals(theirs)) {
                differences.add(key + " " + ours + " here, " + theirs + " on the source");
            }
        }
        if (differences.isEmpty()) {
            return Optional.empty();
        }
        int more = differences.size() - 1;
        return Optional.of(differences.get(0) + (more == 0 ? "" : " (and " + more + " more difference" + (more == 1 ? "" : "s") + ")"));
    }

    private static Map<String, String> asMap(VmFingerprint fingerprint) {
        Map<String, String> map = new LinkedHashMap<>();
        for (Item item : fingerprint.items) {
            map.putIfAbsent(item.key(), item.value());
        }
        return map;
    }
}
