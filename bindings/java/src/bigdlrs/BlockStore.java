package bigdlrs;

/**
 * Where the ranks of a distributed job leave their messages for each other:
 * named byte blocks. {@link MapStore} keeps them in memory (ranks as threads);
 * {@code bigdlrs.spark.BlockManagerStore} in Spark's BlockManager.
 */
public interface BlockStore {
    /**
     * Stores {@code bytes} under {@code id} for rank {@code to}, the block's
     * only reader (a store may keep it where that rank runs).
     */
    void put(String id, int to, byte[] bytes);

    /** The block {@code id}, or null if it is not (yet) there. */
    byte[] get(String id);

    /** Forgets the block {@code id}. */
    void remove(String id);
}
