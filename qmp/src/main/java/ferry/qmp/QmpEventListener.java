package ferry.qmp;

/**
 * Receives QMP events, on the client's {@code qmp-reader} thread, in the order QEMU sent them.
 * A listener must return quickly and must not call {@link QmpClient#execute} (the reply would
 * arrive on the thread that is waiting for it). A listener that throws is a bug: the client
 * closes the connection and fails every call with it as the cause.
 */
@FunctionalInterface
public interface QmpEventListener {
    void onEvent(QmpEvent event);

    /**
     * The same, with the whole message as QEMU sent it ({@code event}, {@code data}, {@code timestamp}),
     * for a listener that passes events on unchanged (Ferry's QMP server). By default the typed event only.
     */
    default void onEvent(QmpEvent event, Json.Obj message) {
        onEvent(event);
    }
}
