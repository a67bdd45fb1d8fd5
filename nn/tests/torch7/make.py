#!/usr/bin/env python3
"""Writes Torch7 .t7 files (binary format, as torch.save writes on 64-bit
Linux) for small nn models, checks them with the independent `torchfile`
reader, and saves the outputs PyTorch computes for the same models, for
nn/tests/torch7.rs. Usage: python3 nn/tests/torch7/make.py
(needs torch, numpy, torchfile)."""
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
import torchfile

OUT = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(5)


class W:
    """A minimal torch7 serializer: nil, numbers, booleans, strings, tables,
    nn objects, FloatTensors with their FloatStorage."""

    def __init__(self, ascii=False):
        self.out = bytearray()
        self.next_id = 1
        # torch.save(f, x, 'ascii'): numbers as text ("%d", "%.17g", floats
        # "%.9g"), one write call per line; strings and bytes raw, then a
        # newline.
        self.ascii = ascii

    def int(self, v):
        self.out += f"{v}\n".encode() if self.ascii else struct.pack("<i", v)

    def long(self, v):
        self.out += f"{v}\n".encode() if self.ascii else struct.pack("<q", v)

    def double(self, v):
        self.out += ("%.17g\n" % v).encode() if self.ascii else struct.pack("<d", v)

    def floats(self, a):
        if self.ascii:
            self.out += (" ".join("%.9g" % x for x in a.ravel()) + "\n").encode()
        else:
            self.out += a.tobytes()

    def longs(self, vs):
        if self.ascii:
            self.out += (" ".join(str(v) for v in vs) + "\n").encode()
        else:
            self.out += b"".join(struct.pack("<q", v) for v in vs)

    def string(self, s):
        b = s.encode() if isinstance(s, str) else s
        self.int(len(b))
        self.out += b + (b"\n" if self.ascii else b"")

    def obj(self, v):
        if v is None:
            self.int(0)
        elif isinstance(v, bool):
            self.int(5)
            self.int(1 if v else 0)
        elif isinstance(v, (int, float)):
            self.int(1)
            self.double(float(v))
        elif isinstance(v, str):
            self.int(2)
            self.string(v)
        elif isinstance(v, np.ndarray):
            self.tensor(v)
        elif isinstance(v, Module):
            self.int(4)
            self.int(self.fresh())
            self.string("V 1")
            self.string(v.cls)
            self.obj(v.fields)
        elif isinstance(v, dict):
            self.int(3)
            self.int(self.fresh())
            self.int(len(v))
            for k, x in v.items():
                self.obj(k)
                self.obj(x)
        elif isinstance(v, list):
            self.obj({i + 1: x for i, x in enumerate(v)})
        else:
            raise TypeError(v)

    def fresh(self):
        self.next_id += 1
        return self.next_id

    def tensor(self, a):
        a = np.ascontiguousarray(a, dtype=np.float32)
        self.int(4)
        self.int(self.fresh())
        self.string("V 1")
        self.string("torch.FloatTensor")
        self.int(a.ndim)
        for d in a.shape:
            self.long(d)
        strides = [s // 4 for s in a.strides]
        for s in strides:
            self.long(s)
        self.long(1)  # storage offset, 1-based
        self.int(4)
        self.int(self.fresh())
        self.string("V 1")
        self.string("torch.FloatStorage")
        self.long(a.size)
        self.floats(a)


class Module:
    def __init__(self, cls, **fields):
        self.cls = cls
        self.fields = fields


def r(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


x = r(2, 3, 7, 7)
w1, b1 = r(4, 3 * 3 * 3), r(4)  # SpatialConvolutionMM keeps a 2-D weight
mean, var = r(4), r(4, lo=0.5, hi=1.5)
g, b = r(4, lo=0.5, hi=1.5), r(4)
w2 = r(4, 4, 1, 1)
wl, bl = r(6, 4 * 4 * 4), r(6)
model = Module(
    "nn.Sequential",
    modules=[
        Module("nn.SpatialConvolutionMM", nInputPlane=3, nOutputPlane=4, kW=3, kH=3, dW=1, dH=1,
               padW=1, padH=1, weight=w1, bias=b1),
        Module("nn.SpatialBatchNormalization", running_mean=mean, running_var=var, weight=g, bias=b,
               eps=1e-5, momentum=0.1, train=False),
        Module("nn.ReLU", threshold=0, val=0, inplace=False),
        Module("nn.SpatialMaxPooling", kW=2, kH=2, dW=2, dH=2, padW=0, padH=0, ceil_mode=True),
        Module("nn.ConcatTable", modules=[
            Module("nn.SpatialConvolution", nInputPlane=4, nOutputPlane=4, kW=1, kH=1, dW=1, dH=1,
                   padW=0, padH=0, weight=w2),
            Module("nn.Identity"),
        ]),
        Module("nn.CAddTable"),
        Module("nn.View", size=None, numElements=64),  # size filled below
        Module("nn.Linear", weight=wl, bias=bl),
        Module("nn.LogSoftMax"),
    ],
    train=False,
)
# nn.View's size is a LongStorage: write it by hand.
w = W()


def write_model(w, m):
    w.int(4)
    w.int(w.fresh())
    w.string("V 1")
    w.string(m.cls)
    w.int(3)
    w.int(w.fresh())
    w.int(len(m.fields))
    for k, v in m.fields.items():
        w.obj(k)
        if k == "size" and m.cls == "nn.View":
            w.int(4)
            w.int(w.fresh())
            w.string("V 1")
            w.string("torch.LongStorage")
            w.long(1)
            w.longs([64])
        elif isinstance(v, list):
            w.int(3)
            w.int(w.fresh())
            w.int(len(v))
            for i, sub in enumerate(v):
                w.obj(i + 1)
                write_model(w, sub)
        else:
            w.obj(v)


write_model(w, model)
path = os.path.join(OUT, "net.t7")
open(path, "wb").write(bytes(w.out))
# The same model in the ASCII variant.
wa = W(ascii=True)
write_model(wa, model)
open(os.path.join(OUT, "net_ascii.t7"), "wb").write(bytes(wa.out))
# The independent reader must agree on the structure.
loaded = torchfile.load(path)
assert loaded._typename == b"nn.Sequential", loaded._typename
assert len(loaded.modules) == 9
assert np.allclose(loaded.modules[0].weight, w1)

t = torch.from_numpy
y = F.conv2d(t(x), t(w1).reshape(4, 3, 3, 3), t(b1), padding=1)
y = (y - t(mean)[None, :, None, None]) / torch.sqrt(t(var)[None, :, None, None] + 1e-5)
y = F.relu(y * t(g)[None, :, None, None] + t(b)[None, :, None, None])
y = F.max_pool2d(y, 2, 2, ceil_mode=True)  # 7 -> 4
y = F.conv2d(y, t(w2)) + y
y = F.log_softmax(F.linear(y.reshape(2, 64), t(wl), t(bl)), dim=1)
np.save(os.path.join(OUT, "net.x.npy"), x)
np.save(os.path.join(OUT, "net.y.npy"), y.numpy())

# A file holding a serialized Lua function, which must be rejected.
w = W()
w.int(6)
w.int(2)
w.int(4)
w.out += b"\x1bLua"
w.int(0)
open(os.path.join(OUT, "function.t7"), "wb").write(bytes(w.out))
print("wrote", OUT)
