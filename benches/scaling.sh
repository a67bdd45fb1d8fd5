#!/usr/bin/env bash
# Scaling of distributed training on this machine: one single-threaded
# process against N single-threaded MPI ranks (`bigdl train --comm mpi`),
# same global batch, same data (real MNIST / CIFAR-10 in data/). Each cell:
# the median of the per-iteration training images/s that rank 0 writes to
# its summary (validation excluded), after the first 3 iterations.
#
#   benches/scaling.sh [RANKS] [REPEATS]      (defaults: 2 3)
#
# Needs: cargo build --release -p bigdl-cli; bigdl data mnist; bigdl data cifar10.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-2}
repeats=${2:-3}
bin=target/release/bigdl
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median_ips() { # summary dir
    tail -n +5 "$1/train.csv" | cut -d, -f5 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

run() { # label, then bigdl train arguments
    local label=$1; shift
    local vals=()
    for _ in $(seq "$repeats"); do
        rm -rf "$tmp/s"
        if [ "$label" = one ]; then
            $bin train "$@" --threads 1 --summary "$tmp/s" >/dev/null 2>&1
        else
            mpirun --oversubscribe -n "$ranks" $bin train "$@" --threads 1 --comm mpi \
                --wire "$label" --summary "$tmp/s" >/dev/null 2>&1
        fi
        vals+=("$(median_ips "$tmp/s")")
    done
    printf '%s\n' "${vals[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "| model | 1 process img/s | $ranks ranks f32 | speed-up | $ranks ranks bf16 | speed-up |"
echo "|---|---:|---:|---:|---:|---:|"
for spec in "lenet5 mnist 300" "resnet20 cifar10 25"; do
    set -- $spec
    args=(--model "$1" --data-dir "data/$2" --max-iterations "$3" --batch-size 128
          --momentum 0.9 --lr 0.05)
    one=$(run one "${args[@]}")
    f32=$(run f32 "${args[@]}")
    bf16=$(run bf16 "${args[@]}")
    awk -v m="$1" -v o="$one" -v f="$f32" -v b="$bf16" \
        'BEGIN {printf "| %s | %.0f | %.0f | %.2fx | %.0f | %.2fx |\n", m, o, f, f/o, b, b/o}'
done
