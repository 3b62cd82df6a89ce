package ferry.qmp;

/** The reply of {@code query-status}. */
public record StatusInfo(boolean running, RunState status) {
    static StatusInfo decode(Json.Obj ret) throws JsonException {
        return new StatusInfo(ret.bool("running"), RunState.ofQapi(ret.string("status")));
    }
}
