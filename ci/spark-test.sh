#!/usr/bin/env bash
# Real Spark: trains LeNet-5 on MNIST with bigdlrs.spark.DistriOptimizer on a
# local-cluster (a standalone master and two single-core executor JVMs on
# 127.0.0.1, started by spark-submit from the pyspark package's Spark):
#   1. a clean run with spark.authenticate on (so the all-reduce runs over
#      the executors' BlockManagers) must reach 98.5% test accuracy;
#   2. the fault run, without authentication (the all-reduce over direct TCP
#      connections), kills one executor JVM (kill -9) after the first
#      checkpoint; the driver restarts the failed stage from it and must end
#      with the clean run's accuracy, to the digit (training is deterministic
#      and both transports sum in the same order);
#   3. PySpark: bindings/python/lenet_mnist.py drives the same classes through
#      py4j for one epoch (97.5% or more).
# Needs MNIST in $BIGDL_MNIST_DIR (default data/mnist) and ci/setup.sh's JDK
# and pyspark. Logs: target/spark-test/ (the executors': $SPARK_HOME/work/).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/build-java.sh release
export SPARK_HOME=${SPARK_HOME:-$(python3 -c "import pyspark, os; print(os.path.dirname(pyspark.__file__))")}
export SPARK_LOCAL_IP=127.0.0.1
mnist=$(realpath "${BIGDL_MNIST_DIR:-data/mnist}")
out=$PWD/target/spark-test
rm -rf "$out" && mkdir -p "$out"
epochs=4
stage=200 # iterations per stage: checkpoints every 200

submit() { # log-name checkpoint-file [spark options]
    local name=$1 ckpt=$2
    shift 2
    timeout 900 "$SPARK_HOME/bin/spark-submit" --master "local-cluster[2,1,2048]" \
        --driver-memory 2g --conf spark.executor.memory=1536m "$@" \
        --class bigdlrs.spark.examples.LeNetMnist target/java/bigdl-rs.jar \
        "$mnist" "$epochs" 2 "$ckpt" "$stage" > "$out/$name.log" 2>&1
}
accuracy() { sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p' "$out/$1.log"; }

echo "spark-test: clean run"
submit clean "$out/clean.ckpt" --conf spark.authenticate=true \
    --conf spark.authenticate.secret=bigdl-ci-secret || { tail -50 "$out/clean.log"; exit 1; }
grep -q "ranks over blockmanager" "$out/clean.log" \
    || { echo "spark-test: the clean run did not use the BlockManager"; exit 1; }
clean=$(accuracy clean)
grep "^test accuracy" "$out/clean.log"
python3 -c "import sys; sys.exit(0 if float('$clean') >= 98.5 else 1)" \
    || { echo "spark-test: accuracy $clean% < 98.5%"; exit 1; }

echo "spark-test: fault run (an executor killed after the first checkpoint)"
submit fault "$out/fault.ckpt" &
job=$!
for _ in $(seq 600); do [ -f "$out/fault.ckpt" ] && break; sleep 0.5; done
[ -f "$out/fault.ckpt" ] || { kill $job; tail -50 "$out/fault.log"; exit 1; }
victim=$(pgrep -f 'CoarseGrainedExecutorBackend.*spark-test' | head -1 || true)
[ -z "$victim" ] && victim=$(pgrep -f CoarseGrainedExecutorBackend | head -1)
kill -9 "$victim"
wait $job || { tail -50 "$out/fault.log"; exit 1; }
grep "^test accuracy" "$out/fault.log"
grep -q "ranks over tcp" "$out/fault.log" \
    || { echo "spark-test: the fault run did not use TCP"; exit 1; }
grep -q "bigdl: stage failed" "$out/fault.log" \
    || { echo "spark-test: the killed executor did not fail a stage"; exit 1; }
[ "$(accuracy fault)" = "$clean" ] \
    || { echo "spark-test: after the restart $(accuracy fault)% != $clean%"; exit 1; }
echo "spark-test: OK (clean $clean%, after a killed executor $(accuracy fault)%)"

echo "spark-test: PySpark (py4j), one epoch"
timeout 900 "$SPARK_HOME/bin/spark-submit" --master "local-cluster[2,1,2048]" \
    --driver-memory 2g --conf spark.executor.memory=1536m \
    --jars target/java/bigdl-rs.jar \
    bindings/python/lenet_mnist.py "$mnist" 1 2 > "$out/pyspark.log" 2>&1 \
    || { tail -50 "$out/pyspark.log"; exit 1; }
py=$(accuracy pyspark)
grep "^test accuracy" "$out/pyspark.log"
python3 -c "import sys; sys.exit(0 if float('${py:-0}') >= 97.5 else 1)" \
    || { echo "spark-test: PySpark accuracy ${py:-none}% < 97.5%"; exit 1; }
echo "spark-test: PySpark OK"
