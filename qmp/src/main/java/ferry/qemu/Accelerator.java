package ferry.qemu;

import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;

/**
 * QEMU's accelerator, and the choice of one: KVM where it really runs guests, else TCG with a
 * one-line notice.
 *
 * <p>KVM counts as not working when {@code /dev/kvm} is missing or not readable and writable, and
 * when it belongs to a nested PVM hypervisor ({@code /sys/module/kvm_pvm} exists): standard guest
 * kernels hang there (seen on the Ferry test machines). An explicit {@code -accel kvm|tcg} wins.
 */
public enum Accelerator {
    KVM("kvm"), TCG("tcg");

    private static final System.Logger LOG = System.getLogger(Accelerator.class.getName());

    private final String qemuName;

    Accelerator(String qemuName) {
        this.qemuName = qemuName;
    }

    /** The name for {@code -accel}. */
    public String qemuName() {
        return qemuName;
    }

    /** Parses {@code kvm} or {@code tcg} as given to {@code -accel}. */
    public static Accelerator parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "kvm" -> KVM;
            case "tcg" -> TCG;
            default -> throw new IllegalArgumentException("unknown accelerator: accel=" + name + " (expected kvm or tcg)");
        };
    }

    /** The outcome of {@link #choose}: the accelerator, and the notice when KVM was passed over. */
    public record Choice(Accelerator accelerator, Optional<String> notice) {}

    /** Chooses on this machine. */
    public static Choice choose(Optional<Accelerator> requested) {
        return choose(requested, Path.of("/"));
    }

    /**
     * Chooses with {@code root} as the file system root ({@code root/dev/kvm}, {@code root/sys/module/kvm_pvm}),
     * so that tests can pass a fake tree. Logs the notice at WARNING.
     */
    public static Choice choose(Optional<Accelerator> requested, Path root) {
        if (requested.isPresent()) {
            return new Choice(requested.get(), Optional.empty());
        }
        Path kvm = root.resolve("dev/kvm");
        String notice;
        if (!Files.exists(kvm)) {
            notice = "ferry: /dev/kvm is missing; using TCG";
        } else if (!Files.isReadable(kvm) || !Files.isWritable(kvm)) {
            notice = "ferry: /dev/kvm is not readable and writable by this user; using TCG";
        } else if (Files.exists(root.resolve("sys/module/kvm_pvm"))) {
            notice = "ferry: /dev/kvm is a PVM nested hypervisor (kvm_pvm); using TCG";
        } else {
            return new Choice(KVM, Optional.empty());
        }
        LOG.log(Level.WARNING, notice);
        return new Choice(TCG, Optional.of(notice));
    }
}
