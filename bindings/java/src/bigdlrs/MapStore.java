package bigdlrs;

import java.util.concurrent.ConcurrentHashMap;

/** Blocks in a concurrent map: ranks as threads of one JVM. */
public final class MapStore implements BlockStore {
    private final ConcurrentHashMap<String, byte[]> blocks = new ConcurrentHashMap<>();

    @Override
    public void put(String id, int to, byte[] bytes) {
        blocks.put(id, bytes);
    }

    @Override
    public byte[] get(String id) {
        return blocks.get(id);
    }

    @Override
    public void remove(String id) {
        blocks.remove(id);
    }

    /** How many blocks are held (a finished step leaves none). */
    public int size() {
        return blocks.size();
    }
}
