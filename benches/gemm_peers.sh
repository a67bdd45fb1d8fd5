#!/usr/bin/env bash
# Measures SGEMM for every peer at 1 and 2 threads and prints the tables that go
# into BENCHMARKS.md. Usage: benches/gemm_peers.sh [MIN_MS_PER_CELL]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p bigdl-benches -p bigdl-cli --features bigdl-kernels/mkl,bigdl-kernels/openblas
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; $(date -u +%F)"
./target/release/bigdl info
for t in 1 2; do
    echo; echo "threads: $t"
    MATMUL_NUM_THREADS=$t ./target/release/gemm_table "$t" "${1:-1000}"
done
