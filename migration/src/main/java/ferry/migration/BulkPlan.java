package ferry.migration;

import ferry.dirty.DirtyBitmap;
import ferry.dirty.DirtySnapshot;
import ferry.image.BlockImage;
import ferry.image.Extent;
import ferry.image.ImageException;
import java.util.List;

/**
 * Which granules the bulk pass reads and sends, and which it sends as zeroes, from the image's
 * allocation map. Unallocated ranges are never read.
 *
 * <table>
 *   <caption>What each extent type becomes</caption>
 *   <tr><th>extent</th><th>full copy</th><th>incremental ({@code -i})</th></tr>
 *   <tr><td>DATA</td><td>read, send</td><td>read, send</td></tr>
 *   <tr><td>BACKING</td><td>read, send (the merged view)</td><td>skip: the destination has the base</td></tr>
 *   <tr><td>ZERO</td><td>zero frame, or skip on a fresh destination</td><td>zero frame (hides the base)</td></tr>
 *   <tr><td>HOLE</td><td>zero frame, or skip on a fresh destination</td><td>same as full copy</td></tr>
 * </table>
 * Data extents round outward to whole granules; zero extents cover only the granules they fill, and
 * their partial edge granules are read as data, so that no granule is ever half-described.
 */
record BulkPlan(DirtySnapshot data, DirtySnapshot zero, long dataBytes) {

    static BulkPlan of(BlockImage image, int granuleSize, boolean incremental, boolean destinationFresh) throws ImageException {
        long size = image.size();
        DirtyBitmap data = new DirtyBitmap(size, granuleSize);
        DirtyBitmap zero = new DirtyBitmap(size, granuleSize);
        long offset = 0;
        while (offset < size) {
            List<Extent> extents = image.extents(offset, size - offset);
            if (extents.isEmpty()) {
                throw new ImageException(ImageException.Kind.IO, "allocation map ended early: image=" + image.describe()
                        + " offset=" + offset);
            }
            for (Extent extent : extents) {
                classify(extent, granuleSize, incremental, destinationFresh, data, zero);
                offset = extent.end();
            }
        }
        DirtySnapshot dataSet = data.snapshotAndClear();
        // A granule both "zero" (inside a zero extent) and "data" (edge of a data extent) is data.
        DirtyBitmap zeroOnly = new DirtyBitmap(size, granuleSize);
        DirtySnapshot zeroSet = zero.snapshotAndClear();
        for (long g = zeroSet.nextDirty(0); g >= 0; g = zeroSet.nextDirty(g + 1)) {
            if (!dataSet.isDirty(g)) {
                zeroOnly.markGranules(g, g + 1);
            }
        }
        return new BulkPlan(dataSet, zeroOnly.snapshotAndClear(), dataSet.bytes());
    }

    private static void classify(Extent extent, int granuleSize, boolean incremental, boolean fresh,
                                 DirtyBitmap data, DirtyBitmap zero) {
        long firstCovering = extent.offset() / granuleSize;
        long endCovering = (extent.end() + granuleSize - 1) / granuleSize;
        boolean readIt = switch (extent.type()) {
            case DATA -> true;
            case BACKING -> !incremental;
            case ZERO -> false;
            case HOLE -> false;
        };
        boolean zeroIt = switch (extent.type()) {
            case DATA, BACKING -> false;
            case ZERO -> incremental || !fresh;
            case HOLE -> !fresh;
        };
        if (readIt) {
            data.markGranules(firstCovering, endCovering);
        } else if (zeroIt) {
            long firstInside = (extent.offset() + granuleSize - 1) / granuleSize;
            long endInside = extent.end() == data.size() ? endCovering : extent.end() / granuleSize;
            if (firstInside < endInside) {
                zero.markGranules(firstInside, endInside);
            }
            if (firstCovering < firstInside) {
                data.markGranules(firstCovering, firstInside);
            }
            if (endInside < endCovering && endInside >= firstInside) {
                data.markGranules(endInside, endCovering);
            }
        }
    }
}
