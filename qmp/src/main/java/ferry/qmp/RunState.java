package ferry.qmp;

import java.util.Arrays;

/** QAPI {@code RunState} (qapi/run-state.json, QEMU 7.2). */
public enum RunState {
    DEBUG("debug"), INMIGRATE("inmigrate"), INTERNAL_ERROR("internal-error"), IO_ERROR("io-error"),
    PAUSED("paused"), POSTMIGRATE("postmigrate"), PRELAUNCH("prelaunch"), FINISH_MIGRATE("finish-migrate"),
    RESTORE_VM("restore-vm"), RUNNING("running"), SAVE_VM("save-vm"), SHUTDOWN("shutdown"),
    SUSPENDED("suspended"), WATCHDOG("watchdog"), GUEST_PANICKED("guest-panicked"), COLO("colo");

    private final String qapiName;

    RunState(String qapiName) {
        this.qapiName = qapiName;
    }

    public String qapiName() {
        return qapiName;
    }

    public static RunState ofQapi(String name) throws JsonException {
        return Arrays.stream(values()).filter(s -> s.qapiName.equals(name)).findFirst()
                .orElseThrow(() -> new JsonException("unknown RunState: status=" + name));
    }
}
