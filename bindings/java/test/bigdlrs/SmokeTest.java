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
        System.out.println("bigdl java smoke test: ok");
    }
}
