package ferry.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AcceleratorTest {
    @TempDir Path root;

    private void devKvm() throws Exception {
        Files.createDirectories(root.resolve("dev"));
        Files.createFile(root.resolve("dev/kvm"));
    }

    @Test
    void shouldChooseKvmWhenDevKvmWorksAndIsNotPvm() throws Exception {
        devKvm();
        Files.createDirectories(root.resolve("sys/module/kvm_intel"));
        assertEquals(new Accelerator.Choice(Accelerator.KVM, Optional.empty()), Accelerator.choose(Optional.empty(), root));
    }

    @Test
    void shouldFallBackToTcgOnAPvmNestedHypervisor() throws Exception {
        devKvm();
        Files.createDirectories(root.resolve("sys/module/kvm_pvm/parameters"));
        assertEquals(new Accelerator.Choice(Accelerator.TCG,
                        Optional.of("ferry: /dev/kvm is a PVM nested hypervisor (kvm_pvm); using TCG")),
                Accelerator.choose(Optional.empty(), root));
    }

    @Test
    void shouldFallBackToTcgWithoutDevKvm() {
        assertEquals(new Accelerator.Choice(Accelerator.TCG, Optional.of("ferry: /dev/kvm is missing; using TCG")),
                Accelerator.choose(Optional.empty(), root));
    }

    @Test
    void shouldFallBackToTcgWhenDevKvmIsNotAccessible() throws Exception {
        devKvm();
        Files.setPosixFilePermissions(root.resolve("dev/kvm"), PosixFilePermissions.fromString("---------"));
        Accelerator.Choice choice = Accelerator.choose(Optional.empty(), root);
        if (Files.isReadable(root.resolve("dev/kvm"))) {
            // root ignores file modes: the check cannot fail here, so it must have chosen KVM
            assertEquals(Accelerator.KVM, choice.accelerator());
        } else {
            assertEquals(Accelerator.TCG, choice.accelerator());
            assertEquals(Optional.of("ferry: /dev/kvm is not readable and writable by this user; using TCG"), choice.notice());
        }
    }

    @Test
    void shouldLetAnExplicitChoiceWin() throws Exception {
        devKvm();
        Files.createDirectories(root.resolve("sys/module/kvm_pvm"));
        assertEquals(new Accelerator.Choice(Accelerator.KVM, Optional.empty()), Accelerator.choose(Optional.of(Accelerator.KVM), root));
        assertEquals(Accelerator.TCG, Accelerator.choose(Optional.of(Accelerator.parse("TCG")), Path.of("/nonexistent")).accelerator());
    }
}
