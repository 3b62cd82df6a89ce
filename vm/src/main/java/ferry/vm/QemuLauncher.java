package ferry.vm;

import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import java.util.List;

/**
 * Turns a {@link VmConfig} and its served disks into a running {@code qemu-system-x86_64}: the
 * same machine on both hosts, disks as NBD blockdevs on Ferry's private socket, QMP on another.
 * The accelerator is chosen once per process ({@link Accelerator#choose}), with its notice printed.
 */
final class QemuLauncher {
    private static final long START_TIMEOUT_MS = 30_000;

    private final VmConfig config;
    private final RuntimeDir runtime;
    private final Accelerator accelerator;

    QemuLauncher(VmConfig config, RuntimeDir runtime) {
        this.config = config;
        this.runtime = runtime;
        Accelerator.Choice choice = Accelerator.choose(config.accelerator());
        choice.notice().ifPresent(System.err::println);
        this.accelerator = choice.accelerator();
    }

    Accelerator accelerator() {
        return accelerator;
    }

    /** Starts QEMU with the disks; {@code incoming}: {@code -incoming defer -S}, waiting for a RAM stream. */
    QemuProcess start(VmDisks disks, boolean incoming) throws QemuException {
        QemuConfig qemu = QemuConfig.of(config.name(), config.memoryMib(), accelerator, runtime.resolve("qmp.sock"))
                .withSmp(config.smp())
                .withDisks(disks.qemuDisks())
                .withSerial(config.serial())
                .withIncomingDefer(incoming)
                .withPaused(incoming)
                .withExtraArgs(config.qemuArgs());
        if (config.kernel().isPresent()) {
            qemu = qemu.withKernel(config.kernel().get(), config.initrd(), config.append());
        }
        List<String> command = ferry.qemu.QemuCommandLine.of(config.qemuBinary(), qemu);
        QemuProcess process = new QemuProcess(config.name(), command, qemu.qmpSocket(), runtime.resolve("qemu.log"));
        process.start(START_TIMEOUT_MS);
        return process;
    }
}
