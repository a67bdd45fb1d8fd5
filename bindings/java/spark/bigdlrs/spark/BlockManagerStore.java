package bigdlrs.spark;

import bigdlrs.BlockStore;
import java.nio.ByteBuffer;
import org.apache.spark.SparkEnv;
import org.apache.spark.storage.BlockData;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.BlockManager;
import org.apache.spark.storage.StorageLevel;
import org.apache.spark.storage.TestBlockId;
import org.apache.spark.util.io.ChunkedByteBuffer;
import scala.Option;
import scala.reflect.ClassTag$;

/**
 * Blocks in the executor's BlockManager: Spark's own block transfer carries
 * the all-reduce's messages between executors. The only Spark-version
 * sensitive code of bigdl-rs lives here (checked against Spark 4.x).
 * Blocks are raw bytes (bigdl's header + numbers), stored MEMORY_ONLY and
 * registered with the master so that peers find them.
 */
public final class BlockManagerStore implements BlockStore {
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
    public void put(String id, byte[] bytes) {
        BlockManager bm = bm();
        boolean ok = bm.putBytes(id(id), new ChunkedByteBuffer(ByteBuffer.wrap(bytes)),
                                 StorageLevel.MEMORY_ONLY(), true, bm.putBytes$default$5(),
                                 bm.putBytes$default$6(), ClassTag$.MODULE$.apply(byte[].class));
        if (!ok) {
            throw new IllegalStateException("the BlockManager refused block " + id);
        }
    }

    @Override
    public byte[] get(String id) {
        BlockManager bm = bm();
        BlockId b = id(id);
        Option<BlockData> local = bm.getLocalBytes(b);
        if (local.isDefined()) {
            try {
                ByteBuffer buf = local.get().toByteBuffer();
                byte[] out = new byte[buf.remaining()];
                buf.get(out);
                return out;
            } finally {
                bm.releaseLock(b, Option.empty());
            }
        }
        Option<ChunkedByteBuffer> remote = bm.getRemoteBytes(b);
        return remote.isDefined() ? remote.get().toArray() : null;
    }

    @Override
    public void remove(String id) {
        // The block lives on the sender's executor: the master removes it there.
        bm().master().removeBlock(id(id));
    }
}
