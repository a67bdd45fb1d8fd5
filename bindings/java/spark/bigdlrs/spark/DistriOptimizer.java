package bigdlrs.spark;

import bigdlrs.Comm;
import bigdlrs.Model;
import bigdlrs.Native;
import bigdlrs.Optimizer;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.SparkException;
import org.apache.spark.api.java.JavaRDD;
import scala.Function1;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * Synchronous data-parallel training on Spark, BigDL's way, in one barrier
 * stage: every partition of the training RDD is a rank; each iteration every
 * rank computes the gradient of its part of the global batch, the ranks sum
 * the gradients with bigdl's sharded all-reduce (over direct TCP
 * connections or the executors' BlockManagers: {@link #transport}), each
 * rank updates its shard of the weights and gathers the others'.
 *
 * <p>Training runs in stages of iterations; after each, the driver keeps the
 * newest checkpoint (the model and every rank's optimizer state). A stage
 * that fails (a lost executor fails every task of a barrier stage) is run
 * again from it: first by Spark's own stage retries, then by {@link
 * #optimize} up to {@link #retries} times. Argument errors are found on the
 * driver before any stage runs.
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
    private int stageIterations = 0;
    private String checkpointFile = null;
    private boolean resume = false;
    private int retries = 3;
    private String transport = "auto";

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

    /**
     * How the ranks exchange gradients and weights: {@code "tcp"},
     * {@code "blockmanager"} or {@code "auto"} (the default: the
     * BlockManager when {@code spark.authenticate} is on, else TCP); see
     * {@link Ranks}.
     */
    public DistriOptimizer transport(String t) {
        Ranks.resolve(t, false);
        this.transport = t;
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

    /** The cores a task may use (at least one). */
    private static int cores(org.apache.spark.TaskContext task) {
        return Math.max(1, (int) Math.ceil(task.cpuAmount().toDouble()));
    }

    private static int sampleLen(int[] shape) {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    /**
     * Runs training in stages of {@code n} iterations (default: one epoch);
     * after each stage the driver keeps the model and every rank's optimizer
     * state as the newest checkpoint (and writes it to {@link #checkpoint}'s
     * file).
     */
    public DistriOptimizer stageIterations(int n) {
        this.stageIterations = n;
        return this;
    }

    /**
     * Writes each stage's checkpoint to {@code file} (atomically: a temporary
     * file renamed over it); with {@code resume}, training starts from the
     * checkpoint already there, if any.
     */
    public DistriOptimizer checkpoint(String file, boolean resume) {
        this.checkpointFile = file;
        this.resume = resume;
        return this;
    }

    /**
     * How many times a failed stage (a lost executor, a task that failed more
     * often than Spark retries it) is restarted from the newest checkpoint.
     */
    public DistriOptimizer retries(int n) {
        this.retries = n;
        return this;
    }

    /** Trains and returns the model. */
    public Model optimize(JavaRDD<Sample> data) {
        int parts = data.getNumPartitions();
        if (batchSize <= 0 || batchSize % parts != 0) {
            throw new IllegalArgumentException("the batch size " + batchSize
                + " must be a positive multiple of the " + parts + " partitions");
        }
        if (epochs <= 0 || retries < 0 || stageIterations < 0) {
            throw new IllegalArgumentException("epochs " + epochs + ", retries " + retries
                + ", stage iterations " + stageIterations);
        }
        // Argument errors surface here, on the driver, and are never retried.
        int len = sampleLen(sampleShape);
        // One pass: the samples, those of the wrong length, empty partitions.
        long[] counts = data.mapPartitions(it -> {
            long[] c = new long[3];
            it.forEachRemaining(smp -> {
                c[0]++;
                c[1] += smp.features.length == len ? 0 : 1;
            });
            c[2] = c[0] == 0 ? 1 : 0;
            return Collections.singletonList(c).iterator();
        }).fold(new long[3], (a, b) -> new long[] {a[0] + b[0], a[1] + b[1], a[2] + b[2]});
        long total = counts[0];
        if (counts[1] > 0) {
            throw new IllegalArgumentException(counts[1] + " samples do not have " + len
                + " features (the sample shape)");
        }
        if (counts[2] > 0) {
            throw new IllegalArgumentException(counts[2] + " of the " + parts
                + " partitions hold no samples: every partition is a rank and needs data");
        }
        long iterations = total / batchSize * epochs;
        if (iterations == 0) {
            throw new IllegalArgumentException(total + " samples: less than one batch");
        }
        long stage = stageIterations > 0 ? stageIterations : Math.max(1, total / batchSize);
        Checkpoint ck = new Checkpoint(0, model, null);
        if (checkpointFile != null && resume && Files.exists(Path.of(checkpointFile))) {
            ck = Checkpoint.read(Path.of(checkpointFile), parts);
            System.err.println("bigdl: resuming at iteration " + ck.done + " from "
                + checkpointFile);
        }
        String job = "bigdl-" + UUID.randomUUID();
        System.err.println("bigdl: " + iterations + " iterations on " + parts + " ranks over "
            + Ranks.resolve(transport, data.context().conf().getBoolean("spark.authenticate",
                                                                        false)));
        int failures = 0;
        int runs = 0;
        while (ck.done < iterations) {
            long n = Math.min(stage, iterations - ck.done);
            try {
                // Each run of a stage names its blocks and connections apart
                // from a failed run's leftovers.
                ck = runStage(data, job + "/" + runs++, ck, (int) n, iterations);
            } catch (Exception e) { // collect() throws the checked SparkException
                if (!(e instanceof SparkException)) {
                    throw e;
                }
                if (++failures > retries) {
                    throw new IllegalStateException("training failed at iteration " + ck.done
                        + " after " + retries + " restarts", e);
                }
                System.err.println("bigdl: stage failed (" + e.getMessage().lines().findFirst()
                    .orElse("") + "); restart " + failures + " of " + retries
                    + " from iteration " + ck.done);
                continue;
            }
            if (checkpointFile != null) {
                ck.write(Path.of(checkpointFile));
            }
        }
        return Model.load(ck.model);
    }

    /** One barrier stage: {@code n} iterations from {@code from}'s state. */
    private Checkpoint runStage(JavaRDD<Sample> data, String job, Checkpoint from, int n,
                                long iterations) {
        DistriOptimizer me = this;
        Function1<scala.collection.Iterator<Sample>, scala.collection.Iterator<byte[]>> f =
            (Function1<scala.collection.Iterator<Sample>, scala.collection.Iterator<byte[]>>
                & Serializable) it -> CollectionConverters.asScala(
                    me.train(CollectionConverters.asJava(it), job, from, n, iterations)
                        .iterator());
        List<byte[]> out = new JavaRDD<>(
            data.rdd().barrier().mapPartitions(f, false, tag(byte[].class)), tag(byte[].class))
            .collect();
        byte[] model = null;
        byte[][] states = new byte[out.size()][];
        for (byte[] b : out) {
            ByteBuffer r = ByteBuffer.wrap(b);
            int rank = r.getInt();
            byte[] m = new byte[r.getInt()];
            r.get(m);
            byte[] st = new byte[r.remaining()];
            r.get(st);
            if (m.length > 0) {
                model = m;
            }
            states[rank] = st;
        }
        if (model == null) {
            throw new IllegalStateException("no rank returned the model");
        }
        return new Checkpoint(from.done + n, model, states);
    }

    /**
     * One rank's part of a stage, inside a barrier task: returns its rank,
     * the model (rank 0 only) and its state.
     */
    private List<byte[]> train(java.util.Iterator<Sample> it, String job, Checkpoint from,
                               int n, long iterations) {
        BarrierTaskContext ctx = BarrierTaskContext.get();
        int rank = ctx.partitionId();
        int size = ctx.getTaskInfos().length;
        Native.threads(cores(ctx));
        // Spark's own retries of this stage name theirs apart too.
        String name = job + "/" + ctx.stageAttemptNumber();
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
        try (Model m = Model.load(from.model);
             Optimizer o = method.equals("sgd") ? Optimizer.sgd(lr, momentum, weightDecay)
                                                : Optimizer.adam(lr, weightDecay);
             Ranks ranks = Ranks.open(ctx, name, transport, timeoutMs, bf16)) {
            Comm c = ranks.comm;
            if (from.states != null) {
                c.restore(o, from.states[rank]);
            }
            ByteBuffer x = Native.floats(per * len);
            ByteBuffer y = Native.floats(per);
            FloatBuffer xf = x.asFloatBuffer();
            // Each stage draws its own order: a restarted stage repeats it.
            Random rng = new Random(seed * 7919 + rank * 104729L + from.done);
            List<Integer> order = new ArrayList<>();
            for (int i = 0; i < local.size(); i++) {
                order.add(i);
            }
            int at = order.size();
            for (int i = 0; i < n; i++) {
                for (int k = 0; k < per; k++) {
                    if (at == order.size()) {
                        Collections.shuffle(order, rng);
                        at = 0;
                    }
                    Sample s = local.get(order.get(at++));
                    xf.put(k * len, s.features);
                    y.putFloat(4 * k, s.label);
                }
                float loss = c.step(m, o, x, shape, y, batchSize);
                long iter = from.done + i + 1;
                if (rank == 0 && (iter % 100 == 1 || iter == iterations)) {
                    System.err.println("bigdl: iteration " + iter + "/" + iterations
                        + " loss " + loss);
                }
            }
            // No closing barrier (Spark's takes about a second): the last
            // exchange has delivered everything this rank reads, and closing
            // waits for its own uploads (BlockManager) or leaves the bytes it
            // wrote readable by the peer (TCP).
            double[] st = c.stats();
            System.err.printf("bigdl: rank %d: %d iterations, %.2f ms computing and %.2f ms"
                + " synchronising per iteration%n", rank, (long) st[0], 1e3 * st[1] / st[0],
                1e3 * st[2] / st[0]);
            byte[] model = rank == 0 ? m.save() : new byte[0];
            byte[] state = c.save(o);
            ByteBuffer out = ByteBuffer.allocate(8 + model.length + state.length);
            out.putInt(rank).putInt(model.length).put(model).put(state);
            return Collections.singletonList(out.array());
        }
    }

    /**
     * The outputs of {@code model} for every sample of {@code data} (its
     * last layer's values, e.g. log-probabilities), in the data's order,
     * each partition run where it lives, {@code batch} samples per forward
     * pass (lazily, as any RDD).
     */
    public static JavaRDD<float[]> predict(Model model, JavaRDD<Sample> data, int[] sampleShape,
                                           int batch) {
        byte[] bytes = model.save();
        int[] shape = sampleShape.clone();
        if (batch <= 0) {
            throw new IllegalArgumentException("batch " + batch);
        }
        return data.mapPartitions(it -> {
            List<float[]> out = new ArrayList<>();
            forward(bytes, it, shape, batch, (s, y) -> out.add(y));
            return out.iterator();
        });
    }

    /**
     * Top-1 accuracy of {@code model} on {@code data} (the highest output is
     * the predicted class), each partition scored where it lives,
     * {@code batch} samples per forward pass.
     */
    public static double evaluate(Model model, JavaRDD<Sample> data, int[] sampleShape, int batch) {
        byte[] bytes = model.save();
        int[] shape = sampleShape.clone();
        if (batch <= 0) {
            throw new IllegalArgumentException("batch " + batch);
        }
        long[] counts = data.mapPartitions(it -> {
            long[] c = new long[2];
            forward(bytes, it, shape, batch, (s, y) -> {
                c[0] += argmax(y) == (int) s.label ? 1 : 0;
                c[1]++;
            });
            return Collections.singletonList(c).iterator();
        }).fold(new long[] {0, 0}, (a, b) -> new long[] {a[0] + b[0], a[1] + b[1]});
        return counts[1] == 0 ? Double.NaN : (double) counts[0] / counts[1];
    }

    /** The predicted class of an output row: the index of its highest value. */
    public static int argmax(float[] y) {
        int best = 0;
        for (int j = 1; j < y.length; j++) {
            if (y[j] > y[best]) {
                best = j;
            }
        }
        return best;
    }

    /**
     * Runs the model {@code bytes} on the samples of {@code it} in batches of
     * {@code batch} (on this executor's cores) and hands each sample and its
     * output row to {@code out}.
     */
    private static void forward(byte[] bytes, java.util.Iterator<Sample> it, int[] sampleShape,
                                int batch, java.util.function.BiConsumer<Sample, float[]> out) {
        Native.threads(cores(org.apache.spark.TaskContext.get()));
        int len = sampleLen(sampleShape);
        int[] shape = new int[sampleShape.length + 1];
        System.arraycopy(sampleShape, 0, shape, 1, sampleShape.length);
        try (Model m = Model.load(bytes)) {
            List<Sample> chunk = new ArrayList<>(batch);
            while (it.hasNext() || !chunk.isEmpty()) {
                if (it.hasNext() && chunk.size() < batch) {
                    Sample s = it.next();
                    if (s.features.length != len) {
                        throw new IllegalArgumentException("a sample of " + s.features.length
                            + " features, expected " + len);
                    }
                    chunk.add(s);
                    continue;
                }
                int n = chunk.size();
                ByteBuffer x = Native.floats(n * len);
                FloatBuffer xf = x.asFloatBuffer();
                for (int k = 0; k < n; k++) {
                    xf.put(k * len, chunk.get(k).features);
                }
                shape[0] = n;
                float[] y = m.predict(x, shape);
                int width = y.length / n;
                for (int k = 0; k < n; k++) {
                    out.accept(chunk.get(k), java.util.Arrays.copyOfRange(y, k * width,
                                                                          (k + 1) * width));
                }
                chunk.clear();
            }
        }
    }
}
