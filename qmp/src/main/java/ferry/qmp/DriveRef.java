package ferry.qmp;

import java.util.Objects;

/**
 * How a command such as {@code block_set_io_throttle} names a drive: by the BlockBackend's name
 * ({@code device}, the {@code -drive id}) or by the device's qdev id or QOM path ({@code id}).
 * {@link BlockInfo#driveRef()} picks one from a {@code query-block} element.
 */
public sealed interface DriveRef {
    /** QAPI member name that carries the reference. */
    String qapiMember();

    String value();

    /** The BlockBackend's name, i.e. the {@code -drive id}; deprecated in QEMU 7.2's schema, still accepted. */
    record Device(String value) implements DriveRef {
        public Device {
            Objects.requireNonNull(value, "value");
        }
        @Override public String qapiMember() { return "device"; }
    }

    /** The device's id ({@code -device ...,id=ID}) or QOM path, as query-block's {@code qdev} gives it. */
    record Qdev(String value) implements DriveRef {
        public Qdev {
            Objects.requireNonNull(value, "value");
        }
        @Override public String qapiMember() { return "id"; }
    }
}
