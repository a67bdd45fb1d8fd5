package bigdlrs;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Random;

/** The Java API end to end without Spark (run by bindings/jni/tests/java.rs). */
public final class SmokeTest {
    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private interface Body {
        void run();
    }

    private static void throwsArg(Body b, String what) {
        try {
            b.run();
        } catch (IllegalArgumentException e) {
            check(e.getMessage().startsWith("bigdl: "), what + ": " + e.getMessage());
            return;
        }
        throw new AssertionError(what + ": no IllegalArgumentException");
    }

    public static void main(String[] args) {
        Random rng = new Random(3);
        int n = 16;
        int[] shape = {n, 1, 28, 28};
        ByteBuffer x = Native.floats(n * 28 * 28);
        ByteBuffer labels = Native.floats(n);
        for (int i = 0; i < n * 28 * 28; i++) {
            x.putFloat(4 * i, (float) rng.nextGaussian());
        }
        for (int i = 0; i < n; i++) {
            labels.putFloat(4 * i, i % 10);
        }
        try (Model m = Model.zoo("lenet5", 10, 1); Optimizer sgd = Optimizer.sgd(0.05f, 0.9f, 0f)) {
            int p = (int) m.numParams();
            check(p > 1000, "parameters: " + p);
            ByteBuffer w = Native.floats(p);
            ByteBuffer g = Native.floats(p);
            m.getWeights(0, p, w);
            float first = Float.NaN;
            float last = Float.NaN;
            for (int it = 0; it < 30; it++) {
                float loss = m.trainStep(x, shape, labels, g);
                check(Float.isFinite(loss), "loss " + loss);
                if (it == 0) {
                    first = loss;
                }
                last = loss;
                // The optimizer updates the weights the model then takes.
                sgd.step(w, g, p);
                m.setWeights(0, p, w);
            }
            check(last < 0.5f * first, "the loss fell from " + first + " to " + last);
            float[] y = m.predict(x, shape);
            check(y.length == n * 10, "predict length " + y.length);
            // Save, load: the same outputs.
            byte[] file = m.save();
            try (Model back = Model.load(file)) {
                check(Arrays.equals(back.predict(x, shape), y), "a saved model predicts the same");
            }
            // Bad input: exceptions, not crashes.
            throwsArg(() -> m.trainStep(x, shape, labels, Native.floats(10)), "short grad buffer");
            throwsArg(() -> m.trainStep(ByteBuffer.allocate(n * 28 * 28 * 4), shape, labels, g),
                      "heap buffer");
            throwsArg(() -> m.trainStep(null, shape, labels, g), "null buffer");
            throwsArg(() -> m.trainStep(x, shape, labels, x), "the same buffer twice");
            throwsArg(() -> m.getWeights(p - 1, 2, w), "weights out of range");
            throwsArg(() -> m.predict(x, new int[] {n, 3, 28, 28}), "x shorter than its shape");
            throwsArg(() -> Native.numParams(123456789L), "unknown handle");
            throwsArg(() -> Model.zoo("nope", 10, 1), "unknown model");
            throwsArg(() -> Model.load(new byte[] {1, 2, 3}), "garbage model file");
            throwsArg(() -> Native.optimStep(0L, w, g, 1), "handle 0");
            throwsArg(() -> Native.optimStep(1L, w, g, 1), "a model handle as an optimizer");
        }
        // A freed handle is gone: using or freeing it again throws.
        long h = Native.create("lenet5", 10, 1);
        Native.free(h);
        throwsArg(() -> Native.numParams(h), "freed handle");
        throwsArg(() -> Native.free(h), "double free");
        // A wrong shape fails inside the model: RuntimeException.
        try (Model m = Model.zoo("lenet5", 10, 1)) {
            try {
                m.predict(Native.floats(2 * 3 * 5 * 5), new int[] {2, 3, 5, 5});
                throw new AssertionError("a wrong input shape was accepted");
            } catch (RuntimeException e) {
                check(e.getMessage().startsWith("bigdl: "), e.getMessage());
            }
        }
        distributed(x, labels, n);
        System.out.println("bigdl java smoke test: ok");
    }

    /** A communicator for rank {@code rank}, made inside that rank's thread. */
    interface Opener {
        Comm open(int rank);
    }

    /** Two TCP listeners on 127.0.0.1 and an opener connecting them as job {@code job}. */
    private static Opener tcp(String job) {
        long[] ls = {Comm.listen("127.0.0.1"), Comm.listen("127.0.0.1")};
        String[] peers = {Comm.address(ls[0]), Comm.address(ls[1])};
        return rank -> Comm.connect(ls[rank], job, rank, peers, 10_000, false);
    }

    /**
     * Ten iterations of two ranks as threads, each rank's communicator from
     * {@code first}; with {@code second}, the last five run on fresh
     * communicators and optimizers restored from the first ones' saved state.
     * Returns each rank's final weights, then each rank's losses.
     */
    private static float[][][] twoRanks(ByteBuffer x, ByteBuffer labels, int n, Opener first,
                                        Opener second) {
        int half = n / 2;
        float[][] weights = new float[2][];
        float[][] losses = new float[2][10];
        Thread[] ranks = new Thread[2];
        Throwable[] failure = new Throwable[1];
        for (int r = 0; r < 2; r++) {
            final int rank = r;
            ranks[r] = new Thread(() -> {
                try (Model m = Model.zoo("lenet5", 10, 1)) {
                    ByteBuffer xs = x.duplicate().order(x.order());
                    xs.position(rank * half * 28 * 28 * 4).limit((rank + 1) * half * 28 * 28 * 4);
                    ByteBuffer ls = labels.duplicate().order(labels.order());
                    ls.position(rank * half * 4).limit((rank + 1) * half * 4);
                    ByteBuffer myX = Native.floats(half * 28 * 28).put(xs);
                    ByteBuffer myL = Native.floats(half).put(ls);
                    int[] shape = {half, 1, 28, 28};
                    byte[] state = null;
                    try (Optimizer o = Optimizer.sgd(0.05f, 0.9f, 0f); Comm c = first.open(rank)) {
                        for (int it = 0; it < (second == null ? 10 : 5); it++) {
                            losses[rank][it] = c.step(m, o, myX, shape, myL, n);
                        }
                        state = c.save(o);
                    }
                    if (second != null) {
                        try (Optimizer o = Optimizer.sgd(0.05f, 0.9f, 0f);
                             Comm c = second.open(rank)) {
                            c.restore(o, state);
                            for (int it = 5; it < 10; it++) {
                                losses[rank][it] = c.step(m, o, myX, shape, myL, n);
                            }
                        }
                    }
                    int p = (int) m.numParams();
                    ByteBuffer w = Native.floats(p);
                    m.getWeights(0, p, w);
                    float[] v = new float[p];
                    w.asFloatBuffer().get(v);
                    weights[rank] = v;
                } catch (Throwable t) {
                    failure[0] = t;
                }
            });
            ranks[r].start();
        }
        for (Thread t : ranks) {
            try {
                t.join();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
        }
        if (failure[0] != null) {
            throw new RuntimeException("a rank failed", failure[0]);
        }
        return new float[][][] {weights, losses};
    }

    /**
     * Two ranks as threads over a MapStore train like one model; over TCP,
     * saved and restored half-way, bitwise like over the MapStore.
     */
    private static void distributed(ByteBuffer x, ByteBuffer labels, int n) throws RuntimeException {
        MapStore store = new MapStore();
        float[][][] viaStore = twoRanks(x, labels, n,
                                        rank -> Comm.create(store, "job", rank, 2, 10_000, false),
                                        null);
        float[][] weights = viaStore[0];
        float[][] losses = viaStore[1];
        float[][][] viaTcp = twoRanks(x, labels, n, tcp("job-a"), tcp("job-b"));
        check(Arrays.equals(viaTcp[0][0], weights[0]) && Arrays.equals(viaTcp[0][1], weights[1]),
              "TCP with a save and restore half-way: the same weights as the block store");
        check(Arrays.equals(viaTcp[1][0], losses[0]), "TCP: the same losses");
        check(Arrays.equals(weights[0], weights[1]), "the ranks hold the same weights");
        check(Arrays.equals(losses[0], losses[1]), "the ranks report the same global loss");
        // One process on the whole batch takes the same steps (up to the
        // order of the gradient sums).
        try (Model m = Model.zoo("lenet5", 10, 1); Optimizer o = Optimizer.sgd(0.05f, 0.9f, 0f)) {
            int p = (int) m.numParams();
            ByteBuffer w = Native.floats(p);
            ByteBuffer g = Native.floats(p);
            m.getWeights(0, p, w);
            for (int it = 0; it < 10; it++) {
                float loss = m.trainStep(x, new int[] {n, 1, 28, 28}, labels, g);
                check(Math.abs(loss - losses[0][it]) < 1e-4f * Math.abs(loss),
                      "iteration " + it + ": " + loss + " alone, " + losses[0][it] + " distributed");
                o.step(w, g, p);
                m.setWeights(0, p, w);
            }
        }
        check(losses[0][9] < losses[0][0], "distributed loss fell: " + Arrays.toString(losses[0]));
        check(store.size() == 0, store.size() + " blocks left behind");
    }
}
