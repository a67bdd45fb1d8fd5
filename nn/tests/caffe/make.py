#!/usr/bin/env python3
"""Writes small Caffe networks (deploy .prototxt and binary .caffemodel, the
latter hand-encoded in the protobuf wire format of caffe.proto) and the
outputs PyTorch computes for them with Caffe's semantics, for
nn/tests/caffe.rs. Usage: python3 nn/tests/caffe/make.py (needs torch, numpy)."""
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(3)


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(n, wire, payload):
    return varint((n << 3) | wire) + payload


def ld(n, b):
    return field(n, 2, varint(len(b)) + b)


def packed_floats(n, a):
    return ld(n, struct.pack(f"<{a.size}f", *a.ravel()))


def blob(a, legacy=False):
    a = np.asarray(a, dtype=np.float32)
    if legacy:  # num, channels, height, width (fields 1-4)
        dims = [1] * (4 - a.ndim) + list(a.shape)
        head = b"".join(field(i + 1, 0, varint(d)) for i, d in enumerate(dims))
    else:  # shape = 7 { dim = 1 (packed) }
        head = ld(7, ld(1, b"".join(varint(d) for d in a.shape)))
    return head + packed_floats(5, a)


def layer(name, blobs, legacy=False):
    if legacy:  # V1LayerParameter: name 4, blobs 6
        return ld(2, ld(4, name.encode()) + b"".join(ld(6, blob(b, True)) for b in blobs))
    return ld(100, ld(1, name.encode()) + b"".join(ld(7, blob(b)) for b in blobs))


def r(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


# --- A current-format network: conv, BN + Scale, in-place ReLU, ceil-mode
# max pooling, a split into two branches joined by Eltwise SUM (with
# coefficients) and MAX, LRN, padded
# average pooling, InnerProduct, Softmax.
x = r(2, 3, 8, 8)
w1, b1 = r(4, 3, 3, 3), r(4)
mean, var, sf = r(4), r(4, lo=0.5, hi=1.5), np.array([2.0], np.float32)
gamma, beta = r(4, lo=0.5, hi=1.5), r(4)
w2, b2 = r(4, 2, 1, 1), r(4)
wfc, bfc = r(5, 4 * 3 * 3), r(5)
proto = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { eps: 1e-5 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }   # ceil: 8 -> 4
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 4 kernel_size: 1 group: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "pool1" bottom: "conv2" top: "sum"
        eltwise_param { operation: SUM coeff: 0.5 coeff: -1.5 } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "pool1" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "norm" type: "LRN" bottom: "max" top: "norm"
        lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 k: 2 } }
layer { name: "pool2" type: "Pooling" bottom: "norm" top: "pool2"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 } }   # 4 -> 3
layer { name: "fc" type: "InnerProduct" bottom: "pool2" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
model = (
    layer("conv1", [w1, b1]) + layer("bn1", [mean * sf, var * sf, sf]) + layer("scale1", [gamma, beta])
    + layer("conv2", [w2, b2]) + layer("fc", [wfc, bfc])
)
t = torch.from_numpy
y = F.conv2d(t(x), t(w1), t(b1), padding=1)
y = (y - t(mean)[None, :, None, None]) / torch.sqrt(t(var)[None, :, None, None] + 1e-5)
y = F.relu(y * t(gamma)[None, :, None, None] + t(beta)[None, :, None, None])
p1 = F.max_pool2d(y, 3, 2, ceil_mode=True)
s = 0.5 * p1 - 1.5 * F.conv2d(p1, t(w2), t(b2), groups=2)
m = torch.maximum(s, p1)
n = F.local_response_norm(m, 3, alpha=0.1, beta=0.75, k=2.0)
p2 = F.avg_pool2d(n, 2, 2, padding=1, ceil_mode=True, count_include_pad=True)
prob = F.softmax(F.linear(p2.flatten(1), t(wfc), t(bfc)), dim=1)
open(os.path.join(OUT, "tiny.prototxt"), "w").write(proto)
open(os.path.join(OUT, "tiny.caffemodel"), "wb").write(model)
np.save(os.path.join(OUT, "tiny.x.npy"), x)
np.save(os.path.join(OUT, "tiny.y.npy"), prob.numpy())

# --- A legacy V1 network (`layers`, enum types, 4-D legacy blobs).
x2 = r(2, 2, 5, 5)
wc, bc = r(3, 2, 3, 3), r(3)
wi, bi = r(4, 3 * 3 * 3), r(4)
proto_v1 = """
name: "legacy"
input: "data"
input_dim: 2 input_dim: 2 input_dim: 5 input_dim: 5
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
         convolution_param { num_output: 3 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "ip" type: INNER_PRODUCT bottom: "conv" top: "ip" inner_product_param { num_output: 4 } }
"""
model_v1 = layer("conv", [wc, bc], True) + layer("ip", [wi, bi], True)
y2 = F.linear(F.relu(F.conv2d(t(x2), t(wc), t(bc))).flatten(1), t(wi), t(bi))
open(os.path.join(OUT, "legacy.prototxt"), "w").write(proto_v1)
open(os.path.join(OUT, "legacy.caffemodel"), "wb").write(model_v1)
np.save(os.path.join(OUT, "legacy.x.npy"), x2)
np.save(os.path.join(OUT, "legacy.y.npy"), y2.numpy())

# --- Slice (with slice points), Eltwise MAX, Concat and Reshape (batch
# copied with 0, a dimension inferred with -1).
x3 = r(2, 6, 4, 4)
wb, bb = r(2, 3, 1, 1), r(2)
proto_slice = """
name: "slice"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 4 dim: 4 } } }
layer { name: "slice" type: "Slice" bottom: "data" top: "a" top: "b" top: "c"
        slice_param { axis: 1 slice_point: 2 slice_point: 5 } }
layer { name: "conv" type: "Convolution" bottom: "b" top: "cb" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "max" type: "Eltwise" bottom: "a" bottom: "cb" top: "max" eltwise_param { operation: MAX } }
layer { name: "cat" type: "Concat" bottom: "max" bottom: "c" top: "cat" }
layer { name: "r1" type: "Reshape" bottom: "cat" top: "r1" reshape_param { shape { dim: 0 dim: 3 dim: 16 } } }
layer { name: "r2" type: "Reshape" bottom: "r1" top: "r2" reshape_param { shape { dim: 0 dim: -1 } } }
"""
xt = t(x3)
a, b, c = xt[:, :2], xt[:, 2:5], xt[:, 5:]
y3 = torch.cat([torch.maximum(a, F.conv2d(b, t(wb), t(bb))), c], 1).reshape(2, -1)
open(os.path.join(OUT, "slice.prototxt"), "w").write(proto_slice)
open(os.path.join(OUT, "slice.caffemodel"), "wb").write(layer("conv", [wb, bb]))
np.save(os.path.join(OUT, "slice.x.npy"), x3)
np.save(os.path.join(OUT, "slice.y.npy"), y3.numpy())
print("wrote", OUT)
