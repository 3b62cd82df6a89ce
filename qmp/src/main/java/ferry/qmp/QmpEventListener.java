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
}
