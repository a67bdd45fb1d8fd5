package bigdlrs;

import java.nio.ByteBuffer;

/** An optimization method with its state, for one shard of weights. */
public final class Optimizer extends Handle {
    private Optimizer(long handle) {
        super(handle);
    }

    /** SGD with momentum and weight decay. */
    public static Optimizer sgd(float lr, float momentum, float weightDecay) {
        return new Optimizer(Native.optimizer("sgd", lr, momentum, weightDecay));
    }

    /** Adam with weight decay. */
    public static Optimizer adam(float lr, float weightDecay) {
        return new Optimizer(Native.optimizer("adam", lr, 0f, weightDecay));
    }

    /** One step on {@code n} weights in place. */
    public void step(ByteBuffer weights, ByteBuffer grads, int n) {
        Native.optimStep(handle, weights, grads, n);
    }
}
