#!/usr/bin/env python3
"""Convolution and pooling layers of bigdl-rs against PyTorch (CPU, oneDNN), same
machine, same run.

Usage: benches/conv_peers.py [MIN_MS [NAME]]   (builds and runs the `conv_table` binary;
with NAME, only the layers whose name contains it)

For each layer of bigdl_benches::LAYERS (LeNet-5, ResNet-20, ResNet-50,
Inception-v1) and 1 and 2 threads: the median time of forward, backward-data and
backward-weights (PyTorch: F.conv2d and aten.convolution_backward with one output
mask at a time; max pooling with indices and its backward; batch norm through
aten.native_batch_norm(_backward) in training mode; LRN forward and its autograd
backward).
"""
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_MS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
NAME = sys.argv[2:3]


def median_secs(f):
    f()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < MIN_MS / 1e3 and len(times) < 10000):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def ours(threads):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "bigdl-benches", "--bin", "conv_table"], cwd=ROOT, check=True)
    env = dict(os.environ, BIGDL_NUM_THREADS=str(threads))
    env.pop("BIGDL_BENCH_QUANTILE", None)  # medians, as for PyTorch
    out = subprocess.run([os.path.join(ROOT, "target/release/conv_table"), str(MIN_MS), *NAME], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=env).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    geometry = [r for r in rows if "kind" in r]
    return {(r["layer"], r["pass"]): r["secs"] for r in rows if "pass" in r}, geometry


def theirs(threads, geometry):
    torch.set_num_threads(threads)
    res = {}
    with torch.no_grad():
        for L in geometry:
            kind = L["kind"]
            x = torch.full((L["n"], L["c"], L["hw"], L["hw"]), 0.5)
            if kind == "conv":
                w = torch.full((L["oc"], L["c"], L["k"], L["k"]), 0.01)
                b = torch.full((L["oc"],), 0.1)
                st, pd = [L["s"]] * 2, [L["p"]] * 2
                y = F.conv2d(x, w, b, st, pd)
                gy = torch.full_like(y, 0.2)
                res[(L["layer"], "fwd")] = median_secs(lambda: F.conv2d(x, w, b, st, pd))
                bwd = lambda mask: torch.ops.aten.convolution_backward(gy, x, w, [L["oc"]], st, pd, [1, 1], False, [0, 0], 1, mask)
                res[(L["layer"], "bwd_data")] = median_secs(lambda: bwd([True, False, False]))
                res[(L["layer"], "bwd_weight")] = median_secs(lambda: bwd([False, True, True]))
            elif kind == "batchnorm":
                x = (torch.arange(x.numel(), dtype=torch.float32).reshape(x.shape) % 97) * 0.01
                g, b = torch.ones(L["c"]), torch.zeros(L["c"])
                rm, rv = torch.zeros(L["c"]), torch.ones(L["c"])
                res[(L["layer"], "fwd")] = median_secs(lambda: F.batch_norm(x, rm, rv, g, b, True, 0.1, 1e-5))
                _, mean, invstd = torch.ops.aten.native_batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5)
                gy = torch.full_like(x, 0.2)
                res[(L["layer"], "bwd_data")] = median_secs(lambda: torch.ops.aten.native_batch_norm_backward(
                    gy, x, g, rm, rv, mean, invstd, True, 1e-5, [True, True, True]))
            elif kind == "lrn":
                x = (torch.arange(x.numel(), dtype=torch.float32).reshape(x.shape) % 97) * 0.01
                res[(L["layer"], "fwd")] = median_secs(lambda: F.local_response_norm(x, 5, 1e-4, 0.75, 2.0))
                gy = torch.full_like(x, 0.2)
                with torch.enable_grad():
                    xr = x.clone().requires_grad_()
                    y = F.local_response_norm(xr, 5, 1e-4, 0.75, 2.0)
                    res[(L["layer"], "bwd_data")] = median_secs(lambda: torch.autograd.grad(y, xr, gy, retain_graph=True))
            else:
                x = torch.arange(x.numel(), dtype=torch.float32).reshape(x.shape) % 97
                args = (L["k"], L["s"], L["p"], 1, L["ceil"])
                y, idx = F.max_pool2d(x, *args, return_indices=True)
                gy = torch.full_like(y, 0.2)
                res[(L["layer"], "fwd")] = median_secs(lambda: F.max_pool2d(x, *args, return_indices=True))
                res[(L["layer"], "bwd_data")] = median_secs(lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                    gy, x, [L["k"]] * 2, [L["s"]] * 2, [L["p"]] * 2, [1, 1], L["ceil"], idx))
    return res


def main():
    print(f"torch {torch.__version__}, oneDNN (mkldnn) available: {torch.backends.mkldnn.is_available()}")
    print()
    print("| layer | pass | threads | bigdl ms | torch ms | torch / bigdl |")
    print("|---|---|---:|---:|---:|---:|")
    for t in (1, 2):
        a, geometry = ours(t)
        b = theirs(t, geometry)
        for key in a:
            if key in b:
                print(f"| {key[0]} | {key[1]} | {t} | {a[key] * 1e3:.2f} | {b[key] * 1e3:.2f} | {b[key] / a[key]:.2f} |")


if __name__ == "__main__":
    main()
