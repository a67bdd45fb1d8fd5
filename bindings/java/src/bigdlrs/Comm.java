package bigdlrs;

import java.nio.ByteBuffer;

/** One rank of a distributed job over a {@link BlockStore}. */
public final class Comm extends Handle {
    private Comm(long handle) {
        super(handle);
    }

    /** Rank {@code rank} of {@code size} in job {@code job}. */
    public static Comm create(BlockStore store, String job, int rank, int size, long timeoutMs,
                              boolean bf16) {
        return new Comm(Native.commCreate(store, job, rank, size, timeoutMs, bf16));
    }

    /**
     * Rank {@code rank} of job {@code job} over direct TCP connections:
     * {@code listener} is this rank's {@link #listen} handle (consumed),
     * {@code peers} every rank's {@link #address}, gathered by the job.
     */
    public static Comm connect(long listener, String job, int rank, String[] peers,
                               long timeoutMs, boolean bf16) {
        return new Comm(Native.tcpConnect(listener, job, rank, peers, timeoutMs, bf16));
    }

    /** A listening socket on {@code host} for {@link #connect}: a native handle. */
    public static long listen(String host) {
        return Native.tcpListen(host);
    }

    /** The {@code host:port} of a {@link #listen} handle. */
    public static String address(long listener) {
        return Native.tcpAddress(listener);
    }

    /**
     * One synchronous iteration of {@code model} on this rank's part of a global
     * batch; returns the global mean loss (see {@link Native#distriStep}).
     */
    public float step(Model model, Optimizer optimizer, ByteBuffer x, int[] shape,
                      ByteBuffer labels, int globalBatch) {
        return Native.distriStep(model.handle, handle, optimizer.handle, x, shape, labels,
                                 globalBatch);
    }

    /** {@code {iterations, compute seconds, synchronisation seconds}} so far. */
    public double[] stats() {
        return Native.commStats(handle);
    }

    /** This rank's part of a checkpoint (see {@link Native#commSave}). */
    public byte[] save(Optimizer optimizer) {
        return Native.commSave(handle, optimizer.handle);
    }

    /** Restores {@link #save}'s bytes (see {@link Native#commRestore}). */
    public void restore(Optimizer optimizer, byte[] state) {
        Native.commRestore(handle, optimizer.handle, state);
    }

    /** Sums the first {@code n} floats of {@code buf} over the ranks, in place. */
    public void allReduce(ByteBuffer buf, int n) {
        Native.commAllReduce(handle, buf, n);
    }
}
