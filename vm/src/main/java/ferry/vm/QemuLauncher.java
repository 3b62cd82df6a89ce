package ferry.vm;

import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import ferry.migration.wire.VmFingerprint;
import ferry.qmp.QmpException;
import ferry.qmp.VersionInfo;
import java.nio.file.Path;
import java.util.List;

/**
 * Turns a {@link VmConfig} into a running {@code qemu-system-x86_64}: the same machine on both
 * hosts, the user's {@code -drive}s as written (QEMU opens its own images), QMP on a private socket.
 * The QEMU outlives Ferry if Ferry crashes, and its pid is kept in the runtime directory
 * ({@code qemu.pid}) so that a later Ferry leaves that directory, and QEMU's QMP socket, alone.
 * The accelerator is chosen once per process ({@link Accelerator#choose}), which logs its notice.
 */
final class QemuLauncher {
    private static final System.Logger LOG = System.getLogger(QemuLauncher.class.getName());
    private static final long START_TIMEOUT_MS = 30_000;

    private final VmConfig config;
    private final RuntimeDir runtime;
    private final Accelerator accelerator;

    QemuLauncher(VmConfig config, RuntimeDir runtime) {
        this.config = config;
        this.runtime = runtime;
        // the choice's notice is logged at WARNING by choose(): printing it here as well showed it twice
        this.accelerator = Accelerator.choose(config.accelerator()).accelerator();
    }

    /** QEMU's log, kept after Ferry exits ({@link LogDir}): every message that names it names a file that exists. */
    Path qemuLog() {
        return LogDir.qemuLog(config.process().logDir(), config.name());
    }

    Accelerator accelerator() {
        return accelerator;
    }

    /** Starts QEMU; {@code incoming}: {@code -incoming defer -S}, waiting for a RAM stream. */
    QemuProcess start(boolean incoming) throws QemuException {
        QemuConfig qemu = qemuConfig(runtime.resolve("qmp.sock"), config.drives().stream()
                .<QemuConfig.Disk>map(VmConfig.Drive::qemuDisk).toList(), config.serial(), incoming, incoming);
        List<String> command = ferry.qemu.QemuCommandLine.of(config.qemuBinary(), qemu);
        QemuProcess process = new QemuProcess(config.name(), command, qemu.qmpSocket(), qemuLog(),
                QemuProcess.Tie.OUTLIVES_FERRY);
        process.start(START_TIMEOUT_MS);
        runtime.recordQemu(process.pid());
        return process;
    }

    /** What the destination's probe found: its VM's fingerprint and QEMU's version. */
    record Probe(VmFingerprint fingerprint, VersionInfo version) { }

    /**
     * Starts this configuration's QEMU paused for a moment, without its images, to read the VM's
     * fingerprint as this QEMU reports it (a destination's images do not exist before the source's HELLO,
     * and the check must come before they are created). Each {@code -drive} becomes a {@code null-co}
     * drive with the same guest-visible properties ({@code if}, {@code index}, {@code bus}, {@code unit},
     * {@code media}, {@code serial}, {@code readonly}, {@code id}, {@code node-name}), so the devices
     * are the same; the serial port and the image options do not change them. It also checks the
     * configuration early: QEMU refusing it ends {@code ferry run -incoming} before any source comes.
     * About 0.3 s under TCG; the probe dies with Ferry.
     */
    Probe probe() throws QemuException {
        List<QemuConfig.Disk> nullDrives = new java.util.ArrayList<>();
        for (VmConfig.Drive drive : config.drives()) {
            List<QemuConfig.DriveProperty> properties = new java.util.ArrayList<>();
            properties.add(new QemuConfig.DriveProperty("driver", "null-co"));
            for (QemuConfig.DriveProperty property : drive.qemuDisk().properties()) {
                if (GUEST_VISIBLE_DRIVE_PROPERTIES.contains(property.key())) {
                    properties.add(property);
                }
            }
            nullDrives.add(new QemuConfig.Disk.Drive(properties));
        }
        QemuConfig qemu = qemuConfig(runtime.resolve("probe-qmp.sock"), nullDrives, new QemuConfig.Serial.None(), false, true);
        List<String> command = ferry.qemu.QemuCommandLine.of(config.qemuBinary(), qemu);
        long startNs = System.nanoTime();
        try (QemuProcess probe = new QemuProcess(config.name() + "-probe", command, qemu.qmpSocket(),
                LogDir.of(config.process().logDir()).resolve(config.name() + ".qemu-probe.log"), QemuProcess.Tie.DIES_WITH_FERRY)) {
            probe.start(START_TIMEOUT_MS);
            VmFingerprint fingerprint = QemuFingerprint.of(probe.qmp());
            VersionInfo version = probe.qmp().version();
            LOG.log(System.Logger.Level.INFO, "configuration probe: " + fingerprint.items().size() + " items in "
                    + (System.nanoTime() - startNs) / 1_000_000 + " ms");
            return new Probe(fingerprint, version);
        } catch (QmpException e) {
            throw new QemuException(QemuException.Kind.QMP, "reading the VM's configuration from QEMU failed: " + e.getMessage(), e);
        }
    }

    private static final java.util.Set<String> GUEST_VISIBLE_DRIVE_PROPERTIES = java.util.Set.of("if", "index", "bus", "unit",
            "media", "serial", "readonly", "id", "node-name");

    private QemuConfig qemuConfig(java.nio.file.Path qmpSocket, List<QemuConfig.Disk> disks, QemuConfig.Serial serial,
                                  boolean incoming, boolean paused) {
        QemuConfig qemu = QemuConfig.of(config.name(), config.memoryMib(), accelerator, qmpSocket)
                .withMachine(ferry.qemu.MachineTypes.pin(config.qemuBinary(),
                        config.process().machine().orElse(ferry.qemu.MachineTypes.DEFAULT)))
                .withSmp(config.process().smpSpec().orElse(Integer.toString(config.smp())))
                .withDisks(disks)
                .withSerial(serial)
                .withIncomingDefer(incoming)
                .withPaused(paused)
                .withExtraArgs(java.util.stream.Stream.concat(config.qemuObjectArgs().stream(), config.qemuArgs().stream()).toList());
        if (config.kernel().isPresent()) {
            qemu = qemu.withKernel(config.kernel().get(), config.initrd(), config.append());
        }
        return qemu;
    }
}
