package bigdlrs.spark;

import java.io.Serializable;

/** One training or test sample: its features (in the model's input layout) and its class. */
public final class Sample implements Serializable {
    private static final long serialVersionUID = 1L;

    /** The features, e.g. 1 x 28 x 28 pixels for LeNet-5. */
    public final float[] features;
    /** The class, 0-based. */
    public final float label;

    public Sample(float[] features, float label) {
        this.features = features;
        this.label = label;
    }
}
