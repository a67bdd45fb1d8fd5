package bigdlrs.spark;

import bigdlrs.Comm;
import bigdlrs.Model;
import bigdlrs.Native;
import bigdlrs.Optimizer;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.api.java.JavaRDD;
import scala.Function1;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * Synchronous data-parallel training on Spark, BigDL's way, in one barrier
 * stage: every partition of the training RDD is a rank; each iteration every
 * rank computes the gradient of its part of the global batch, the ranks sum
 * the gradients with bigdl's sharded all-reduce over the executors'
 * BlockManagers ({@link BlockManagerStore}), each rank updates its shard of
 * the weights and gathers the others'. Rank 0 returns the trained model.
 */
public final class DistriOptimizer implements Serializable {
    private static final long serialVersionUID = 1L;

    private final byte[] model;
    private final int[] sampleShape;
    private int batchSize = 128;
    private int epochs = 1;
    private String method = "sgd";
    private float lr = 0.05f;
    private float momentum = 0f;
    private float weightDecay = 0f;
    private long timeoutMs = 120_000;
    private boolean bf16 = false;
    private long seed = 1;

    /** Trains {@code model} on samples of {@code sampleShape} (e.g. 1, 28, 28). */
    public DistriOptimizer(Model model, int... sampleShape) {
        this.model = model.save();
        this.sampleShape = sampleShape.clone();
    }

    /** The global batch (split evenly over the partitions). */
    public DistriOptimizer batchSize(int b) {
        this.batchSize = b;
        return this;
    }

    /** Passes over the data. */
    public DistriOptimizer epochs(int e) {
        this.epochs = e;
        return this;
    }

    /** SGD with momentum and weight decay. */
    public DistriOptimizer sgd(float lr, float momentum, float weightDecay) {
        this.method = "sgd";
        this.lr = lr;
        this.momentum = momentum;
        this.weightDecay = weightDecay;
        return this;
    }

    /** How long a rank waits for its peers in one exchange. */
    public DistriOptimizer timeoutMs(long t) {
        this.timeoutMs = t;
        return this;
    }

    /** Gradients and weights as bfloat16 on the wire. */
    public DistriOptimizer bf16(boolean b) {
        this.bf16 = b;
        return this;
    }

    /** Seed of each rank's sample order. */
    public DistriOptimizer seed(long s) {
        this.seed = s;
        return this;
    }

    private static <T> ClassTag<T> tag(Class<T> c) {
        return ClassTag$.MODULE$.apply(c);
    }

    private static int sampleLen(int[] shape) {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    /** Trains and returns the model (from rank 0). */
    public Model optimize(JavaRDD<Sample> data) {
        int parts = data.getNumPartitions();
        if (batchSize <= 0 || batchSize % parts != 0) {
            throw new IllegalArgumentException("the batch size " + batchSize
                + " must be a positive multiple of the " + parts + " partitions");
        }
        long total = data.count();
        int iterations = (int) (total / batchSize) * epochs;
        if (iterations == 0) {
            throw new IllegalArgumentException(total + " samples: less than one batch");
        }
        String job = "bigdl-" + UUID.randomUUID();
        DistriOptimizer me = this;
        Function1<scala.collection.Iterator<Sample>, scala.collection.Iterator<byte[]>> f =
            (Function1<scala.collection.Iterator<Sample>, scala.collection.Iterator<byte[]>>
                & Serializable) it -> CollectionConverters.asScala(
                    me.train(CollectionConverters.asJava(it), job, iterations).iterator());
        List<byte[]> out = new JavaRDD<>(
            data.rdd().barrier().mapPartitions(f, false, tag(byte[].class)), tag(byte[].class))
            .collect();
        for (byte[] b : out) {
            return Model.load(b);
        }
        throw new IllegalStateException("no rank returned the model");
    }

    /** One rank's part of {@link #optimize}, inside a barrier task. */
    private List<byte[]> train(java.util.Iterator<Sample> it, String job, int iterations) {
        BarrierTaskContext ctx = BarrierTaskContext.get();
        int rank = ctx.partitionId();
        int size = ctx.getTaskInfos().length;
        List<Sample> local = new ArrayList<>();
        it.forEachRemaining(local::add);
        if (local.isEmpty()) {
            throw new IllegalArgumentException("partition " + rank + " holds no samples");
        }
        int per = batchSize / size;
        int len = sampleLen(sampleShape);
        int[] shape = new int[sampleShape.length + 1];
        shape[0] = per;
        System.arraycopy(sampleShape, 0, shape, 1, sampleShape.length);
        try (Model m = Model.load(model);
             Optimizer o = method.equals("sgd") ? Optimizer.sgd(lr, momentum, weightDecay)
                                                : Optimizer.adam(lr, weightDecay);
             Comm c = Comm.create(new BlockManagerStore(), job, rank, size, timeoutMs, bf16)) {
            ctx.barrier(); // every rank is ready
            ByteBuffer x = Native.floats(per * len);
            ByteBuffer y = Native.floats(per);
            FloatBuffer xf = x.asFloatBuffer();
            Random rng = new Random(seed * 7919 + rank);
            List<Integer> order = new ArrayList<>();
            for (int i = 0; i < local.size(); i++) {
                order.add(i);
            }
            int at = order.size();
            for (int iter = 0; iter < iterations; iter++) {
                for (int k = 0; k < per; k++) {
                    if (at == order.size()) {
                        Collections.shuffle(order, rng);
                        at = 0;
                    }
                    Sample s = local.get(order.get(at++));
                    if (s.features.length != len) {
                        throw new IllegalArgumentException("a sample of " + s.features.length
                            + " features, expected " + len);
                    }
                    xf.put(k * len, s.features);
                    y.putFloat(4 * k, s.label);
                }
                float loss = c.step(m, o, x, shape, y, batchSize);
                if (rank == 0 && (iter % 100 == 0 || iter == iterations - 1)) {
                    System.err.println("bigdl: iteration " + (iter + 1) + "/" + iterations
                        + " loss " + loss);
                }
            }
            return rank == 0 ? Collections.singletonList(m.save()) : Collections.emptyList();
        }
    }

    /**
     * Top-1 accuracy of {@code model} on {@code data}, each partition scored
     * where it lives, {@code batch} samples per forward pass.
     */
    public static double evaluate(Model model, JavaRDD<Sample> data, int[] sampleShape, int batch) {
        byte[] bytes = model.save();
        int len = sampleLen(sampleShape);
        List<long[]> counts = data.mapPartitions(it -> {
            long correct = 0;
            long seen = 0;
            try (Model m = Model.load(bytes)) {
                List<Sample> chunk = new ArrayList<>();
                while (it.hasNext() || !chunk.isEmpty()) {
                    if (it.hasNext() && chunk.size() < batch) {
                        chunk.add(it.next());
                        continue;
                    }
                    int n = chunk.size();
                    ByteBuffer x = Native.floats(n * len);
                    FloatBuffer xf = x.asFloatBuffer();
                    for (int k = 0; k < n; k++) {
                        xf.put(k * len, chunk.get(k).features);
                    }
                    int[] shape = new int[sampleShape.length + 1];
                    shape[0] = n;
                    System.arraycopy(sampleShape, 0, shape, 1, sampleShape.length);
                    float[] out = m.predict(x, shape);
                    int classes = out.length / n;
                    for (int k = 0; k < n; k++) {
                        int best = 0;
                        for (int j = 1; j < classes; j++) {
                            if (out[k * classes + j] > out[k * classes + best]) {
                                best = j;
                            }
                        }
                        correct += best == (int) chunk.get(k).label ? 1 : 0;
                    }
                    seen += n;
                    chunk.clear();
                }
            }
            return Collections.singletonList(new long[] {correct, seen}).iterator();
        }).collect();
        long correct = 0;
        long seen = 0;
        for (long[] c : counts) {
            correct += c[0];
            seen += c[1];
        }
        return seen == 0 ? Double.NaN : (double) correct / seen;
    }
}
