#!/usr/bin/env python3
"""Checks an ONNX file written by `bigdl convert --onnx SHAPE` with the onnx
package's own tools: the full checker (with shape inference) and the
reference evaluator, whose output is compared with bigdl's.

Usage: check_export.py MODEL.onnx X.npy Y.npy   (Y.npy from `bigdl predict`)
"""
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

model, x, y = onnx.load(sys.argv[1]), np.load(sys.argv[2]), np.load(sys.argv[3])
onnx.checker.check_model(model, full_check=True)
r = ReferenceEvaluator(model).run(None, {"input": x})[0]
diff = np.abs(r - y)
print(f"checker ok; max |diff| {diff.max():.3g}, max relative {(diff / (np.abs(y) + 1e-3)).max():.3g}")
