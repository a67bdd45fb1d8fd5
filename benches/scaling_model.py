#!/usr/bin/env python3
"""Predicted scaling efficiency of synchronous data-parallel ResNet-50
training with bigdl's sharded all-reduce, beyond this machine.

Cost model per iteration (no overlap of communication with compute, as in
BigDL and in DistriOptimizer today):

    T_compute = per-node batch / node throughput
    T_allreduce = 2 (n-1) alpha + 2 (n-1)/n * S / B        (ring / sharded)
    efficiency = T_compute / (T_compute + T_allreduce)

and, for reference, the same with communication fully overlapped with the
backward pass (efficiency = T_compute / max(T_compute, T_allreduce)).

Inputs (flags): node throughput from measured per-core speed, gradient size S
(ResNet-50: 25.56 M parameters; 4 bytes each, 2 with the bf16 wire), link
bandwidth B (line rate times a protocol efficiency), per-message latency
alpha. Usage:

    benches/scaling_model.py [--gflops-per-core 82] [--cores 56] [--batch 64]
"""
import argparse

p = argparse.ArgumentParser()
p.add_argument("--gflops-per-core", type=float, default=82.0,
               help="sustained training GFLOP/s per core (measured: 70%% of the "
                    "117 GFLOP/s AVX-512 peak on ResNet-50's 3x3 layers, BENCHMARKS.md)")
p.add_argument("--cores", type=int, default=56, help="cores per node (2 x 28-core Xeon)")
p.add_argument("--batch", type=int, default=64, help="images per node per iteration")
p.add_argument("--alpha-us", type=float, default=30.0, help="latency per message (TCP)")
p.add_argument("--link-efficiency", type=float, default=0.9,
               help="fraction of line rate that all-reduce attains")
a = p.parse_args()

GFLOP_PER_IMAGE = 3 * 4.1          # forward + backward of ResNet-50, 224 x 224
PARAMS = 25.56e6
node_ips = a.gflops_per_core * a.cores / GFLOP_PER_IMAGE
t_compute = a.batch / node_ips
print(f"node: {a.cores} cores x {a.gflops_per_core:.0f} GFLOP/s -> {node_ips:.0f} images/s; "
      f"batch {a.batch}/node -> T_compute {t_compute * 1e3:.0f} ms; alpha {a.alpha_us:.0f} us; "
      f"links at {a.link_efficiency:.0%} of line rate")
print()
print("| link | wire | " + " | ".join(f"{n} nodes" for n in (4, 16, 64, 128, 256)) + " |")
print("|---|---|" + "---:|" * 5)
for gbe in (10, 25, 100):
    bw = gbe / 8 * 1e9 * a.link_efficiency
    for wire, bytes_per in (("f32", 4), ("bf16", 2)):
        s = PARAMS * bytes_per
        cells = []
        for n in (4, 16, 64, 128, 256):
            t_comm = 2 * (n - 1) * a.alpha_us * 1e-6 + 2 * (n - 1) / n * s / bw
            eff = t_compute / (t_compute + t_comm)
            over = t_compute / max(t_compute, t_comm)
            cells.append(f"{eff:.0%} ({over:.0%})")
        print(f"| {gbe} GbE | {wire} | " + " | ".join(cells) + " |")
print()
print("Each cell: efficiency without overlap (with full overlap in parentheses).")
