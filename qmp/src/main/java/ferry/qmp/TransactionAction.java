package ferry.qmp;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * An action of a QMP {@code transaction} (QAPI {@code TransactionAction}, qapi/transaction.json):
 * {@code {"type": NAME, "data": ARGUMENTS}}. For the actions Ferry uses, the action's type and data are
 * exactly the name and arguments of the standalone command, so the command records themselves are the
 * actions: {@code new Transaction(List.of(new BlockDirtyBitmapAdd(node, "b1", ...), new BlockDirtyBitmapDisable(node, "b0")))}.
 *
 * <p>QEMU runs the actions atomically: all or none take effect, with guest I/O drained around them, so no
 * write falls between two bitmaps swapped in one transaction.
 */
public sealed interface TransactionAction permits QmpCommand.BlockDirtyBitmapAdd, QmpCommand.BlockDirtyBitmapRemove,
        QmpCommand.BlockDirtyBitmapClear, QmpCommand.BlockDirtyBitmapEnable, QmpCommand.BlockDirtyBitmapDisable {

    /** The action's {@code type}, e.g. {@code block-dirty-bitmap-add}. */
    String name();

    /** The action's {@code data}. */
    Json.Obj arguments();

    /** The action as a transaction carries it. */
    default Json.Obj encode() {
        Map<String, Json> members = new LinkedHashMap<>();
        members.put("type", Json.of(name()));
        members.put("data", arguments());
        return new Json.Obj(members);
    }
}
