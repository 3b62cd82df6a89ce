package ferry.image;

/**
 * A run of bytes of one allocation state, as {@link BlockImage#extents} reports it.
 *
 * <ul>
 *   <li>{@link Type#DATA}: allocated in this image; must be read.</li>
 *   <li>{@link Type#ZERO}: allocated (or preallocated) but known to read as zeroes.</li>
 *   <li>{@link Type#HOLE}: not allocated anywhere in the chain; reads as zeroes.</li>
 *   <li>{@link Type#BACKING}: not allocated in this layer; reads come from {@link BlockImage#backing()}.
 *       Only layered formats (qcow2 with a backing file) report it.</li>
 * </ul>
 */
public record Extent(long offset, long length, Type type) {
    public enum Type { DATA, ZERO, HOLE, BACKING }

    public Extent {
        if (offset < 0 || length <= 0) {
            throw new IllegalArgumentException("bad extent: offset=" + offset + " length=" + length);
        }
    }

    public long end() {
        return offset + length;
    }

    /** True where reading the range returns only zeroes without touching the backing chain. */
    public boolean readsAsZero() {
        return type == Type.ZERO || type == Type.HOLE;
    }
}
