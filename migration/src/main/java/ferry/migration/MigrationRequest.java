package ferry.migration;

/**
 * What the user asked for with {@code migrate [-d] [-b] [-i] tcp:HOST:PORT}.
 *
 * @param copyDisks {@code -b}: copy the disks; without it the disks are shared and only RAM moves
 * @param incremental {@code -i}: copy only what lies on top of the base image both hosts hold
 */
public record MigrationRequest(String host, int port, boolean copyDisks, boolean incremental) {
    public MigrationRequest {
        if (port <= 0 || port > 65535) {
            throw new IllegalArgumentException("port out of range: " + port);
        }
        if (incremental && !copyDisks) {
            throw new IllegalArgumentException("-i needs -b: incremental migration copies disks");
        }
    }
}
