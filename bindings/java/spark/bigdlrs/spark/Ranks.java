package bigdlrs.spark;

import bigdlrs.Comm;
import bigdlrs.Native;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.SparkEnv;

/**
 * The communicator of a barrier task: rank = partition, over one of two
 * transports.
 * <ul>
 * <li>{@code "tcp"}: direct connections between the tasks (each listens on
 * its executor's host; the addresses are shared once per stage through the
 * BlockManagers, {@link BlockManagerStore#rendezvous}). No driver on the
 * data path. Not
 * covered by {@code spark.authenticate}: the handshake only checks a hash of
 * the job's random name.</li>
 * <li>{@code "blockmanager"}: the executors' BlockManagers
 * ({@link BlockManagerStore}), under Spark's authentication and
 * encryption, at the cost of a driver round trip per message.</li>
 * <li>{@code "auto"}: {@code blockmanager} when {@code spark.authenticate}
 * is on, else {@code tcp}.</li>
 * </ul>
 */
public final class Ranks implements AutoCloseable {
    /** This rank's communicator. */
    public final Comm comm;
    private final BlockManagerStore store;
    private final String job;
    private final int rank;

    private Ranks(Comm comm, BlockManagerStore store, String job, int rank) {
        this.comm = comm;
        this.store = store;
        this.job = job;
        this.rank = rank;
    }

    /** Checks a transport's name; returns it resolved for this Spark configuration. */
    static String resolve(String transport, boolean authenticate) {
        switch (transport) {
            case "tcp":
            case "blockmanager":
                return transport;
            case "auto":
                return authenticate ? "blockmanager" : "tcp";
            default:
                throw new IllegalArgumentException("transport " + transport
                    + ": expected tcp, blockmanager or auto");
        }
    }

    /** Opens rank {@code ctx.partitionId()} of job {@code job} (all tasks call it). */
    public static Ranks open(BarrierTaskContext ctx, String job, String transport, long timeoutMs,
                             boolean bf16) {
        SparkEnv env = SparkEnv.get();
        boolean auth = env.conf().getBoolean("spark.authenticate", false);
        int rank = ctx.partitionId();
        int size = ctx.getTaskInfos().length;
        if (resolve(transport, auth).equals("blockmanager")) {
            String[] peers = BlockManagerStore.rendezvous(job, rank, size, BlockManagerStore.self(),
                                                          timeoutMs);
            BlockManagerStore store = new BlockManagerStore(peers);
            try {
                return new Ranks(Comm.create(store, job, rank, size, timeoutMs, bf16), store, job,
                                 rank);
            } catch (RuntimeException e) {
                store.close();
                BlockManagerStore.forget(job, rank);
                throw e;
            }
        }
        long listener = Comm.listen(env.blockManager().blockManagerId().host());
        try {
            String[] peers = BlockManagerStore.rendezvous(job, rank, size, Comm.address(listener),
                                                          timeoutMs);
            long l = listener;
            listener = 0; // connect consumes it, even when it fails
            return new Ranks(Comm.connect(l, job, rank, peers, timeoutMs, bf16), null, job, rank);
        } catch (RuntimeException e) {
            BlockManagerStore.forget(job, rank);
            throw e;
        } finally {
            if (listener != 0) {
                Native.free(listener);
            }
        }
    }

    /** Closes the communicator and removes this rank's rendezvous block. */
    @Override
    public void close() {
        try {
            comm.close();
        } finally {
            try {
                if (store != null) {
                    store.close();
                }
            } finally {
                BlockManagerStore.forget(job, rank);
            }
        }
    }
}
