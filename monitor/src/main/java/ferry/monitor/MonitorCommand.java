package ferry.monitor;

import ferry.migration.MigrationParameters;
import java.util.Objects;
import java.util.Optional;

/**
 * One monitor command, decoded by {@link MonitorParser} (the only place HMP text is read).
 * A {@code switch} over this interface without {@code default} breaks the build when a command is added.
 */
public sealed interface MonitorCommand {

    /** {@code help [topic]} or {@code ? [topic]}; {@code info} alone is {@code Help("info")}. Render with {@link MonitorHelp}. */
    record Help(Optional<String> topic) implements MonitorCommand {
        public Help {
            Objects.requireNonNull(topic);
        }
    }

    /** {@code info status}: running or paused, as QEMU prints it. */
    record InfoStatus() implements MonitorCommand {}

    /**
     * {@code info block [-n] [-v] [ID]}: the VM's disks (QEMU's view, which knows each disk by its
     * {@code -drive id=}); {@code arguments} are QEMU's, as typed, empty for all disks.
     */
    record InfoBlock(String arguments) implements MonitorCommand {
        public InfoBlock() {
            this("");
        }
    }

    /** {@code info version}: Ferry's version and QEMU's. */
    record InfoVersion() implements MonitorCommand {}

    /** {@code info migrate}: render with {@link InfoMigrateView}. */
    record InfoMigrate() implements MonitorCommand {}

    /** {@code info migrate_parameters}: render with {@link InfoMigrateParametersView}. */
    record InfoMigrateParameters() implements MonitorCommand {}

    /** {@code info migrate_capabilities}: Ferry's migration capabilities (events, block), QEMU 7.2's format. */
    record InfoMigrateCapabilities() implements MonitorCommand {}

    /** {@code migrate_set_capability NAME on|off}: Ferry's capabilities; QEMU's others can only be off. */
    record MigrateSetCapability(String capability, boolean state) implements MonitorCommand {}

    /** {@code stop} or {@code s}. */
    record Stop() implements MonitorCommand {}

    /** {@code cont} or {@code c}. */
    /**
     * {@code cont}; {@code cont --force} also on a source whose VM was handed over to the destination
     * (Ferry refuses plain {@code cont} there: the VM would run twice).
     */
    record Cont(boolean force) implements MonitorCommand {}

    /** {@code system_reset}. */
    record SystemReset() implements MonitorCommand {}

    /** {@code system_powerdown}. */
    record SystemPowerdown() implements MonitorCommand {}

    /** {@code quit} or {@code q}: the handler decides what it ends. */
    record Quit() implements MonitorCommand {}

    /**
     * {@code migrate [-d] [-b] [-i] [-r] uri}. As in QEMU, {@code -i} implies {@code -b}, so
     * {@code incremental} true means {@code blocks} true.
     *
     * @param detach {@code -d}: return at once instead of printing progress until the end
     * @param blocks {@code -b}: copy the disks too (no shared storage)
     * @param incremental {@code -i}: the destination already holds the base images; copy only what differs
     * @param resume {@code -r}: go on from where the last interrupted migration of this VM stopped (QEMU's flag; in
     *     Ferry it resumes a block migration, so it needs {@code -b} or capability {@code block})
     */
    record Migrate(boolean detach, boolean blocks, boolean incremental, boolean resume, MigrationUri uri) implements MonitorCommand {
        public Migrate {
            Objects.requireNonNull(uri);
            if (incremental && !blocks) {
                throw new IllegalArgumentException("migrate -i implies -b");
            }
        }

        /** Without {@code -r}: a fresh start. */
        public Migrate(boolean detach, boolean blocks, boolean incremental, MigrationUri uri) {
            this(detach, blocks, incremental, false, uri);
        }
    }

    /** {@code migrate_cancel}. */
    record MigrateCancel() implements MonitorCommand {}

    /** {@code migrate_set_speed VALUE}: the same as {@code migrate_set_parameter max-bandwidth VALUE}. */
    record MigrateSetSpeed(long bytesPerSec) implements MonitorCommand {
        public MigrationParameters applyTo(MigrationParameters parameters) {
            return parameters.withMaxBandwidth(bytesPerSec);
        }
    }

    /** {@code migrate_set_downtime SECONDS}: the same as {@code migrate_set_parameter downtime-limit MS}. */
    record MigrateSetDowntime(long ms) implements MonitorCommand {
        public MigrationParameters applyTo(MigrationParameters parameters) {
            return parameters.withDowntimeLimitMs(ms);
        }
    }

    /**
     * {@code migrate_set_parameter NAME VALUE}, already validated against {@link MigrationParameters}'s rules.
     *
     * @param value in the parameter's unit: bytes per second, milliseconds or bytes
     */
    record MigrateSetParameter(MigrationParameter parameter, long value) implements MonitorCommand {
        public MigrateSetParameter {
            Objects.requireNonNull(parameter);
        }

        public MigrationParameters applyTo(MigrationParameters parameters) {
            return parameter.applyTo(parameters, value);
        }
    }

    /**
     * {@code migrate_set_parameter tls-creds|tls-hostname|tls-authz VALUE}: an object id or a host name,
     * empty ({@code ""}) to unset, as in QEMU.
     */
    record MigrateSetTextParameter(MigrationParameter parameter, String value) implements MonitorCommand {
        public MigrateSetTextParameter {
            Objects.requireNonNull(parameter);
            Objects.requireNonNull(value);
            if (!parameter.text()) {
                throw new IllegalArgumentException(parameter.qemuName() + " is not a text parameter");
            }
        }

        public MigrationParameters applyTo(MigrationParameters parameters) {
            return parameter.applyTo(parameters, value);
        }
    }

    /**
     * {@code migrate_incoming URI}: start listening for the incoming migration of a VM started with
     * {@code -incoming defer}, after {@code migrate_set_parameter tls-creds} if TLS is wanted (QEMU's order).
     */
    record MigrateIncoming(MigrationUri uri) implements MonitorCommand {
        public MigrateIncoming {
            Objects.requireNonNull(uri);
        }
    }

    /**
     * {@code migrate_incoming_discard}: Ferry's own. A destination removes the partial state it keeps of an
     * interrupted incoming migration (its resume journals, and the images Ferry created for it) now, instead of at
     * {@code quit} or after {@code partial-timeout}.
     */
    record MigrateIncomingDiscard() implements MonitorCommand {}

    /**
     * Any other command, for QEMU's own monitor (QMP {@code human-monitor-command}), e.g.
     * {@code info registers}, {@code info cpus}.
     *
     * @param line the command line as typed, without leading and trailing blanks
     */
    record Passthrough(String line) implements MonitorCommand {
        public Passthrough {
            if (line.isBlank()) {
                throw new IllegalArgumentException("passthrough command is empty");
            }
        }
    }
}
