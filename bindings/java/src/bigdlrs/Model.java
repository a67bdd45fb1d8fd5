package bigdlrs;

import java.nio.ByteBuffer;

/** A bigdl-rs model. */
public final class Model extends Handle {
    private Model(long handle) {
        super(handle);
    }

    /** A model of the zoo (lenet5, resnet20, resnet32, resnet56, vgg16). */
    public static Model zoo(String name, int classes, long seed) {
        return new Model(Native.create(name, classes, seed));
    }

    /** A model from a file's bytes (native, ONNX or Torch7). */
    public static Model load(byte[] file) {
        return new Model(Native.load(file));
    }

    /** The model in the native format. */
    public byte[] save() {
        return Native.save(handle);
    }

    /** The number of weights. */
    public long numParams() {
        return Native.numParams(handle);
    }

    /** Forward and backward: the batch-mean gradient into {@code grad}; the loss. */
    public float trainStep(ByteBuffer x, int[] shape, ByteBuffer labels, ByteBuffer grad) {
        return Native.trainStep(handle, x, shape, labels, grad);
    }

    /** Weights {@code offset .. offset + n} into {@code out}. */
    public void getWeights(long offset, int n, ByteBuffer out) {
        Native.getWeights(handle, offset, n, out);
    }

    /** Weights {@code offset .. offset + n} from {@code in}. */
    public void setWeights(long offset, int n, ByteBuffer in) {
        Native.setWeights(handle, offset, n, in);
    }

    /** The output for {@code x}, flattened, batch first. */
    public float[] predict(ByteBuffer x, int[] shape) {
        return Native.predict(handle, x, shape);
    }
}
