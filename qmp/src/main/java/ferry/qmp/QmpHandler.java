package ferry.qmp;

/**
 * Runs the commands of Ferry's {@link QmpServer}: the VM supervisor implements it (answering the
 * migration commands itself and forwarding the rest to QEMU). Called on the client's own thread
 * ({@code qmp-server-client-N}), one command at a time per client; several clients may call at once.
 */
public interface QmpHandler {
    /** The version the greeting announces: QEMU's, as Ferry's own QMP connection reported it. */
    VersionInfo version();

    /**
     * Runs one decoded command.
     *
     * @return the reply's {@code return} value
     * @throws QmpError the reply's {@code error}; any other exception becomes a {@code GenericError} naming it
     */
    Json execute(QmpRequest request) throws QmpError;
}
