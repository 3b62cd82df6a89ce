package ferry.qmp;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One element of the {@code query-block-exports} reply (QAPI {@code BlockExportInfo}, qapi/block-export.json).
 *
 * @param shuttingDown true after {@code block-export-del} while clients still hold the export open
 */
public record BlockExportInfo(String id, Type type, String nodeName, boolean shuttingDown) {

    /** QAPI {@code BlockExportType} (QEMU 7.2). */
    public enum Type {
        NBD("nbd"), VHOST_USER_BLK("vhost-user-blk"), FUSE("fuse"), VDUSE_BLK("vduse-blk");

        private final String qapiName;

        Type(String qapiName) {
            this.qapiName = qapiName;
        }

        public String qapiName() {
            return qapiName;
        }

        public static Type ofQapi(String name) throws JsonException {
            return Arrays.stream(values()).filter(t -> t.qapiName.equals(name)).findFirst()
                    .orElseThrow(() -> new JsonException("unknown BlockExportType: type=" + name));
        }
    }

    public BlockExportInfo {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(nodeName, "nodeName");
    }

    static List<BlockExportInfo> decodeList(Json ret) throws JsonException {
        List<BlockExportInfo> list = new ArrayList<>();
        for (Json element : ret.asArray()) {
            Json.Obj e = element.asObject();
            list.add(new BlockExportInfo(e.string("id"), Type.ofQapi(e.string("type")), e.string("node-name"),
                    e.bool("shutting-down")));
        }
        return List.copyOf(list);
    }
}
