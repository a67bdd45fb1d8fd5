#!/usr/bin/env bash
# All-reduce over Spark's BlockManager next to MPI on the same machine, in
# one run: `bigdl bench allreduce` under mpirun (MPI_Allreduce and bigdl's
# sharded all-reduce over MPI), then bigdlrs.spark.examples.AllReduceBench on
# a local-cluster of RANKS single-core executors (the same algorithm over
# BlockManagerStore, then over direct TCP between the tasks). Bus bandwidth =
# algbw x 2(n-1)/n of the median call.
#
#   benches/spark_allreduce.sh [RANKS] [SIZES]    (default 2 4,1048576,4194304,16777216)
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-2}
sizes=${2:-4,1048576,4194304,16777216}
cargo build --release -p bigdl-cli --quiet
ci/build-java.sh release >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== MPI (mpirun -n $ranks)"
mpirun --oversubscribe -n "$ranks" target/release/bigdl bench allreduce --size "$sizes" --min-ms 1000
export SPARK_HOME=${SPARK_HOME:-$(python3 -c "import pyspark, os; print(os.path.dirname(pyspark.__file__))")}
export SPARK_LOCAL_IP=127.0.0.1
for transport in blockmanager tcp; do
    echo "== Spark, $transport (local-cluster[$ranks,1,1024])"
    "$SPARK_HOME/bin/spark-submit" --master "local-cluster[$ranks,1,1024]" \
        --class bigdlrs.spark.examples.AllReduceBench target/java/bigdl-rs.jar \
        "$ranks" "$sizes" 1000 "$transport" 2>/dev/null
done
