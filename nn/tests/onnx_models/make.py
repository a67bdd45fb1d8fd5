#!/usr/bin/env python3
"""Exports small PyTorch models to ONNX (opset 13) with an input, PyTorch's
output and ONNX Runtime's output, for nn/tests/onnx.rs.
Usage: python3 nn/tests/onnx_models/make.py (needs torch, onnx, onnxruntime).
Seeded: re-running gives the same files."""
import os

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(7)


class Net(nn.Module):
    """A LeNet-style CNN with batch norm, a residual add and both poolings."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        y = torch.relu(self.bn(self.c1(x)))
        y = y + torch.tanh(self.c2(y))
        y = self.avg(self.pool(y))
        return torch.log_softmax(self.fc(torch.flatten(y, 1)), dim=-1)


net = Net()
with torch.no_grad():
    net.bn.running_mean.uniform_(-0.5, 0.5)
    net.bn.running_var.uniform_(0.5, 1.5)
net.eval()
x = torch.randn(2, 3, 8, 8)
torch.onnx.export(net, (x,), os.path.join(OUT, "cnn.onnx"), opset_version=13, dynamo=False,
                  input_names=["x"], output_names=["y"])
np.save(os.path.join(OUT, "cnn.x.npy"), x.numpy())
np.save(os.path.join(OUT, "cnn.y.npy"), net(x).detach().numpy())
import onnxruntime

sess = onnxruntime.InferenceSession(os.path.join(OUT, "cnn.onnx"), providers=["CPUExecutionProvider"])
np.save(os.path.join(OUT, "cnn.ort.npy"), sess.run(None, {"x": x.numpy()})[0])
print("wrote", OUT)
