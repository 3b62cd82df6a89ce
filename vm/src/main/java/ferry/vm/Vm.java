package ferry.vm;

import ferry.migration.MigrationException;
import ferry.monitor.MigrationUri;
import ferry.monitor.MonitorException;
import ferry.qmp.QmpClient;
import ferry.qmp.QmpEventListener;
import ferry.qmp.QmpException;
import ferry.qmp.VersionInfo;
import java.util.List;
import java.util.Optional;

/**
 * One VM as Ferry's monitor ({@link VmMonitor}), its QMP server ({@link VmQmp}) and the migration
 * wiring ({@link Migrations}) see it, whoever started its QEMU: {@link Supervisor} for {@code ferry run}
 * (QEMU is Ferry's child, started from the command line's configuration) and {@link Attachment} for
 * {@code ferry attach} (QEMU runs on its own; Ferry found it by its QMP socket). What differs between
 * the two is only what this interface says: where QEMU's QMP connection comes from, which drives
 * migrate, how an incoming migration is prepared, and what {@code quit} ends.
 *
 * <p>Threads: called from monitor and QMP client threads and from the migration threads; implementations
 * are thread-safe.
 */
interface Vm {
    /** The VM's name, for messages and HELLO. */
    String name();

    /** QEMU's QMP connection; empty while this host waits for an incoming migration and has no QEMU yet. */
    Optional<QmpClient> qmp();

    /** QEMU's version: from the QMP connection, or, before QEMU runs here, from the configuration probe. */
    Optional<VersionInfo> qemuVersion();

    /**
     * The drives an outgoing migration copies, in order, as QEMU reports them now. Refuses, with a
     * line that names the drive, one Ferry cannot migrate.
     */
    List<QemuSourceBlocks.Drive> migratedDrives(QmpClient qmp) throws QmpException, MigrationException;

    /** The private directory for the sockets a migration needs (QEMU's NBD server, the RAM tunnel). */
    RuntimeDir runtime();

    /** The migrations in and out of this VM, and their parameters. */
    Migrations migrations();

    /**
     * QMP {@code migrate-incoming}: starts listening for a source, on a VM that waits for one without a
     * listener yet ({@code ferry run -incoming defer}, or {@code ferry attach} to a QEMU started with
     * {@code -incoming defer}). Refused otherwise, in QEMU's words.
     */
    void listenForIncoming(MigrationUri uri) throws MonitorException;

    /** The TLS credentials and authorization objects ({@code -object tls-creds-x509}, {@code authz-*}) this VM has. */
    TlsObjects tls();

    /** {@code quit}: the VM ends (QEMU quits) and so does this Ferry. */
    void quit(String why);

    /**
     * QEMU's log file, where Ferry started QEMU and keeps its log ({@link LogDir}); empty for a QEMU that
     * {@code ferry attach} took over, whose log is wherever its owner sends QEMU's output.
     */
    default Optional<java.nio.file.Path> qemuLog() {
        return Optional.empty();
    }

    /** Hears QEMU's events, from the QEMU that runs now and from any this VM gets later (an incoming migration's). */
    void addQemuListener(QmpEventListener listener);
}
