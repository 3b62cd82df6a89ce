package ferry.qmp;

/** The reply of a command that returns {@code {}}. */
public enum Done { DONE }
