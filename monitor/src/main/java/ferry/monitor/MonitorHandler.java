package ferry.monitor;

/**
 * Runs parsed commands: the VM supervisor implements it. Called on the client's own thread
 * ({@code monitor-client-N}), so commands from several clients may run at once; a call may block
 * (e.g. {@code migrate} without {@code -d}) without holding up other clients.
 */
public interface MonitorHandler {
    /**
     * Runs one command, printing its output to {@code out}.
     *
     * @throws MonitorException whose message is printed to this client as it is; any other exception
     *     is printed as one {@code Error: ...} line and logged, and the monitor goes on
     */
    void execute(MonitorCommand command, MonitorOutput out) throws MonitorException;

    /**
     * Standard input reached end-of-file (the stdio client only; socket clients just go). The
     * supervisor decides what that means, e.g. nothing when run in the background. Default: nothing.
     */
    default void stdioClosed() {}
}
