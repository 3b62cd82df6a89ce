package ferry.migration;

import ferry.migration.wire.Frame;

/** What the source's migration thread waits for: frames from the destination, QEMU, the user. */
sealed interface SourceEvent {
    record PeerFrame(Frame frame) implements SourceEvent { }

    record RamStatusChanged(ferry.migration.RamStatus status) implements SourceEvent { }

    record CancelRequested(String reason) implements SourceEvent { }

    record Failure(Phase phase, Exception cause) implements SourceEvent { }
}
