package ferry.qmp;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;

/**
 * A command a client sent to Ferry's {@link QmpServer}, decoded by {@link #decode}: the one place the
 * server reads command names. The migration commands (QEMU 7.2's {@code qapi/migration.json}) are typed,
 * because Ferry answers them itself; a few others are typed because Ferry looks at them on the way
 * ({@code cont}, {@code query-status}, {@code human-monitor-command}); every other command is
 * {@link Forwarded} to QEMU as opaque JSON. {@code qmp_capabilities} never gets here: the server's
 * session handles it. Argument errors are QEMU's own sentences ("Parameter 'uri' is missing").
 */
public sealed interface QmpRequest {

    /**
     * QAPI {@code migrate}. QEMU 7.2 ignores {@code detach} in QMP (the command always returns at once).
     *
     * @param blk copy the disks too (QEMU's old block migration)
     * @param inc copy only what lies on top of a base image both hosts hold; implies {@code blk}
     * @param resume go on from where the last interrupted migration of this VM stopped (QEMU's name; in QEMU it
     *     resumes a paused postcopy migration, in Ferry an interrupted block migration, so it needs {@code blk})
     */
    record Migrate(String uri, boolean blk, boolean inc, boolean detach, boolean resume) implements QmpRequest {
        public Migrate {
            Objects.requireNonNull(uri, "uri");
        }
    }

    record QueryMigrate() implements QmpRequest {}

    record MigrateCancel() implements QmpRequest {}

    /** QAPI {@code migrate-incoming}: a destination started with {@code -incoming defer} starts listening. */
    record MigrateIncoming(String uri) implements QmpRequest {
        public MigrateIncoming {
            Objects.requireNonNull(uri, "uri");
        }
    }

    /**
     * QAPI {@code migrate-set-parameters}, the members Ferry owns; empty ones are left as they are.
     *
     * @param maxBandwidth {@code max-bandwidth}, bytes per second
     * @param downtimeLimitMs {@code downtime-limit}, milliseconds
     * @param granuleSize {@code x-granule-size}, Ferry's own: bytes per dirty-tracking granule
     * @param retryWindowMs {@code x-retry-window}, Ferry's own: how long a source reconnects on its own, milliseconds
     * @param partialTimeoutMs {@code x-partial-timeout}, Ferry's own: how long a destination keeps a partial state, milliseconds
     * @param tlsCreds {@code tls-creds}: an object id; {@code ""} or JSON {@code null} unsets it (QAPI's StrOrNull)
     * @param tlsHostname {@code tls-hostname}, as {@code tls-creds}
     * @param tlsAuthz {@code tls-authz}, as {@code tls-creds}
     * @param unsupported other members that QEMU 7.2's schema has (e.g. {@code compress-level}), which Ferry does not take
     */
    record MigrateSetParameters(OptionalLong maxBandwidth, OptionalLong downtimeLimitMs, OptionalLong granuleSize,
                                OptionalLong retryWindowMs, OptionalLong partialTimeoutMs,
                                Optional<String> tlsCreds, Optional<String> tlsHostname, Optional<String> tlsAuthz,
                                List<String> unsupported) implements QmpRequest {
        public MigrateSetParameters {
            Objects.requireNonNull(maxBandwidth, "maxBandwidth");
            Objects.requireNonNull(downtimeLimitMs, "downtimeLimitMs");
            Objects.requireNonNull(granuleSize, "granuleSize");
            Objects.requireNonNull(retryWindowMs, "retryWindowMs");
            Objects.requireNonNull(partialTimeoutMs, "partialTimeoutMs");
            Objects.requireNonNull(tlsCreds, "tlsCreds");
            Objects.requireNonNull(tlsHostname, "tlsHostname");
            Objects.requireNonNull(tlsAuthz, "tlsAuthz");
            unsupported = List.copyOf(unsupported);
        }
    }

    record QueryMigrateParameters() implements QmpRequest {}

    /** QAPI {@code migrate-set-capabilities}: capability name to state, in the order given; names are QEMU 7.2's. */
    record MigrateSetCapabilities(Map<String, Boolean> capabilities) implements QmpRequest {
        public MigrateSetCapabilities {
            capabilities = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(capabilities));
        }
    }

    record QueryMigrateCapabilities() implements QmpRequest {}

    /**
     * A command that steers QEMU's own migration step by step ({@code migrate-continue},
     * {@code migrate-start-postcopy}, {@code migrate-pause}, {@code migrate-recover}): Ferry runs the migration, so it refuses them, as its monitor does.
     */
    record MigrationStep(String name) implements QmpRequest {
        public MigrationStep {
            Objects.requireNonNull(name, "name");
        }
    }

    /**
     * {@code x-ferry-migrate-incoming-discard}, Ferry's own (QAPI's {@code x-} prefix, as {@code x-ferry} in
     * {@code query-migrate}): the monitor's {@code migrate_incoming_discard}. No arguments.
     */
    record MigrateIncomingDiscard() implements QmpRequest {}

    /**
     * {@code quit}: QEMU's own, except on a destination that waits for (or receives) an incoming migration, where
     * Ferry ends the VM as the monitor's {@code quit} does (and removes the partial state it keeps).
     */
    record Quit() implements QmpRequest {}

    /** {@code cont}: refused on a source that handed its VM over (the VM would run twice). */
    record Cont() implements QmpRequest {}

    /** {@code query-status}: answered by Ferry while the VM waits for an incoming migration and has no QEMU yet. */
    record QueryStatus() implements QmpRequest {}

    /** {@code human-monitor-command}: the line goes to Ferry's monitor, which passes what it does not own to QEMU. */
    record HumanMonitorCommand(String commandLine, OptionalLong cpuIndex) implements QmpRequest {
        public HumanMonitorCommand {
            Objects.requireNonNull(commandLine, "commandLine");
            Objects.requireNonNull(cpuIndex, "cpuIndex");
        }
    }

    /** Any other command, for QEMU as it came. */
    record Forwarded(String name, Json.Obj arguments) implements QmpRequest {
        public Forwarded {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(arguments, "arguments");
        }
    }

    /** QEMU 7.2's {@code MigrationCapability} values, in its order ({@code query-migrate-capabilities}). */
    List<String> MIGRATION_CAPABILITIES = List.of("xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress",
            "events", "postcopy-ram", "x-colo", "release-ram", "block", "return-path", "pause-before-switchover", "multifd",
            "dirty-bitmaps", "postcopy-blocktime", "late-block-activate", "x-ignore-shared", "validate-uuid",
            "background-snapshot", "zero-copy-send", "postcopy-preempt");

    /** QEMU 7.2's {@code MigrateSetParameters} members that Ferry does not take. */
    Set<String> QEMU_ONLY_PARAMETERS = Set.of("announce-initial", "announce-max", "announce-rounds", "announce-step",
            "compress-level", "compress-threads", "compress-wait-thread", "decompress-threads", "throttle-trigger-threshold",
            "cpu-throttle-initial", "cpu-throttle-increment", "cpu-throttle-tailslow", "x-checkpoint-delay", "block-incremental", "multifd-channels", "xbzrle-cache-size",
            "max-postcopy-bandwidth", "max-cpu-throttle", "multifd-compression", "multifd-zlib-level",
            "multifd-zstd-level", "block-bitmap-mapping");

    /**
     * Decodes a command by its name. The server has already checked the message itself (an object with
     * {@code execute} a string and {@code arguments} an object); this checks the arguments of the typed ones.
     */
    static QmpRequest decode(String name, Json.Obj arguments) throws QmpError {
        Args args = new Args(arguments);
        QmpRequest request = switch (name) {
            case "migrate" -> new Migrate(args.string("uri"), args.optionalBool("blk"), args.optionalBool("inc"),
                    args.optionalBool("detach"), args.optionalBool("resume"));
            case "query-migrate" -> new QueryMigrate();
            case "migrate_cancel" -> new MigrateCancel();
            case "migrate-incoming" -> new MigrateIncoming(args.string("uri"));
            case "migrate-set-parameters" -> setParameters(args);
            case "query-migrate-parameters" -> new QueryMigrateParameters();
            case "migrate-set-capabilities" -> setCapabilities(args);
            case "query-migrate-capabilities" -> new QueryMigrateCapabilities();
            case "migrate-continue", "migrate-start-postcopy", "migrate-pause", "migrate-recover" -> {
                args.consumeAll();
                yield new MigrationStep(name);
            }
            case "x-ferry-migrate-incoming-discard" -> new MigrateIncomingDiscard();
            case "quit" -> new Quit();
            case "cont" -> new Cont();
            case "query-status" -> new QueryStatus();
            case "human-monitor-command" -> new HumanMonitorCommand(args.string("command-line"), args.optionalLong("cpu-index"));
            default -> {
                args.consumeAll();
                yield new Forwarded(name, arguments);
            }
        };
        args.end();
        return request;
    }

    private static MigrateSetParameters setParameters(Args args) throws QmpError {
        OptionalLong bandwidth = args.optionalLong("max-bandwidth");
        OptionalLong downtime = args.optionalLong("downtime-limit");
        OptionalLong granule = args.optionalLong("x-granule-size");
        OptionalLong retryWindow = args.optionalLong("x-retry-window");
        OptionalLong partialTimeout = args.optionalLong("x-partial-timeout");
        Optional<String> tlsCreds = args.optionalStrOrNull("tls-creds");
        Optional<String> tlsHostname = args.optionalStrOrNull("tls-hostname");
        Optional<String> tlsAuthz = args.optionalStrOrNull("tls-authz");
        List<String> unsupported = new ArrayList<>();
        for (String member : args.remaining()) {
            if (QEMU_ONLY_PARAMETERS.contains(member)) {
                unsupported.add(member);
                args.consume(member);
            }
        }
        return new MigrateSetParameters(bandwidth, downtime, granule, retryWindow, partialTimeout, tlsCreds, tlsHostname, tlsAuthz,
                unsupported);
    }

    private static MigrateSetCapabilities setCapabilities(Args args) throws QmpError {
        List<Json> list = args.array("capabilities");
        Map<String, Boolean> capabilities = new LinkedHashMap<>();
        for (int i = 0; i < list.size(); i++) {
            String at = "capabilities[" + i + "]";
            if (!(list.get(i) instanceof Json.Obj entry)) {
                throw QmpError.generic("Invalid parameter type for '" + at + "', expected: object");
            }
            Args item = new Args(entry, at + ".");
            String capability = item.string("capability");
            boolean state = item.bool("state");
            item.end();
            if (!MIGRATION_CAPABILITIES.contains(capability)) {
                throw QmpError.generic("Parameter 'capability' does not accept value '" + capability + "'");
            }
            capabilities.put(capability, state);
        }
        return new MigrateSetCapabilities(capabilities);
    }

    /** Reads a command's arguments the way QEMU's QAPI visitor does, with its error sentences. */
    final class Args {
        private final Json.Obj arguments;
        private final String prefix;
        private final Set<String> unread;

        Args(Json.Obj arguments) {
            this(arguments, "");
        }

        Args(Json.Obj arguments, String prefix) {
            this.arguments = arguments;
            this.prefix = prefix;
            this.unread = new java.util.LinkedHashSet<>(arguments.members().keySet());
        }

        String string(String name) throws QmpError {
            Json value = require(name);
            if (!(value instanceof Json.Str s)) {
                throw typeError(name, "string");
            }
            return s.value();
        }

        boolean bool(String name) throws QmpError {
            Json value = require(name);
            if (!(value instanceof Json.Bool b)) {
                throw typeError(name, "boolean");
            }
            return b.value();
        }

        boolean optionalBool(String name) throws QmpError {
            return arguments.has(name) && bool(name);
        }

        OptionalLong optionalLong(String name) throws QmpError {
            if (!arguments.has(name)) {
                return OptionalLong.empty();
            }
            Json value = require(name);
            try {
                return OptionalLong.of(value.asLong());
            } catch (JsonException e) {
                throw typeError(name, "integer");
            }
        }

        /** QAPI's {@code StrOrNull}: a string, or {@code null} read as {@code ""} (what QEMU does with it: unset). */
        Optional<String> optionalStrOrNull(String name) throws QmpError {
            if (!arguments.has(name)) {
                return Optional.empty();
            }
            Json value = require(name);
            return switch (value) {
                case Json.Str s -> Optional.of(s.value());
                case Json.Null n -> Optional.of("");
                default -> throw typeError(name, "StrOrNull");      // QEMU names the alternate type
            };
        }

        List<Json> array(String name) throws QmpError {
            Json value = require(name);
            if (!(value instanceof Json.Arr a)) {
                throw typeError(name, "array");
            }
            return a.elements();
        }

        List<String> remaining() {
            return List.copyOf(unread);
        }

        void consume(String name) {
            unread.remove(name);
        }

        void consumeAll() {
            unread.clear();
        }

        /** Every member must have been read: QEMU refuses one it does not know. */
        void end() throws QmpError {
            if (!unread.isEmpty()) {
                throw QmpError.generic("Parameter '" + prefix + unread.iterator().next() + "' is unexpected");
            }
        }

        private Json require(String name) throws QmpError {
            Json value = arguments.members().get(name);
            if (value == null) {
                throw QmpError.generic("Parameter '" + prefix + name + "' is missing");
            }
            unread.remove(name);
            return value;
        }

        private QmpError typeError(String name, String expected) {
            return QmpError.generic("Invalid parameter type for '" + prefix + name + "', expected: " + expected);
        }
    }
}
