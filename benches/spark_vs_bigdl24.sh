#!/usr/bin/env bash
# LeNet-5 on MNIST on Spark: bigdl-rs (bigdlrs.spark.DistriOptimizer, Spark
# 4.x from the pyspark package) next to the original BigDL 2.4
# (com.intel.analytics.bigdl.dllib.models.lenet.Train, Spark 3.1.3), each on
# its own standalone cluster started with spark-class on 127.0.0.1: a master
# and two workers of one core, batch 128, EPOCHS epochs, one after the other.
#
#   benches/spark_vs_bigdl24.sh [EPOCHS]          (default 2; MNIST in data/mnist)
#
# BigDL 2.4 comes from PyPI only (no Maven here): the jars of the wheels
# bigdl-dllib-spark3 2.4.0 and bigdl-core 2.4.0.dev0, run on pyspark 3.1.3's
# Spark whose Scala 2.12.10 library is replaced by 2.12.15's (from the
# pyspark 3.2.4 sdist: 2.12.10 cannot deserialize lambdas on Java 17), with
# the --add-opens flags Spark 3.1 lacks. Prepared once in $BIGDL24_DIR
# (default target/bigdl24; about 600 MB of downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-2}
root=$PWD
env24=${BIGDL24_DIR:-$root/target/bigdl24}
mnist=$root/data/mnist
pip() { python3 -m pip --disable-pip-version-check -q "$@"; }

if [ ! -f "$env24/ready" ]; then
    echo "preparing BigDL 2.4 in $env24"
    mkdir -p "$env24/dl"
    pip install --no-deps --target "$env24/spark313" pyspark==3.1.3
    pip download --no-deps -d "$env24/dl" bigdl-dllib-spark3==2.4.0 bigdl-core==2.4.0.dev0 pyspark==3.2.4
    (cd "$env24/dl" && for w in *.whl; do unzip -o -q "$w" 'bigdl/share/*'; done \
        && tar xzf pyspark-3.2.4.tar.gz --wildcards 'pyspark-3.2.4/deps/jars/scala-*-2.12.15.jar')
    jars=$env24/spark313/pyspark/jars
    rm -f "$jars"/scala-library-2.12.10.jar "$jars"/scala-reflect-2.12.10.jar "$jars"/scala-compiler-2.12.10.jar
    cp "$env24"/dl/pyspark-3.2.4/deps/jars/scala-*-2.12.15.jar "$jars/"
    touch "$env24/ready"
fi
cargo build --release -p bigdl-cli --quiet
ci/build-java.sh release >/dev/null

export SPARK_LOCAL_IP=127.0.0.1
opens=$(printf -- '--add-opens=java.base/%s=ALL-UNNAMED ' java.lang java.lang.invoke \
    java.lang.reflect java.io java.net java.nio java.util java.util.concurrent \
    java.util.concurrent.atomic sun.nio.ch sun.nio.cs sun.security.action sun.util.calendar)
out=$root/target/spark-vs-bigdl24
rm -rf "$out" && mkdir -p "$out"

cluster() { # spark-home port: a master and two one-core workers
    SPARK_DAEMON_JAVA_OPTS="$opens" "$1/bin/spark-class" org.apache.spark.deploy.master.Master \
        --host 127.0.0.1 --port "$2" --webui-port $(($2 + 1)) > "$out/master-$2.log" 2>&1 &
    sleep 5
    for i in 1 2; do
        SPARK_DAEMON_JAVA_OPTS="$opens" "$1/bin/spark-class" org.apache.spark.deploy.worker.Worker \
            --host 127.0.0.1 --cores 1 --memory 2g --webui-port $(($2 + 1 + i)) \
            --work-dir "$out/work-$2" "spark://127.0.0.1:$2" > "$out/worker-$2-$i.log" 2>&1 &
    done
    sleep 6
}
stop() { pkill -f "org.apache.spark.deploy.(master.Master|worker.Worker)" || true; sleep 2; }
trap stop EXIT

echo "== BigDL 2.4 (Spark 3.1.3), $epochs epochs"
s313=$env24/spark313/pyspark
cluster "$s313" 7177
SPARK_HOME=$s313 "$s313/bin/spark-submit" --master spark://127.0.0.1:7177 \
    --jars "$(ls "$env24"/dl/bigdl/share/core/lib/*.jar)" \
    --driver-java-options "$opens" --conf "spark.executor.extraJavaOptions=$opens" \
    --executor-cores 1 --total-executor-cores 2 --executor-memory 1536m --driver-memory 2g \
    --class com.intel.analytics.bigdl.dllib.models.lenet.Train \
    "$(ls "$env24"/dl/bigdl/share/dllib/lib/*.jar)" -f "$mnist" -b 128 -e "$epochs" \
    > "$out/bigdl24.log" 2>&1
stop
python3 - "$out/bigdl24.log" "$epochs" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
wall = [float(w) for w in re.findall(r"Wall Clock ([0-9.]+)s\] Trained", log)]
thr = [float(t) for t in re.findall(r"Throughput is ([0-9.]+)", log)]
acc = re.findall(r"Top1Accuracy is Accuracy\(correct: \d+, count: \d+, accuracy: ([0-9.]+)\)", log)
tail = sorted(thr[len(thr) // 2:])
print(f"BigDL 2.4: {len(wall)} iterations in {wall[-1]:.1f} s = "
      f"{len(wall) * 128 / wall[-1]:.0f} images/s overall; median iteration "
      f"(second half) {tail[len(tail) // 2]:.0f} images/s; top-1 {float(acc[-1]) * 100:.2f}%")
PY

echo "== bigdl-rs (Spark $(python3 -c 'import pyspark; print(pyspark.__version__)')), $epochs epochs"
s4=$(python3 -c "import pyspark, os; print(os.path.dirname(pyspark.__file__))")
cluster "$s4" 7277
SPARK_HOME=$s4 "$s4/bin/spark-submit" --master spark://127.0.0.1:7277 \
    --executor-cores 1 --total-executor-cores 2 --executor-memory 1536m --driver-memory 2g \
    --class bigdlrs.spark.examples.LeNetMnist target/java/bigdl-rs.jar "$mnist" "$epochs" 2 \
    > "$out/bigdl-rs.log" 2>&1
grep "^test accuracy" "$out/bigdl-rs.log"
grep -h "bigdl: rank 0:" "$out"/work-7277/*/*/stderr || true
