"""LeNet-5 on MNIST with bigdl-rs from PySpark: the Java classes of
target/java/bigdl-rs.jar (ci/build-java.sh) driven through py4j.

    spark-submit --master "local-cluster[2,1,2048]" --jars target/java/bigdl-rs.jar \
        bindings/python/lenet_mnist.py data/mnist 2 2

Arguments: the MNIST directory, epochs, partitions (one rank each).
Prints "test accuracy: NN.NN%".
"""

import sys

from pyspark.sql import SparkSession


def main(argv):
    mnist = argv[1] if len(argv) > 1 else "data/mnist"
    epochs = int(argv[2]) if len(argv) > 2 else 2
    spark = SparkSession.builder.appName("bigdl-rs LeNet-5 (PySpark)").getOrCreate()
    sc = spark.sparkContext
    parts = int(argv[3]) if len(argv) > 3 else sc.defaultParallelism
    jvm = sc._jvm
    shape = sc._gateway.new_array(jvm.int, 3)
    shape[0], shape[1], shape[2] = 1, 28, 28
    mnist_rdd = jvm.bigdlrs.spark.examples.LeNetMnist.rdd
    train = mnist_rdd(sc._jsc, mnist, "train", parts)
    test = mnist_rdd(sc._jsc, mnist, "t10k", parts)
    model = jvm.bigdlrs.Model.zoo("lenet5", 10, 1)
    trained = (
        jvm.bigdlrs.spark.DistriOptimizer(model, shape)
        .batchSize(128)
        .epochs(epochs)
        .sgd(0.05, 0.9, 5e-4)
        .optimize(train)
    )
    acc = jvm.bigdlrs.spark.DistriOptimizer.evaluate(trained, test, shape, 1000)
    print(f"test accuracy: {100 * acc:.2f}% after {epochs} epochs on {parts} partitions")
    trained.close()
    model.close()
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
