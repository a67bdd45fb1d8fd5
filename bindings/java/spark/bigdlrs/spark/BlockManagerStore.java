package bigdlrs.spark;

import bigdlrs.BlockStore;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.network.BlockTransferService;
import org.apache.spark.network.buffer.NioManagedBuffer;
import org.apache.spark.storage.BlockData;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.BlockManager;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.StorageLevel;
import org.apache.spark.storage.TestBlockId;
import org.apache.spark.util.io.ChunkedByteBuffer;
import scala.Option;
import scala.concurrent.Await;
import scala.concurrent.Future;
import scala.concurrent.duration.Duration;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;
import scala.runtime.BoxedUnit;
import scala.util.Try;

/**
 * Blocks in the executors' BlockManagers: Spark's own block transfer carries
 * the all-reduce's messages. The only Spark-version sensitive code of bigdl-rs
 * lives here (checked against Spark 4.x).
 *
 * <p>A sender pushes each block straight into its reader's BlockManager
 * (the block transfer service's upload, as Spark's replication does; the put
 * returns once the upload is under way, a failed upload fails a later put or
 * {@link #close}), so a
 * reader polls only its own BlockManager: no lookup at the driver, no fetch
 * round trip. Blocks are raw bytes (bigdl's header + numbers), stored
 * MEMORY_ONLY_SER (as bytes: a deserialized level would make Spark
 * deserialize them). A reader removes a block once read, on a background
 * thread (removal reports to the driver).
 */
public final class BlockManagerStore implements BlockStore, AutoCloseable {
    private static final ClassTag<byte[]> BYTES = ClassTag$.MODULE$.apply(byte[].class);

    private final BlockManagerId[] peers;
    /** Uploads in flight: a put returns as soon as its block is on its way. */
    private final List<Future<BoxedUnit>> pending = new ArrayList<>();
    private final ExecutorService remover = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "bigdl-block-remover");
        t.setDaemon(true);
        return t;
    });

    /**
     * A store for the ranks of a job whose BlockManagers are {@code peers}
     * ({@link #self}'s strings, one per rank, from {@link #rendezvous}).
     */
    public BlockManagerStore(String[] peers) {
        this.peers = new BlockManagerId[peers.length];
        for (int r = 0; r < peers.length; r++) {
            String[] p = peers[r].split(" ");
            if (p.length != 3) {
                throw new IllegalArgumentException("a malformed BlockManager address " + peers[r]);
            }
            this.peers[r] = BlockManagerId.apply(p[0], p[1], Integer.parseInt(p[2]),
                                                 Option.empty());
        }
    }

    /** This executor's BlockManager address, to be shared with all ranks. */
    public static String self() {
        BlockManagerId me = bm().blockManagerId();
        return me.executorId() + " " + me.host() + " " + me.port();
    }

    /**
     * Every rank's {@code mine}, in rank order: each rank leaves its string
     * as a block that its BlockManager reports to the driver, and fetches
     * the others' through the driver's block locations (a few milliseconds;
     * {@code BarrierTaskContext.allGather} waits in steps of a second). The
     * caller removes its own block with {@link #forget} once every rank is
     * known to have read it (at the end of the stage).
     */
    public static String[] rendezvous(String job, int rank, int size, String mine, long timeoutMs) {
        BlockManager bm = bm();
        byte[] bytes = mine.getBytes(StandardCharsets.UTF_8);
        boolean ok = bm.putBytes(id(job + "/hello/" + rank),
                                 new ChunkedByteBuffer(ByteBuffer.wrap(bytes)),
                                 StorageLevel.MEMORY_ONLY_SER(), true,
                                 bm.putBytes$default$5(), bm.putBytes$default$6(), BYTES);
        if (!ok) {
            throw new IllegalStateException("the BlockManager refused the rendezvous block");
        }
        String[] all = new String[size];
        all[rank] = mine;
        long deadline = System.nanoTime() + timeoutMs * 1_000_000;
        long pause = 2;
        for (int q = 0; q < size; q++) {
            while (all[q] == null) {
                TaskContext task = TaskContext.get();
                if (task != null) {
                    task.killTaskIfInterrupted();
                }
                Option<ChunkedByteBuffer> b = bm.getRemoteBytes(id(job + "/hello/" + q));
                if (b.isDefined()) {
                    all[q] = new String(b.get().toArray(), StandardCharsets.UTF_8);
                } else if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("rank " + rank + ": rank " + q + " of job "
                        + job + " did not arrive within " + timeoutMs + " ms");
                } else {
                    try {
                        // Each poll asks the driver: back off to 100 ms.
                        Thread.sleep(pause);
                        pause = Math.min(100, 2 * pause);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException("interrupted", e);
                    }
                }
            }
        }
        return all;
    }

    /** Removes this rank's {@link #rendezvous} block. */
    public static void forget(String job, int rank) {
        bm().removeBlock(id(job + "/hello/" + rank), true);
    }

    private static BlockId id(String id) {
        return new TestBlockId("bigdl-" + id);
    }

    private static BlockManager bm() {
        SparkEnv env = SparkEnv.get();
        if (env == null) {
            throw new IllegalStateException("BlockManagerStore needs a running Spark executor");
        }
        return env.blockManager();
    }

    @Override
    public void put(String id, int to, byte[] bytes) {
        if (to < 0 || to >= peers.length) {
            throw new IllegalArgumentException("rank " + to + " of " + peers.length);
        }
        BlockManager bm = bm();
        BlockManagerId dst = peers[to];
        if (dst.equals(bm.blockManagerId())) {
            boolean ok = bm.putBytes(id(id), new ChunkedByteBuffer(ByteBuffer.wrap(bytes)),
                                     StorageLevel.MEMORY_ONLY_SER(), false,
                                     bm.putBytes$default$5(), bm.putBytes$default$6(), BYTES);
            if (!ok) {
                throw new IllegalStateException("the BlockManager refused block " + id);
            }
            return;
        }
        BlockTransferService ts = bm.blockTransferService();
        pending.add(ts.uploadBlock(dst.host(), dst.port(), dst.executorId(), id(id),
                                   new NioManagedBuffer(ByteBuffer.wrap(bytes)),
                                   StorageLevel.MEMORY_ONLY_SER(), BYTES,
                                   ts.uploadBlock$default$8(), ts.uploadBlock$default$9()));
        settle(false);
    }

    /**
     * Forgets finished uploads and throws if one failed; with {@code wait},
     * first waits (up to a minute) for every upload to finish.
     */
    private void settle(boolean wait) {
        for (Iterator<Future<BoxedUnit>> it = pending.iterator(); it.hasNext();) {
            Future<BoxedUnit> f = it.next();
            if (wait) {
                try {
                    Await.ready(f, Duration.apply(60, TimeUnit.SECONDS));
                } catch (InterruptedException | TimeoutException e) {
                    throw new IllegalStateException("waiting for a block's upload", e);
                }
            }
            Option<Try<BoxedUnit>> done = f.value();
            if (done.isDefined()) {
                if (done.get().isFailure()) {
                    throw new IllegalStateException("pushing a block to a peer failed",
                                                    done.get().failed().get());
                }
                it.remove();
            }
        }
    }

    @Override
    public byte[] get(String id) {
        // A killed task (a failed peer ends the barrier stage) stops waiting.
        TaskContext task = TaskContext.get();
        if (task != null) {
            task.killTaskIfInterrupted();
        }
        BlockManager bm = bm();
        BlockId b = id(id);
        Option<BlockData> local = bm.getLocalBytes(b);
        if (local.isEmpty()) {
            return null;
        }
        try {
            ByteBuffer buf = local.get().toByteBuffer();
            byte[] out = new byte[buf.remaining()];
            buf.get(out);
            return out;
        } finally {
            bm.releaseLock(b, Option.empty());
        }
    }

    @Override
    public void remove(String id) {
        BlockId b = id(id);
        remover.execute(() -> bm().removeBlock(b, true));
    }

    /** Waits for the uploads and removals in flight. */
    @Override
    public void close() {
        try {
            settle(true);
        } finally {
            remover.shutdown();
        }
        try {
            remover.awaitTermination(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
