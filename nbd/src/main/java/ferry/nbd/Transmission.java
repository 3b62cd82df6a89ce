package ferry.nbd;

import static ferry.nbd.NbdWire.*;

import ferry.linux.Threads;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Semaphore;

/**
 * The transmission phase of one connection: a reader loop that decodes and validates each request,
 * takes an idle {@link Slot}, reads a WRITE's payload into it and queues the request; {@link #WORKERS}
 * workers execute queued requests concurrently and send replies through the {@link Responder}.
 *
 * <p>Design notes: queue depth above 1 (qemu-img bench -d 16, nbdcopy's 64 requests in flight) then
 * overlaps image I/O and socket writes. Memory is bounded per connection: at most {@link #WORKERS}
 * slots, and at most {@link #MAX_BYTES_IN_FLIGHT} payload bytes (a semaphore the reader acquires
 * before it takes a slot). When every slot is busy the reader stops reading: back-pressure through
 * the socket. At queue depth 1 (no slot busy, no further request buffered) the reader runs the request
 * itself instead of waking a worker. Threads: the reader is the connection's thread; workers are named
 * {@code nbd-conn-N-io-M}, started in {@link #run} and joined before it returns.
 */
final class Transmission {
    private static final System.Logger LOG = System.getLogger(Transmission.class.getName());
    static final int WORKERS = 16;
    static final int MAX_BYTES_IN_FLIGHT = 64 << 20;

    private record Job(NbdRequest request, Slot slot, int bytes) {}

    private static final Job STOP = new Job(null, null, 0);

    private final GatheringByteChannel channel;   // the socket, or the TLS channel over it
    private final WireIn in;
    private final Handshake.Negotiated negotiated;
    private final String name;
    private final String peer;
    private final Responder responder;
    private final RequestDecoder decoder;
    private final BlockingQueue<Slot> idle = new ArrayBlockingQueue<>(WORKERS);
    private final BlockingQueue<Job> jobs = new ArrayBlockingQueue<>(WORKERS + 1);
    private final Semaphore bytes = new Semaphore(MAX_BYTES_IN_FLIGHT);
    private final ByteBuffer scratch = ByteBuffer.allocateDirect(64);

    Transmission(GatheringByteChannel channel, WireIn in, Handshake.Negotiated negotiated, String name, String peer) {
        this.channel = channel;
        this.in = in;
        this.negotiated = negotiated;
        this.name = name;
        this.peer = peer;
        NbdExport export = negotiated.export();
        this.responder = new Responder(channel, export.image(), negotiated.structured(), peer);
        this.decoder = new RequestDecoder(export.image().size(), export.readOnly(), negotiated.structured(), negotiated.blockStatus());
    }

    /** Serves requests until DISC, end of stream or a framing error; returns why it ended. */
    String run() throws IOException, InterruptedException {
        List<Thread> workers = new ArrayList<>();
        List<Slot> slots = new ArrayList<>();
        for (int i = 1; i <= WORKERS; i++) {
            Slot slot = new Slot();
            slots.add(slot);
            idle.add(slot);
            workers.add(Threads.unstartedVirtual(name + "-io-" + i, this::work));
        }
        workers.forEach(Thread::start);
        try {
            return read();
        } finally {
            // Workers finish what was queued (a DISC waits for earlier requests, as the spec asks).
            for (int i = 0; i < WORKERS; i++) {
                jobs.put(STOP);
            }
            for (Thread worker : workers) {
                worker.join();
            }
            slots.forEach(Slot::free);
        }
    }

    private String read() throws IOException, InterruptedException {
        while (true) {
            ByteBuffer b = in.need(REQUEST_LENGTH, true);
            if (b == null) {
                return "client closed the connection";
            }
            RequestHeader h = decodeRequest(b);
            switch (decoder.decode(h)) {
                case RequestDecoder.Unframeable u -> {
                    return u.reason();
                }
                case RequestDecoder.Rejected r -> {
                    LOG.log(Level.DEBUG, () -> "request rejected: peer=" + peer + " " + r.reason());
                    in.skip(r.payloadLength());
                    responder.replyError(r.cookie(), r.type(), r.error(), scratch);
                }
                case RequestDecoder.Valid v -> {
                    if (v.request() instanceof NbdRequest.Disconnect) {
                        return "client sent DISC";
                    }
                    submit(v.request());
                }
            }
        }
    }

    /**
     * Queues a request for a worker, or runs it on the reader when nothing else is in flight and no
     * further request is already buffered (queue depth 1): that saves the hand-off to a worker and its
     * wake-up, which dominate a 4 KiB request's latency. A request that arrives meanwhile waits in the
     * socket; it would have waited for a worker's reply at queue depth 1 anyway.
     */
    private void submit(NbdRequest request) throws IOException, InterruptedException {
        int length = switch (request) {
            case NbdRequest.Read r -> r.length();
            case NbdRequest.Write w -> w.length();
            case NbdRequest.Flush f -> 0;
            case NbdRequest.Trim t -> 0;
            case NbdRequest.WriteZeroes z -> 0;
            case NbdRequest.BlockStatus s -> 0;
            case NbdRequest.Disconnect d -> 0;
        };
        boolean inline = idle.size() == WORKERS && !in.buffered(REQUEST_LENGTH + payloadOf(request));
        bytes.acquire(length);
        Slot slot = idle.take();
        if (request instanceof NbdRequest.Write w) {
            in.readFully(slot.data(w.length()));
        }
        if (!inline) {
            jobs.put(new Job(request, slot, length));
            return;
        }
        try {
            responder.execute(request, slot);
        } finally {
            slot.release();
            idle.add(slot);
            bytes.release(length);
        }
    }

    private static int payloadOf(NbdRequest request) {
        return request instanceof NbdRequest.Write w ? w.length() : 0;
    }

    private void work() {
        try {
            for (Job job = jobs.take(); job != STOP; job = jobs.take()) {
                try {
                    responder.execute(job.request(), job.slot());
                } finally {
                    job.slot().release();
                    idle.add(job.slot());
                    bytes.release(job.bytes());
                }
            }
        } catch (IOException e) {
            // The reply could not be sent: the client is gone. Closing the channel ends the reader.
            LOG.log(Level.DEBUG, () -> "reply failed: peer=" + peer + ": " + e.getMessage());
            closeQuietly();
            drain();
        } catch (Throwable t) {
            LOG.log(Level.ERROR, "worker failed: peer=" + peer + " export=" + negotiated.export().name(), t);
            closeQuietly();
            drain();
        }
    }

    /** After a failure, keeps taking jobs (freeing their slots) until STOP so the reader never blocks. */
    private void drain() {
        try {
            for (Job job = jobs.take(); job != STOP; job = jobs.take()) {
                idle.add(job.slot());
                bytes.release(job.bytes());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void closeQuietly() {
        try {
            channel.close();
        } catch (IOException e) {
            LOG.log(Level.DEBUG, () -> "close failed: peer=" + peer + ": " + e.getMessage());
        }
    }
}
