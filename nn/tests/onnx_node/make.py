#!/usr/bin/env python3
"""Writes ONNX's own backend node tests (model.onnx, test_data_set_*/input_*.pb,
output_*.pb) for the operators bigdl's importer covers into this directory.

The `onnx` wheel no longer ships `backend/test/data/node`; its test-case
definitions (`onnx.backend.test.case.node`) still do, and this script renders
them the way onnx's own `generate-data` renders the model tests.
Usage: python3 nn/tests/onnx_node/make.py   (needs `pip install onnx numpy`)
"""
import os
import re
import shutil
import sys

from onnx import numpy_helper
from onnx.backend.test.case import node

OUT = os.path.dirname(os.path.abspath(__file__))
# The tests nn/tests/onnx.rs runs (a regular expression over test names).
WANTED = re.compile(
    r"^test_("
    r"relu|sigmoid(_example)?|tanh(_example)?|abs|exp(_example)?|log(_example)?|sqrt(_example)?|neg(_example)?|"
    r"softplus(_example)?|leakyrelu(_default|_example)?|elu(_default|_example)?|"
    r"clip(_example|_inbounds|_outbounds|_splitbounds)?|"
    r"add(_bcast)?|mul(_bcast|_example)?|"
    r"basic_conv_with_padding|basic_conv_without_padding|conv_with_strides_padding|conv_with_strides_no_padding|"
    r"gemm_(default_no_bias|default_vector_bias|default_single_elem_vector_bias|transposeB|alpha|beta)|"
    r"maxpool_2d_(default|pads|strides|ceil|precomputed_pads|precomputed_strides)|"
    r"averagepool_2d_(default|pads|strides|ceil|pads_count_include_pad|precomputed_pads|precomputed_strides|precomputed_pads_count_include_pad)|"
    r"globalaveragepool(_precomputed)?|"
    r"batchnorm_(example|epsilon)|lrn(_default)?|"
    r"flatten_(axis1|default_axis)|"
    r"softmax_(default_axis|example|large_number)|logsoftmax_(default_axis|example_1|large_number)|"
    r"transpose_(default|all_permutations_\d)|"
    r"concat_(2d_axis_[01]|3d_axis_[012])|"
    r"identity|dropout_default|"
    r"sub(_bcast|_example)?|div(_bcast|_example)?|sum_(example|one_input|two_inputs)|"
    r"reshape_(reduced_dims|extended_dims|negative_dim|one_dim|reordered_all_dims|reordered_last_dims)|"
    r"squeeze|unsqueeze_axis_[0-3]|constant_pad|"
    r"convtranspose(_pads|_dilations)?"
    r")$"
)


def main():
    cases = [c for c in node.collect_testcases(None) if WANTED.match(c.name)]
    for old in os.listdir(OUT):
        if old.startswith("test_"):
            shutil.rmtree(os.path.join(OUT, old))
    for case in cases:
        d = os.path.join(OUT, case.name)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            sd = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(sd)
            for j, x in enumerate(inputs):
                name = case.model.graph.input[j].name
                with open(os.path.join(sd, f"input_{j}.pb"), "wb") as f:
                    f.write(numpy_helper.from_array(x, name).SerializeToString())
            for j, y in enumerate(outputs):
                name = case.model.graph.output[j].name
                with open(os.path.join(sd, f"output_{j}.pb"), "wb") as f:
                    f.write(numpy_helper.from_array(y, name).SerializeToString())
    print(f"{len(cases)} node tests written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
