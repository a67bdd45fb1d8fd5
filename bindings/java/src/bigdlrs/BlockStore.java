package bigdlrs;

/**
 * Where the ranks of a distributed job leave their messages for each other:
 * named byte blocks. {@link MapStore} keeps them in memory (ranks as threads);
 * {@code bigdlrs.spark.BlockManagerStore} in Spark's BlockManager.
 */
public interface BlockStore {
    /** Stores {@code bytes} under {@code id}. */
    void put(String id, byte[] bytes);

    /** The block {@code id}, or null if it is not (yet) there. */
    byte[] get(String id);

    /** Forgets the block {@code id}. */
    void remove(String id);
}
