package bigdlrs;

import java.lang.ref.Cleaner;

/** A native object, freed by {@link #close} or, failing that, by a cleaner. */
abstract class Handle implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    private static final class Free implements Runnable {
        private long handle;

        Free(long handle) {
            this.handle = handle;
        }

        @Override
        public synchronized void run() {
            if (handle != 0) {
                Native.free(handle);
                handle = 0;
            }
        }
    }

    private final Free free;
    private final Cleaner.Cleanable cleanable;
    protected final long handle;

    protected Handle(long handle) {
        this.handle = handle;
        this.free = new Free(handle);
        this.cleanable = CLEANER.register(this, free);
    }

    @Override
    public void close() {
        cleanable.clean();
    }
}
