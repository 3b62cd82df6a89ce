package ferry.qmp;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * A QMP command: its QAPI name, its arguments, and how its {@code return} value decodes. One record
 * per command Ferry uses; the QAPI schema they follow (QEMU 7.2 {@code qapi/run-state.json},
 * {@code qapi/migration.json}, {@code qapi/misc.json}, {@code qapi/control.json}, {@code qapi/block-core.json},
 * {@code qapi/block-export.json}, {@code qapi/transaction.json}) is summarized in docs/qmp.md.
 *
 * @param <R> the decoded reply
 */
public sealed interface QmpCommand<R> {
    /** The QAPI command name, e.g. {@code query-status}. */
    String name();

    /** The {@code arguments} object; empty for commands without arguments. */
    default Json.Obj arguments() {
        return Json.Obj.of();
    }

    /** Decodes the {@code return} member of a successful reply. */
    R decode(Json ret) throws JsonException;

    /** For commands whose reply is {@code {}}. */
    sealed interface NoResult extends QmpCommand<Done> {
        @Override default Done decode(Json ret) throws JsonException {
            ret.asObject();
            return Done.DONE;
        }
    }

    /** Leaves capabilities negotiation mode; sent by {@link QmpClient#start} itself. */
    record QmpCapabilities() implements NoResult {
        @Override public String name() { return "qmp_capabilities"; }
    }

    record QueryStatus() implements QmpCommand<StatusInfo> {
        @Override public String name() { return "query-status"; }
        @Override public StatusInfo decode(Json ret) throws JsonException { return StatusInfo.decode(ret.asObject()); }
    }

    record QueryVersion() implements QmpCommand<VersionInfo> {
        @Override public String name() { return "query-version"; }
        @Override public VersionInfo decode(Json ret) throws JsonException { return VersionInfo.decode(ret.asObject()); }
    }

    /** Pauses the guest's CPUs (event STOP). */
    record Stop() implements NoResult {
        @Override public String name() { return "stop"; }
    }

    /** Resumes the guest's CPUs (event RESUME). */
    record Cont() implements NoResult {
        @Override public String name() { return "cont"; }
    }

    record SystemReset() implements NoResult {
        @Override public String name() { return "system_reset"; }
    }

    /** Presses the ACPI power button (event POWERDOWN); the guest decides what to do. */
    record SystemPowerdown() implements NoResult {
        @Override public String name() { return "system_powerdown"; }
    }

    /** QEMU exits: the reply may race with the socket closing. */
    record Quit() implements NoResult {
        @Override public String name() { return "quit"; }
    }

    /** An HMP line run by QEMU's human monitor; returns its output text. */
    record HumanMonitorCommand(String line) implements QmpCommand<String> {
        public HumanMonitorCommand {
            Objects.requireNonNull(line, "line");
        }
        @Override public String name() { return "human-monitor-command"; }
        @Override public Json.Obj arguments() { return args("command-line", Json.of(line)); }
        @Override public String decode(Json ret) throws JsonException { return ret.asString(); }
    }

    record QueryMigrate() implements QmpCommand<MigrationInfo> {
        @Override public String name() { return "query-migrate"; }
        @Override public MigrationInfo decode(Json ret) throws JsonException { return MigrationInfo.decode(ret.asObject()); }
    }

    /** Starts an outgoing migration, e.g. {@code uri=unix:/run/ferry/ram.sock}. */
    record Migrate(String uri) implements NoResult {
        public Migrate {
            Objects.requireNonNull(uri, "uri");
        }
        @Override public String name() { return "migrate"; }
        @Override public Json.Obj arguments() { return args("uri", Json.of(uri)); }
    }

    /** Starts listening for an incoming migration on a QEMU started with {@code -incoming defer}. */
    record MigrateIncoming(String uri) implements NoResult {
        public MigrateIncoming {
            Objects.requireNonNull(uri, "uri");
        }
        @Override public String name() { return "migrate-incoming"; }
        @Override public Json.Obj arguments() { return args("uri", Json.of(uri)); }
    }

    /** Sets migration capabilities by QAPI name, e.g. {@code events}, {@code pause-before-switchover}. */
    record MigrateSetCapabilities(Map<String, Boolean> capabilities) implements NoResult {
        public MigrateSetCapabilities {
            capabilities = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(capabilities));
        }
        @Override public String name() { return "migrate-set-capabilities"; }
        @Override public Json.Obj arguments() {
            List<Json> list = capabilities.entrySet().stream()
                    .map(e -> (Json) args2("capability", Json.of(e.getKey()), "state", Json.of(e.getValue())))
                    .toList();
            return args("capabilities", new Json.Arr(list));
        }
    }

    /**
     * Sets migration parameters; empty ones are left as they are.
     *
     * @param maxBandwidthBytesPerSecond QAPI {@code max-bandwidth}, bytes per second
     * @param downtimeLimitMs QAPI {@code downtime-limit}, milliseconds
     */
    record MigrateSetParameters(OptionalLong maxBandwidthBytesPerSecond, OptionalLong downtimeLimitMs) implements NoResult {
        public MigrateSetParameters {
            Objects.requireNonNull(maxBandwidthBytesPerSecond, "maxBandwidthBytesPerSecond");
            Objects.requireNonNull(downtimeLimitMs, "downtimeLimitMs");
        }
        @Override public String name() { return "migrate-set-parameters"; }
        @Override public Json.Obj arguments() {
            Map<String, Json> members = new LinkedHashMap<>();
            maxBandwidthBytesPerSecond.ifPresent(v -> members.put("max-bandwidth", Json.of(v)));
            downtimeLimitMs.ifPresent(v -> members.put("downtime-limit", Json.of(v)));
            return new Json.Obj(members);
        }
    }

    /** Lets a migration paused in {@code state} (normally {@code pre-switchover}) go on. */
    record MigrateContinue(MigrationState state) implements NoResult {
        public MigrateContinue {
            Objects.requireNonNull(state, "state");
        }
        @Override public String name() { return "migrate-continue"; }
        @Override public Json.Obj arguments() { return args("state", Json.of(state.qapiName())); }
    }

    record MigrateCancel() implements NoResult {
        @Override public String name() { return "migrate_cancel"; }
    }

    // ---- The VM's configuration (qapi/misc.json, qapi/machine.json, qapi/qom.json, qapi/pci.json) ----

    /** The VM's {@code -name}, empty when it has none. */
    record QueryName() implements QmpCommand<Optional<String>> {
        @Override public String name() { return "query-name"; }
        @Override public Optional<String> decode(Json ret) throws JsonException { return ret.asObject().optionalString("name"); }
    }

    /**
     * One QOM property, e.g. {@code path=/machine property=type} ({@code "pc-i440fx-7.2-machine"}). Its
     * value's JSON type depends on the property, so the reply stays JSON for the caller to read.
     */
    record QomGet(String path, String property) implements QmpCommand<Json> {
        public QomGet {
            Objects.requireNonNull(path, "path");
            Objects.requireNonNull(property, "property");
        }
        @Override public String name() { return "qom-get"; }
        @Override public Json.Obj arguments() { return args2("path", Json.of(path), "property", Json.of(property)); }
        @Override public Json decode(Json ret) { return ret; }
    }

    record QueryMemorySizeSummary() implements QmpCommand<MemorySizeSummary> {
        @Override public String name() { return "query-memory-size-summary"; }
        @Override public MemorySizeSummary decode(Json ret) throws JsonException { return MemorySizeSummary.decode(ret.asObject()); }
    }

    /** The vCPUs, without interrupting them (QEMU's {@code query-cpus} did). */
    record QueryCpusFast() implements QmpCommand<List<CpuInfoFast>> {
        @Override public String name() { return "query-cpus-fast"; }
        @Override public List<CpuInfoFast> decode(Json ret) throws JsonException { return CpuInfoFast.decodeList(ret); }
    }

    /** Every PCI device, on every bus, bridges' buses included. */
    record QueryPci() implements QmpCommand<List<PciDevice>> {
        @Override public String name() { return "query-pci"; }
        @Override public List<PciDevice> decode(Json ret) throws JsonException { return PciDevice.decodeList(ret); }
    }

    /**
     * A command Ferry does not read: a QMP client's command that Ferry's QMP server passes to QEMU as it
     * came ({@code docs/qmp.md}, "Ferry's QMP server"). Its arguments and its reply stay opaque JSON;
     * QEMU's error reply arrives as a {@link QmpException} with QEMU's class and description.
     */
    record Forwarded(String name, Json.Obj arguments) implements QmpCommand<Json> {
        public Forwarded {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(arguments, "arguments");
        }
        @Override public Json decode(Json ret) { return ret; }
    }

    // ---- Block layer (QEMU 7.2 qapi/block-core.json, qapi/block-export.json, qapi/transaction.json) ----

    /** Lists the drives, with their nodes, throttle limits and dirty bitmaps. */
    record QueryBlock() implements QmpCommand<List<BlockInfo>> {
        @Override public String name() { return "query-block"; }
        @Override public List<BlockInfo> decode(Json ret) throws JsonException { return BlockInfo.decodeList(ret); }
    }

    /**
     * Adds a dirty bitmap to a node; guest writes mark it from then on unless {@code disabled}.
     *
     * @param node the node name (query-block's {@code inserted.node-name}) or the BlockBackend's name
     * @param granularityBytes bytes per bit, a power of 2 from 512 to 2 GiB; empty: QEMU picks the
     *     image's cluster size but at least 4 KiB (64 KiB for a default qcow2), or 64 KiB when it has none
     * @param persistent whether qcow2 keeps the bitmap in the image when QEMU closes it
     */
    record BlockDirtyBitmapAdd(String node, String name, OptionalLong granularityBytes, boolean persistent,
                               boolean disabled) implements NoResult, TransactionAction {
        public BlockDirtyBitmapAdd {
            Objects.requireNonNull(node, "node");
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(granularityBytes, "granularityBytes");
        }

        /** A recording, non-persistent bitmap of {@code granularityBytes} per bit. */
        public BlockDirtyBitmapAdd(String node, String name, long granularityBytes) {
            this(node, name, OptionalLong.of(granularityBytes), false, false);
        }

        @Override public String name() { return "block-dirty-bitmap-add"; }
        @Override public Json.Obj arguments() {
            Map<String, Json> members = new LinkedHashMap<>();
            members.put("node", Json.of(node));
            members.put("name", Json.of(name));
            granularityBytes.ifPresent(g -> members.put("granularity", Json.of(g)));
            members.put("persistent", Json.of(persistent));
            members.put("disabled", Json.of(disabled));
            return new Json.Obj(members);
        }
    }

    /** Removes a bitmap; QEMU refuses while it is busy (e.g. exported over NBD). */
    record BlockDirtyBitmapRemove(String node, String name) implements NoResult, TransactionAction {
        public BlockDirtyBitmapRemove {
            Objects.requireNonNull(node, "node");
            Objects.requireNonNull(name, "name");
        }
        @Override public String name() { return "block-dirty-bitmap-remove"; }
        @Override public Json.Obj arguments() { return bitmapArgs(node, name); }
    }

    /** Stops writes from marking a bitmap; its bits stay. Only a disabled bitmap can be exported read-only. */
    record BlockDirtyBitmapDisable(String node, String name) implements NoResult, TransactionAction {
        public BlockDirtyBitmapDisable {
            Objects.requireNonNull(node, "node");
            Objects.requireNonNull(name, "name");
        }
        @Override public String name() { return "block-dirty-bitmap-disable"; }
        @Override public Json.Obj arguments() { return bitmapArgs(node, name); }
    }

    /** Lets writes mark a disabled bitmap again. */
    record BlockDirtyBitmapEnable(String node, String name) implements NoResult, TransactionAction {
        public BlockDirtyBitmapEnable {
            Objects.requireNonNull(node, "node");
            Objects.requireNonNull(name, "name");
        }
        @Override public String name() { return "block-dirty-bitmap-enable"; }
        @Override public Json.Obj arguments() { return bitmapArgs(node, name); }
    }

    /** Clears every bit of a bitmap. */
    record BlockDirtyBitmapClear(String node, String name) implements NoResult, TransactionAction {
        public BlockDirtyBitmapClear {
            Objects.requireNonNull(node, "node");
            Objects.requireNonNull(name, "name");
        }
        @Override public String name() { return "block-dirty-bitmap-clear"; }
        @Override public Json.Obj arguments() { return bitmapArgs(node, name); }
    }

    /** Runs {@code actions} atomically (completion-mode individual, QEMU's default): all take effect or none. */
    record Transaction(List<TransactionAction> actions) implements NoResult {
        public Transaction {
            actions = List.copyOf(actions);
            if (actions.isEmpty()) {
                throw new IllegalArgumentException("transaction needs at least one action");
            }
        }
        @Override public String name() { return "transaction"; }
        @Override public Json.Obj arguments() {
            return args("actions", new Json.Arr(actions.stream().map(a -> (Json) a.encode()).toList()));
        }
    }

    /**
     * Starts QEMU's NBD server on a unix socket, which QEMU creates (an existing file there is an error).
     * One server per QEMU; exports are added with {@link BlockExportAdd}.
     *
     * @param maxConnections QAPI {@code max-connections}; empty or 0: unlimited
     */
    record NbdServerStart(Path socketPath, OptionalLong maxConnections) implements NoResult {
        public NbdServerStart {
            Objects.requireNonNull(socketPath, "socketPath");
            Objects.requireNonNull(maxConnections, "maxConnections");
        }
        @Override public String name() { return "nbd-server-start"; }
        @Override public Json.Obj arguments() {
            // SocketAddressLegacy: the unix address sits under "data", unlike the flat SocketAddress
            Json.Obj addr = args2("type", Json.of("unix"), "data", args("path", Json.of(socketPath.toString())));
            Map<String, Json> members = new LinkedHashMap<>();
            members.put("addr", addr);
            maxConnections.ifPresent(n -> members.put("max-connections", Json.of(n)));
            return new Json.Obj(members);
        }
    }

    /** Stops the NBD server and deletes its exports (hard), disconnecting their clients. */
    record NbdServerStop() implements NoResult {
        @Override public String name() { return "nbd-server-stop"; }
    }

    /**
     * Exports a node over the NBD server (QAPI {@code block-export-add} with {@code type: nbd}).
     *
     * @param id the export's id, for {@link BlockExportDel} and {@link QueryBlockExports}
     * @param nodeName the node to export (query-block's {@code inserted.node-name})
     * @param exportName the NBD export name clients ask for (QAPI {@code name})
     * @param writable on 7.2 a writable export of a drive a guest device uses is refused (permission conflict)
     * @param bitmaps bitmaps on the node offered as meta contexts {@code qemu:dirty-bitmap:NAME}; each must be
     *     disabled for a read-only export ("Enabled bitmap 'b1' incompatible with readonly export"), and is
     *     busy until the export is gone
     * @param allocationDepth offers the {@code qemu:allocation-depth} meta context
     * @param description the NBD export description clients may show
     */
    record BlockExportAdd(String id, String nodeName, String exportName, boolean writable, List<String> bitmaps,
                          boolean allocationDepth, Optional<String> description) implements NoResult {
        public BlockExportAdd {
            Objects.requireNonNull(id, "id");
            Objects.requireNonNull(nodeName, "nodeName");
            Objects.requireNonNull(exportName, "exportName");
            bitmaps = List.copyOf(bitmaps);
            Objects.requireNonNull(description, "description");
        }
        @Override public String name() { return "block-export-add"; }
        @Override public Json.Obj arguments() {
            Map<String, Json> members = new LinkedHashMap<>();
            members.put("type", Json.of("nbd"));
            members.put("id", Json.of(id));
            members.put("node-name", Json.of(nodeName));
            members.put("writable", Json.of(writable));
            members.put("name", Json.of(exportName));
            description.ifPresent(d -> members.put("description", Json.of(d)));
            if (!bitmaps.isEmpty()) {
                members.put("bitmaps", new Json.Arr(bitmaps.stream().map(b -> (Json) Json.of(b)).toList()));
            }
            members.put("allocation-depth", Json.of(allocationDepth));
            return new Json.Obj(members);
        }
    }

    /**
     * Deletes an export. The reply only means deletion started: the export is gone once event
     * {@code BLOCK_EXPORT_DELETED} arrives (on 7.2 before the reply when no client is connected); until
     * then {@code query-block-exports} shows it {@code shutting-down}.
     *
     * @param mode empty: QEMU's default {@code safe}, which fails while clients are connected; {@code hard}
     *     disconnects them
     */
    record BlockExportDel(String id, Optional<Mode> mode) implements NoResult {
        /** QAPI {@code BlockExportRemoveMode}. */
        public enum Mode {
            SAFE("safe"), HARD("hard");

            private final String qapiName;

            Mode(String qapiName) {
                this.qapiName = qapiName;
            }

            public String qapiName() {
                return qapiName;
            }
        }

        public BlockExportDel {
            Objects.requireNonNull(id, "id");
            Objects.requireNonNull(mode, "mode");
        }

        public BlockExportDel(String id) {
            this(id, Optional.empty());
        }

        @Override public String name() { return "block-export-del"; }
        @Override public Json.Obj arguments() {
            return mode.map(m -> args2("id", Json.of(id), "mode", Json.of(m.qapiName()))).orElseGet(() -> args("id", Json.of(id)));
        }
    }

    record QueryBlockExports() implements QmpCommand<List<BlockExportInfo>> {
        @Override public String name() { return "query-block-exports"; }
        @Override public List<BlockExportInfo> decode(Json ret) throws JsonException { return BlockExportInfo.decodeList(ret); }
    }

    /**
     * Sets a drive's I/O limits; {@code limits} replaces every limit the drive had (see {@link IoThrottle}).
     * To restore a drive's limits, send back the {@link IoThrottle} that query-block reported.
     */
    record BlockSetIoThrottle(DriveRef drive, IoThrottle limits) implements NoResult {
        public BlockSetIoThrottle {
            Objects.requireNonNull(drive, "drive");
            Objects.requireNonNull(limits, "limits");
        }
        @Override public String name() { return "block_set_io_throttle"; }
        @Override public Json.Obj arguments() {
            Map<String, Json> members = new LinkedHashMap<>();
            members.put(drive.qapiMember(), Json.of(drive.value()));
            limits.encodeInto(members);
            return new Json.Obj(members);
        }
    }

    private static Json.Obj args(String name, Json value) {
        return new Json.Obj(Map.of(name, value));
    }

    private static Json.Obj args2(String name1, Json value1, String name2, Json value2) {
        Map<String, Json> members = new LinkedHashMap<>();
        members.put(name1, value1);
        members.put(name2, value2);
        return new Json.Obj(members);
    }

    /** QAPI {@code BlockDirtyBitmap}: the arguments of the bitmap commands that name one bitmap. */
    private static Json.Obj bitmapArgs(String node, String name) {
        return args2("node", Json.of(node), "name", Json.of(name));
    }
}
