package bigdlrs.spark.examples;

import bigdlrs.Model;
import bigdlrs.spark.DistriOptimizer;
import bigdlrs.spark.Sample;
import java.io.DataInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;

/**
 * LeNet-5 on MNIST as an ordinary Spark program: the data set read into RDDs,
 * trained with bigdl's DistriOptimizer over the executors, scored where the
 * test partitions live. Usage (spark-submit ... --class
 * bigdlrs.spark.examples.LeNetMnist bigdl-rs.jar MNIST_DIR [EPOCHS [PARTITIONS]]).
 */
public final class LeNetMnist {
    private LeNetMnist() {}

    /** MNIST images as 784 raw bytes each, with the label appended (785 bytes). */
    static List<byte[]> read(Path dir, String prefix) throws IOException {
        byte[] images = Files.readAllBytes(dir.resolve(prefix + "-images-idx3-ubyte"));
        byte[] labels = Files.readAllBytes(dir.resolve(prefix + "-labels-idx1-ubyte"));
        DataInputStream hi = new DataInputStream(new java.io.ByteArrayInputStream(images));
        DataInputStream hl = new DataInputStream(new java.io.ByteArrayInputStream(labels));
        if (hi.readInt() != 2051 || hl.readInt() != 2049) {
            throw new IOException(dir + ": not MNIST idx files");
        }
        int n = hi.readInt();
        int rows = hi.readInt();
        int cols = hi.readInt();
        if (hl.readInt() != n || rows != 28 || cols != 28 || images.length != 16 + n * 784
            || labels.length != 8 + n) {
            throw new IOException(dir + ": inconsistent MNIST headers");
        }
        List<byte[]> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            byte[] r = new byte[785];
            System.arraycopy(images, 16 + i * 784, r, 0, 784);
            r[784] = labels[8 + i];
            out.add(r);
        }
        return out;
    }

    /**
     * The MNIST set {@code prefix} ("train" or "t10k") of {@code dir} as an
     * RDD of {@code parts} partitions, cached (the PySpark example calls it).
     */
    public static JavaRDD<Sample> rdd(JavaSparkContext sc, String dir, String prefix, int parts)
        throws IOException {
        // Raw bytes travel to the executors; samples are made there.
        return sc.parallelize(read(Path.of(dir), prefix), parts).map(LeNetMnist::sample).cache();
    }

    /** A record as a sample, normalised as BigDL's LeNet example does. */
    static Sample sample(byte[] r) {
        float[] f = new float[784];
        for (int p = 0; p < 784; p++) {
            f[p] = ((r[p] & 0xff) / 255f - 0.13066048f) / 0.3081078f;
        }
        return new Sample(f, r[784]);
    }

    /**
     * Arguments: the MNIST directory (default data/mnist), epochs (2),
     * partitions (the default parallelism), a checkpoint file to write and
     * resume from (none), iterations per stage (one epoch).
     */
    public static void main(String[] args) throws IOException {
        String dir = args.length > 0 ? args[0] : "data/mnist";
        int epochs = args.length > 1 ? Integer.parseInt(args[1]) : 2;
        SparkConf conf = new SparkConf().setAppName("bigdl-rs LeNet-5");
        try (JavaSparkContext sc = new JavaSparkContext(conf)) {
            int parts = args.length > 2 ? Integer.parseInt(args[2]) : sc.defaultParallelism();
            JavaRDD<Sample> train = rdd(sc, dir, "train", parts);
            JavaRDD<Sample> test = rdd(sc, dir, "t10k", parts);
            long t0 = System.nanoTime();
            Model lenet = Model.zoo("lenet5", 10, 1);
            DistriOptimizer opt = new DistriOptimizer(lenet, 1, 28, 28)
                .batchSize(128)
                .epochs(epochs)
                .sgd(0.05f, 0.9f, 5e-4f);
            if (args.length > 3) {
                opt.checkpoint(args[3], true);
            }
            if (args.length > 4) {
                opt.stageIterations(Integer.parseInt(args[4]));
            }
            Model trained = opt.optimize(train);
            double secs = (System.nanoTime() - t0) / 1e9;
            int[] shape = {1, 28, 28};
            double acc = DistriOptimizer.evaluate(trained, test, shape, 1000);
            // The same through predict: each sample's outputs, where it lives.
            long agree = test.zip(DistriOptimizer.predict(trained, test, shape, 1000))
                .filter(p -> (int) p._1().label == DistriOptimizer.argmax(p._2())).count();
            if (agree != Math.round(acc * test.count())) {
                throw new IllegalStateException("predict and evaluate disagree: " + agree
                    + " correct against " + acc);
            }
            System.out.printf("test accuracy: %.2f%% after %d epochs on %d partitions in %.1f s "
                + "(%.0f training images/s)%n", 100 * acc, epochs, parts, secs,
                epochs * 60000 / secs);
        }
    }
}
