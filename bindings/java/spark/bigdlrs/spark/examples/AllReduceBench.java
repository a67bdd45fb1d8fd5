package bigdlrs.spark.examples;

import bigdlrs.Comm;
import bigdlrs.Native;
import bigdlrs.spark.Ranks;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.UUID;
import java.util.stream.IntStream;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import scala.Function1;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * bigdl's sharded all-reduce between Spark tasks ({@link Ranks}: over the
 * executors' BlockManagers or direct TCP), one rank per partition of a
 * barrier stage:
 * the median time of an all-reduce per buffer size, and its bus bandwidth
 * (algbw x 2(n-1)/n), the figure {@code bigdl bench allreduce} prints for
 * MPI. A 4-byte buffer measures the latency floor of one synchronous step.
 *
 * <p>Arguments: ranks (default 2), sizes in bytes (default
 * 4,1048576,4194304,16777216), minimum milliseconds per size (default
 * 1000), transport (blockmanager or tcp; default blockmanager).
 */
public final class AllReduceBench {
    private AllReduceBench() {}

    public static void main(String[] args) {
        int ranks = args.length > 0 ? Integer.parseInt(args[0]) : 2;
        int[] sizes = Arrays.stream((args.length > 1 ? args[1] : "4,1048576,4194304,16777216")
            .split(",")).mapToInt(Integer::parseInt).toArray();
        long minMs = args.length > 2 ? Long.parseLong(args[2]) : 1000;
        String transport = args.length > 3 ? args[3] : "blockmanager";
        String job = "bench-" + UUID.randomUUID();
        SparkConf conf = new SparkConf().setAppName("bigdl-rs all-reduce over the BlockManager");
        try (JavaSparkContext sc = new JavaSparkContext(conf)) {
            List<Integer> parts = new ArrayList<>();
            IntStream.range(0, ranks).forEach(parts::add);
            JavaRDD<Integer> rdd = sc.parallelize(parts, ranks);
            Function1<scala.collection.Iterator<Integer>, scala.collection.Iterator<String>> f =
                (Function1<scala.collection.Iterator<Integer>, scala.collection.Iterator<String>>
                    & Serializable) it -> CollectionConverters.asScala(
                        run(job, transport, sizes, minMs).iterator());
            ClassTag<String> tag = ClassTag$.MODULE$.apply(String.class);
            List<String> out = new JavaRDD<>(rdd.rdd().barrier().mapPartitions(f, false, tag), tag)
                .collect();
            System.out.printf("all-reduce over %s, %d ranks (busbw = algbw x"
                + " 2(n-1)/n; median per size)%n%10s %12s %12s%n", transport, ranks, "bytes",
                "median ms", "busbw GB/s");
            out.forEach(System.out::println);
        }
    }

    private static List<String> run(String job, String transport, int[] sizes, long minMs) {
        BarrierTaskContext ctx = BarrierTaskContext.get();
        int rank = ctx.partitionId();
        int n = ctx.getTaskInfos().length;
        List<String> lines = new ArrayList<>();
        try (Ranks ranks = Ranks.open(ctx, job, transport, 120_000, false)) {
            Comm c = ranks.comm;
            for (int bytes : sizes) {
                int len = Math.max(1, bytes / 4);
                ByteBuffer buf = Native.floats(len);
                for (int w = 0; w < 3; w++) {
                    c.allReduce(buf, len);
                }
                List<Double> times = new ArrayList<>();
                long start = System.nanoTime();
                // Every rank runs the same number of calls: rank 0 decides.
                while (true) {
                    ByteBuffer go = Native.floats(1);
                    boolean more = times.size() < 5 || System.nanoTime() - start < minMs * 1_000_000;
                    go.putFloat(0, rank == 0 && more ? 1f : 0f);
                    c.allReduce(go, 1);
                    if (go.getFloat(0) == 0f) {
                        break;
                    }
                    long t0 = System.nanoTime();
                    c.allReduce(buf, len);
                    times.add((System.nanoTime() - t0) / 1e9);
                }
                Collections.sort(times);
                double med = times.get(times.size() / 2);
                double bus = 2.0 * (n - 1) / n;
                lines.add(String.format("%10d %12.3f %12.3f", 4L * len, med * 1e3,
                                        4.0 * len / med / 1e9 * bus));
            }
            ctx.barrier();
        }
        return rank == 0 ? lines : Collections.emptyList();
    }
}
