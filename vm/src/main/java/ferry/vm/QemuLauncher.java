package ferry.vm;

import ferry.qemu.Accelerator;
import ferry.qemu.QemuConfig;
import ferry.qemu.QemuException;
import ferry.qemu.QemuProcess;
import java.util.List;

/**
 * Turns a {@link VmConfig} into a running {@code qemu-system-x86_64}: the same machine on both
 * hosts, the user's {@code -drive}s as written (QEMU opens its own images), QMP on a private socket.
 * The QEMU outlives Ferry if Ferry crashes, and its pid is kept in the runtime directory
 * ({@code qemu.pid}) so that a later Ferry leaves that directory, and QEMU's QMP socket, alone.
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

    /** Starts QEMU; {@code incoming}: {@code -incoming defer -S}, waiting for a RAM stream. */
    QemuProcess start(boolean incoming) throws QemuException {
        QemuConfig qemu = QemuConfig.of(config.name(), config.memoryMib(), accelerator, runtime.resolve("qmp.sock"))
                .withSmp(config.smp())
                .withDisks(config.drives().stream().<ferry.qemu.QemuConfig.Disk>map(VmConfig.Drive::qemuDisk).toList())
                .withSerial(config.serial())
                .withIncomingDefer(incoming)
                .withPaused(incoming)
                .withExtraArgs(java.util.stream.Stream.concat(config.qemuObjectArgs().stream(), config.qemuArgs().stream()).toList());
        if (config.kernel().isPresent()) {
            qemu = qemu.withKernel(config.kernel().get(), config.initrd(), config.append());
        }
        List<String> command = ferry.qemu.QemuCommandLine.of(config.qemuBinary(), qemu);
        QemuProcess process = new QemuProcess(config.name(), command, qemu.qmpSocket(), runtime.resolve("qemu.log"),
                QemuProcess.Tie.OUTLIVES_FERRY);
        process.start(START_TIMEOUT_MS);
        runtime.recordQemu(process.pid());
        return process;
    }
}
