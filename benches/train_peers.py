#!/usr/bin/env python3
"""Training and inference images/s of LeNet-5 (BigDL's definition, batch 128,
SGD lr 0.05) and ResNet-20 (CIFAR-10 shape, batch 128, SGD momentum 0.9) in
bigdl-rs, PyTorch and TensorFlow/Keras, 2 threads each, in the same run, on
synthetic data; peak resident memory of each process.

Usage: benches/train_peers.py [LENET_ITERS [RESNET_ITERS]]   (needs torch and
tensorflow-cpu from PyPI for the peers; a missing peer is reported, not fatal)

Each framework runs in its own process (`--worker NAME MODEL BATCH ITERS`), so
peak memory is per framework. Each cell is the median over the timed
iterations after two warm-up iterations. Prints a Markdown table.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

THREADS = 2
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def data(shape, batch, iters, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((iters + 2, batch) + shape).astype("float32")
    y = rng.integers(0, 10, size=(iters + 2, batch))
    return x, y


def torch_worker(model, batch, iters):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    torch.manual_seed(1)
    if model == "lenet5":
        net = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.MaxPool2d(2, 2), nn.Tanh(),
            nn.Conv2d(6, 12, 5), nn.MaxPool2d(2, 2), nn.Flatten(),
            nn.Linear(192, 100), nn.Tanh(), nn.Linear(100, 10), nn.LogSoftmax(dim=1),
        )
        shape, opt = (1, 28, 28), lambda p: torch.optim.SGD(p, lr=0.05)
    else:
        def conv_bn(cin, cout, k, s, p):
            return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout))

        class Block(nn.Module):
            def __init__(self, cin, cout, s):
                super().__init__()
                self.branch = nn.Sequential(conv_bn(cin, cout, 3, s, 1), nn.ReLU(), conv_bn(cout, cout, 3, 1, 1))
                self.short = conv_bn(cin, cout, 1, s, 0) if (s != 1 or cin != cout) else nn.Identity()

            def forward(self, x):
                return F.relu(self.branch(x) + self.short(x))

        layers, cin = [conv_bn(3, 16, 3, 1, 1), nn.ReLU()], 16
        for stage, cout in enumerate([16, 32, 64]):
            for b in range(3):
                layers.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10), nn.LogSoftmax(dim=1)]
        net = nn.Sequential(*layers)
        shape, opt = (3, 32, 32), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)
    x, y = data(shape, batch, iters)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    o = opt(net.parameters())
    train = []
    net.train()
    for i in range(iters + 2):
        t0 = time.perf_counter()
        o.zero_grad()
        loss = F.nll_loss(net(x[i]), y[i])
        loss.backward()
        o.step()
        if i >= 2:
            train.append(batch / (time.perf_counter() - t0))
    net.eval()
    infer = []
    with torch.no_grad():
        for i in range(iters + 2):
            t0 = time.perf_counter()
            net(x[i])
            if i >= 2:
                infer.append(batch / (time.perf_counter() - t0))
    return statistics.median(train), statistics.median(infer)


def keras_worker(model, batch, iters):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(1)
    L = tf.keras.layers
    if model == "lenet5":
        inp = tf.keras.Input((28, 28, 1))
        h = L.Conv2D(6, 5, activation="tanh")(inp)
        h = L.MaxPooling2D(2)(h)
        h = L.Activation("tanh")(h)
        h = L.Conv2D(12, 5)(h)
        h = L.MaxPooling2D(2)(h)
        h = L.Flatten()(h)
        h = L.Dense(100, activation="tanh")(h)
        out = L.Dense(10)(h)
        shape, opt = (28, 28, 1), tf.keras.optimizers.SGD(0.05)
    else:
        def conv_bn(x, c, k, s):
            x = L.Conv2D(c, k, s, padding="same", use_bias=False)(x)
            return L.BatchNormalization()(x)

        inp = tf.keras.Input((32, 32, 3))
        h = L.ReLU()(conv_bn(inp, 16, 3, 1))
        cin = 16
        for stage, c in enumerate([16, 32, 64]):
            for b in range(3):
                s = 2 if stage > 0 and b == 0 else 1
                br = conv_bn(L.ReLU()(conv_bn(h, c, 3, s)), c, 3, 1)
                sc = conv_bn(h, c, 1, s) if (s != 1 or cin != c) else h
                h = L.ReLU()(L.Add()([br, sc]))
                cin = c
        h = L.GlobalAveragePooling2D()(h)
        out = L.Dense(10)(h)
        shape, opt = (32, 32, 3), tf.keras.optimizers.SGD(0.1, momentum=0.9)
    net = tf.keras.Model(inp, out)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = data(shape, batch, iters)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, net(xb, training=True))
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    @tf.function
    def infer_step(xb):
        return net(xb, training=False)

    train, infer = [], []
    for i in range(iters + 2):
        t0 = time.perf_counter()
        step(x[i], y[i]).numpy()
        if i >= 2:
            train.append(batch / (time.perf_counter() - t0))
    for i in range(iters + 2):
        t0 = time.perf_counter()
        infer_step(x[i]).numpy()
        if i >= 2:
            infer.append(batch / (time.perf_counter() - t0))
    return statistics.median(train), statistics.median(infer)


def worker(name, model, batch, iters):
    f = {"torch": torch_worker, "keras": keras_worker}[name]
    tr, inf = f(model, batch, iters)
    print(json.dumps({"impl": name, "model": model, "batch": batch, "train_ips": tr,
                      "infer_ips": inf, "peak_mib": peak_mib()}))


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    lenet_iters = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    resnet_iters = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "bigdl-benches", "--bin", "train_table"],
                   cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "train_table")
    env = dict(os.environ, BIGDL_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    rows = []
    for model, iters in [("lenet5", lenet_iters), ("resnet20", resnet_iters)]:
        res = {"bigdl": run([exe, model, "128", str(iters)], env)}
        for peer in ["torch", "keras"]:
            res[peer] = run([sys.executable, os.path.abspath(__file__), "--worker", peer, model, "128", str(iters)], env)
        rows.append((model, res))
    print(f"2 threads, batch 128; LeNet-5 {lenet_iters} and ResNet-20 {resnet_iters} timed iterations\n")
    print("| model | impl | train img/s | infer img/s | peak MiB | train vs best peer |")
    print("|---|---|---:|---:|---:|---:|")
    for model, res in rows:
        peers = [r["train_ips"] for k, r in res.items() if k != "bigdl" and "train_ips" in r]
        best = max(peers) if peers else float("nan")
        for k, r in res.items():
            if "error" in r:
                print(f"| {model} | {k} | - | - | - | ({r['error']}) |")
                continue
            ratio = f"{r['train_ips'] / best:.2f}" if k == "bigdl" and peers else ""
            print(f"| {model} | {k} | {r['train_ips']:.0f} | {r['infer_ips']:.0f} | {r['peak_mib']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
