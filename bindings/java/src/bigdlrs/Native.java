package bigdlrs;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The native methods of bigdl-rs (the {@code bigdl-jni} library). Models and
 * optimizers are {@code long} handles; numbers travel in direct
 * {@link ByteBuffer}s in native byte order ({@link #floats}). Every method
 * throws {@link IllegalArgumentException} for a bad argument (unknown or
 * freed handle, null, heap or short buffer) and {@link RuntimeException} for
 * any other failure; none crashes the JVM.
 *
 * <p>The library is loaded from the path in the system property
 * {@code bigdl.native.lib}, else from this jar's resource
 * {@code /bigdlrs/native/libbigdl_jni.so}, else from {@code java.library.path}.
 */
public final class Native {
    private Native() {}

    static {
        load();
    }

    private static void load() {
        String path = System.getProperty("bigdl.native.lib");
        if (path != null) {
            System.load(path);
            return;
        }
        try (InputStream in = Native.class.getResourceAsStream("/bigdlrs/native/libbigdl_jni.so")) {
            if (in != null) {
                Path tmp = Files.createTempFile("libbigdl_jni", ".so");
                tmp.toFile().deleteOnExit();
                Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                System.load(tmp.toAbsolutePath().toString());
                return;
            }
        } catch (IOException e) {
            throw new UnsatisfiedLinkError("cannot extract the bigdl native library: " + e);
        }
        System.loadLibrary("bigdl_jni");
    }

    /** A direct buffer for {@code n} floats in native byte order. */
    public static ByteBuffer floats(int n) {
        return ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder());
    }

    /** A model of the zoo: lenet5, resnet20, resnet32, resnet56, vgg16. */
    public static native long create(String model, int classes, long seed);

    /** A model from a file's bytes: the native format, ONNX or Torch7. */
    public static native long load(byte[] file);

    /** The model in the native format. */
    public static native byte[] save(long model);

    /** Forgets a model or an optimizer (a second free throws). */
    public static native void free(long handle);

    /**
     * Sizes this JVM's native worker pool to {@code n} threads (e.g. an
     * executor's cores) unless {@code BIGDL_NUM_THREADS} is set or the pool
     * already runs, and makes malloc keep freed memory for reuse (layers'
     * buffers then skip fresh page faults; {@code BIGDL_MALLOC=system} opts
     * out); returns the pool's size.
     */
    public static native int threads(int n);

    /** The number of weights. */
    public static native long numParams(long model);

    /**
     * Forward and backward on a batch: {@code x} of {@code shape} (batch first),
     * {@code labels} (0-based classes); writes the batch-mean gradient into
     * {@code grad} ({@link #numParams} floats) and returns the mean loss.
     */
    public static native float trainStep(long model, ByteBuffer x, int[] shape, ByteBuffer labels,
                                         ByteBuffer grad);

    /** Weights {@code offset .. offset + n} into {@code out}. */
    public static native void getWeights(long model, long offset, int n, ByteBuffer out);

    /** Weights {@code offset .. offset + n} from {@code in}. */
    public static native void setWeights(long model, long offset, int n, ByteBuffer in);

    /** The model's output for {@code x} (evaluation mode), flattened. */
    public static native float[] predict(long model, ByteBuffer x, int[] shape);

    /** An optimizer: "sgd" (with momentum) or "adam". */
    public static native long optimizer(String method, float lr, float momentum, float weightDecay);

    /** One optimizer step on {@code n} weights in place. */
    public static native void optimStep(long optimizer, ByteBuffer weights, ByteBuffer grads, int n);

    /**
     * Rank {@code rank} of {@code size} in job {@code job}, exchanging blocks
     * through {@code store} (an object with {@code put(String, int, byte[])},
     * {@code byte[] get(String)}, null when absent, and {@code remove(String)});
     * each exchange fails after {@code timeoutMs}; {@code bf16} halves the bytes.
     */
    public static native long commCreate(Object store, String job, int rank, int size,
                                         long timeoutMs, boolean bf16);

    /** A TCP listening socket on {@code host} (a free port), for {@link #tcpConnect}. */
    public static native long tcpListen(String host);

    /** A listener's {@code host:port}, for the other ranks. */
    public static native String tcpAddress(long listener);

    /**
     * Rank {@code rank} of job {@code job} over TCP: connects to every other
     * rank, {@code peers[q]} being rank {@code q}'s {@link #tcpAddress};
     * consumes (frees) the listener. The collectives as for {@link #commCreate}.
     */
    public static native long tcpConnect(long listener, String job, int rank, String[] peers,
                                         long timeoutMs, boolean bf16);

    /**
     * One synchronous iteration on this rank's part ({@code x}, {@code labels})
     * of a global batch of {@code globalBatch} samples: gradients summed over
     * the ranks (reduce-scatter), the optimizer on this rank's shard of the
     * weights, the weights gathered back into the model. Returns the global
     * batch's mean loss.
     */
    public static native float distriStep(long model, long comm, long optimizer, ByteBuffer x,
                                          int[] shape, ByteBuffer labels, int globalBatch);

    /** Sums {@code n} floats of {@code buf} over the ranks, in place. */
    public static native void commAllReduce(long comm, ByteBuffer buf, int n);

    /**
     * {@code {iterations, compute seconds, synchronisation seconds}} of a
     * communicator so far (see {@link #distriStep}): forward and backward, and
     * the rest of each step (the collectives and the optimizer on the shard).
     */
    public static native double[] commStats(long comm);

    /**
     * This rank's part of a checkpoint after at least one {@link #distriStep}:
     * its shard of the weights (the optimizer's master copy) and its
     * optimizer's state, as bytes for {@link #commRestore}.
     */
    public static native byte[] commSave(long comm, long optimizer);

    /**
     * Restores what {@link #commSave} saved into a fresh communicator and
     * optimizer of the same rank, world size and model.
     */
    public static native void commRestore(long comm, long optimizer, byte[] state);
}
