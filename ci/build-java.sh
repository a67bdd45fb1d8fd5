#!/usr/bin/env bash
# Builds bindings/java into one jar, target/java/bigdl-rs.jar: the Java API
# (bigdlrs.*), the Spark classes (bigdlrs.spark.*, compiled against the jars
# the pyspark package ships: there is no Maven here) and the native library
# bigdl-jni as a resource that bigdlrs.Native extracts on each JVM.
#
#   ci/build-java.sh [debug|release]      (default release; builds bigdl-jni)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
if [ "$profile" = release ]; then
    cargo build --release -p bigdl-jni --quiet
else
    cargo build -p bigdl-jni --quiet
fi
spark_home=${SPARK_HOME:-$(python3 -c "import pyspark, os; print(os.path.dirname(pyspark.__file__))")}
out=target/java
rm -rf "$out/classes"
mkdir -p "$out/classes/bigdlrs/native"
find bindings/java/src bindings/java/spark -name '*.java' > "$out/sources.txt"
javac -Xlint:all,-serial,-options,-path -Werror --release 17 -cp "$spark_home/jars/*" \
    -d "$out/classes" @"$out/sources.txt"
cp "target/$profile/libbigdl_jni.so" "$out/classes/bigdlrs/native/"
jar cf "$out/bigdl-rs.jar" -C "$out/classes" .
echo "ci/build-java.sh: $out/bigdl-rs.jar (Spark from $spark_home)"
