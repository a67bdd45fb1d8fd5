#!/usr/bin/env python3
"""Element-wise kernels of bigdl-rs against NumPy and PyTorch, same machine, same run.

Usage: benches/elementwise_peers.py [MIN_MS]   (builds and runs the `ew_table` binary)

Prints the markdown tables of BENCHMARKS.md: elements/s of exp, tanh, sigmoid per
implementation and thread count, and GB/s of the streaming kernels against a
STREAM-like triad. NumPy's ufuncs are single-threaded; PyTorch runs with
torch.set_num_threads(T). Inputs are the same formula in every implementation.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

try:
    import torch
except ImportError:  # PyTorch is optional: `pip install torch`
    torch = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_MS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
SIZES = [1 << 10, 1 << 16, 1 << 20, 1 << 24]


def median_secs(f):
    f()
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < MIN_MS / 1e3 and len(times) < 100000):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def ours(threads):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "bigdl-benches", "--bin", "ew_table"], cwd=ROOT, check=True)
    env = dict(os.environ, BIGDL_NUM_THREADS=str(threads))
    out = subprocess.run([os.path.join(ROOT, "target/release/ew_table"), str(threads), str(MIN_MS)],
                         cwd=ROOT, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def peers(threads):
    rows = []
    for n in SIZES:
        x = ((np.arange(n) % 2000) * 0.005 - 5.0).astype(np.float32)
        y = np.empty_like(x)
        fns = {"exp": lambda: np.exp(x, out=y), "tanh": lambda: np.tanh(x, out=y),
               "sigmoid": lambda: np.divide(1.0, 1.0 + np.exp(-x), out=y)}
        if threads == 1:
            for op, f in fns.items():
                rows.append({"impl": "numpy", "op": op, "n": n, "threads": 1, "secs": median_secs(f)})
        if torch is not None:
            torch.set_num_threads(threads)
            tx, ty = torch.from_numpy(x), torch.empty(n)
            tf = {"exp": lambda: torch.exp(tx, out=ty), "tanh": lambda: torch.tanh(tx, out=ty),
                  "sigmoid": lambda: torch.sigmoid(tx, out=ty)}
            for op, f in tf.items():
                rows.append({"impl": "torch", "op": op, "n": n, "threads": threads, "secs": median_secs(f)})
    return rows


def main():
    rows = []
    for t in (1, 2):
        rows += ours(t) + peers(t)
    get = {(r["impl"], r["op"], r["n"], r["threads"]): r["secs"] for r in rows}
    print(f"numpy {np.__version__}, torch {torch.__version__ if torch else 'not installed'}")
    print()
    print("| op | n | threads | bigdl Gelem/s | numpy Gelem/s | torch Gelem/s | bigdl / torch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for op in ("exp", "tanh", "sigmoid"):
        for t in (1, 2):
            for n in SIZES:
                g = lambda impl: n / get[(impl, op, n, t)] / 1e9 if (impl, op, n, t) in get else None
                b, npy, tt = g("bigdl"), g("numpy"), g("torch")
                fmt = lambda v: f"{v:.2f}" if v else "-"
                ratio = f"{b / tt:.2f}" if tt else "-"
                print(f"| {op} | {n} | {t} | {fmt(b)} | {fmt(npy)} | {fmt(tt)} | {ratio} |")
    print()
    big = SIZES[-1]
    print(f"Streaming kernels at n = {big} (64 MiB per array); GB/s counts bytes read + written.")
    print()
    print("| op | threads | GB/s | / triad |")
    print("|---|---:|---:|---:|")
    traffic = {"relu": 8, "add": 12, "axpy": 12, "sum": 4, "exp": 8, "softmax": 8, "triad": 12}
    for t in (1, 2):
        triad = traffic["triad"] * big / get[("bigdl", "triad", big, t)] / 1e9
        for op in ("triad", "relu", "add", "axpy", "sum", "softmax", "exp"):
            gbs = traffic[op] * big / get[("bigdl", op, big, t)] / 1e9
            print(f"| {op} | {t} | {gbs:.1f} | {gbs / triad:.2f} |")


if __name__ == "__main__":
    main()
