package ferry.image.qcow2;

import ferry.image.ImageException;
import java.util.ArrayList;
import java.util.List;

/**
 * What an allocating write does to each guest cluster it touches, decided under the write lock before
 * anything changes: write in place (standard cluster, refcount one), reuse a preallocated zero cluster,
 * or move to a newly allocated host cluster (host 0 until {@link #setHost}), dropping the reference the
 * old entry held (a compressed cluster, or a cluster shared with a snapshot) once the new entry is durable.
 */
final class WritePlan {
    private final long[] clusters;
    private final long[] entries;
    private final L2Entry.Kind[] kinds;
    private final long[] hosts;
    private final boolean[] inPlace;
    private final List<long[]> releases = new ArrayList<>();

    private WritePlan(int count) {
        clusters = new long[count];
        entries = new long[count];
        kinds = new L2Entry.Kind[count];
        hosts = new long[count];
        inPlace = new boolean[count];
    }

    static WritePlan of(Qcow2Image image, long offset, long length) throws ImageException {
        int bits = image.clusterBits();
        long first = offset >>> bits;
        long last = (offset + length - 1) >>> bits;
        WritePlan plan = new WritePlan((int) (last - first + 1));
        for (int i = 0; i < plan.clusters.length; i++) {
            long cluster = first + i;
            long entry = image.map().entry(cluster);
            L2Entry.Kind kind = L2Entry.kind(entry, image.zeroFlag());
            plan.clusters[i] = cluster;
            plan.entries[i] = entry;
            plan.kinds[i] = kind;
            boolean copied = L2Entry.copied(entry);
            if (kind == L2Entry.Kind.NORMAL && copied) {
                plan.hosts[i] = L2Entry.hostOffset(entry);
                plan.inPlace[i] = true;
            } else if (kind == L2Entry.Kind.ZERO_ALLOCATED && copied) {
                plan.hosts[i] = L2Entry.hostOffset(entry); // preallocated: written whole, then the flag goes
            } else {
                long[] ref = image.reference(entry);
                if (ref != null) {
                    plan.releases.add(ref);
                }
            }
        }
        return plan;
    }

    int count() {
        return clusters.length;
    }

    long cluster(int i) {
        return clusters[i];
    }

    long entry(int i) {
        return entries[i];
    }

    L2Entry.Kind kind(int i) {
        return kinds[i];
    }

    /** The host cluster the data goes to; 0 while not yet allocated. */
    long host(int i) {
        return hosts[i];
    }

    void setHost(int i, long host) {
        hosts[i] = host;
    }

    boolean inPlace(int i) {
        return inPlace[i];
    }

    List<long[]> releases() {
        return releases;
    }
}
