#!/usr/bin/env python3
"""ResNet-50 inference (224 x 224, random weights, evaluation mode) at batch
1 and 32: bigdl (`bigdl bench model` on the ONNX file) next to ONNX Runtime
and PyTorch, 2 threads each, in the same run. Also checks that bigdl's
output matches ONNX Runtime's on the same input.

    benches/resnet50_peers.py [MIN_SECONDS]       (default 10 per cell)

Needs `pip install torch onnx onnxruntime numpy` and
`cargo build --release -p bigdl-cli`.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

THREADS = 2
MIN_S = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIGDL = os.path.join(ROOT, "target", "release", "bigdl")


class Bottleneck(nn.Module):
    def __init__(self, cin, mid, stride):
        super().__init__()
        cout = 4 * mid
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def resnet50():
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, mid, stride if b == 0 else 1))
            cin = 4 * mid
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


def median_time(f):
    f()
    times, t0 = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - t0 < MIN_S:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    model = resnet50().eval()
    # Non-trivial batch-norm statistics.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "resnet50.onnx")
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), path, opset_version=17,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    # Correctness: bigdl predict against ONNX Runtime on 4 images.
    x = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    np.save(os.path.join(tmp, "x.npy"), x)
    env = dict(os.environ, BIGDL_NUM_THREADS=str(THREADS))
    subprocess.run([BIGDL, "predict", "--model", path, "--input", os.path.join(tmp, "x.npy"),
                    "--output", os.path.join(tmp, "y.npy")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    ours = np.load(os.path.join(tmp, "y.npy"))
    want = sess.run(None, {"x": x})[0]
    err = np.abs(ours - want).max() / np.abs(want).max()
    print(f"bigdl vs ONNX Runtime on 4 images: max |difference| / max |output| = {err:.2e}")

    gflop = 2 * 4.09  # 4.09 G multiply-adds per image (convolutions and the classifier)
    print(f"\n{THREADS} threads; median over at least {MIN_S:.0f} s per cell\n")
    print("| batch | impl | ms/batch | images/s | GFLOP/s | bigdl vs impl |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch in (1, 32):
        xb = np.random.default_rng(1).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        out = subprocess.run([BIGDL, "bench", "model", "--model", path, "--shape",
                              f"{batch},3,224,224", "--min-ms", str(int(MIN_S * 1000))],
                             check=True, env=env, capture_output=True, text=True).stdout
        ms = float(re.search(r"median ([0-9.]+) ms", out).group(1))
        load = float(re.search(r"load ([0-9.]+) ms", out).group(1))
        rows = [("bigdl", ms / 1e3)]
        rows.append(("onnxruntime", median_time(lambda: sess.run(None, {"x": xb}))))
        xt = torch.from_numpy(xb)
        with torch.inference_mode():
            rows.append(("pytorch", median_time(lambda: model(xt))))
        ours_t = rows[0][1]
        for name, t in rows:
            ratio = "" if name == "bigdl" else f"{t / ours_t:.2f}x"
            print(f"| {batch} | {name} | {t * 1e3:.1f} | {batch / t:.1f} | "
                  f"{gflop * batch / t:.1f} | {ratio} |")
    print(f"\nbigdl model load (ONNX, {os.path.getsize(path) / 1e6:.0f} MB): {load:.0f} ms")


if __name__ == "__main__":
    main()
