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
    r"gemm_(default_no_bias|default_vector_bias|default_single_elem_vector_bias|transposeA|transposeB|alpha|beta)|"
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
    r"convtranspose(_pads|_dilations)?|"
    r"lstm_(defaults|with_initial_bias|batchwise|reverse|bidirectional)|"
    r"gru_(defaults|with_initial_bias|batchwise|seq_length|reverse|bidirectional)|"
    r"conv_with_strides_and_asymmetric_padding|maxpool_2d_same_(upper|lower)|"
    r"conv_with_autopad_same|maxpool_2d_precomputed_same_upper|"
    r"simple_rnn_(defaults|with_initial_bias|batchwise|reverse|bidirectional)|rnn_seq_length|"
    r"lstm_with_peepholes"
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
    n = (recurrent_cases() + conv_bn_case() + constant_case() + shared_initializers_case()
         + recurrent_constants_case())
    print(f"{len(cases)} node tests and {n} of our own written to {OUT}", file=sys.stderr)


def write_case(name, model, inputs, outputs):
    sd = os.path.join(OUT, name, "test_data_set_0")
    os.makedirs(sd)
    with open(os.path.join(OUT, name, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    for prefix, tensors in (("input", inputs), ("output", outputs)):
        for j, (k, v) in enumerate(tensors):
            with open(os.path.join(sd, f"{prefix}_{j}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(v, k).SerializeToString())


def conv_bn_case():
    """Conv followed by an inference-mode BatchNormalization (which the
    importer folds into the convolution), against onnx's reference."""
    import numpy as np
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    consts = {
        "W": rng.standard_normal((5, 3, 3, 3)).astype(np.float32),
        "B": rng.standard_normal(5).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, 5).astype(np.float32),
        "beta": rng.standard_normal(5).astype(np.float32),
        "mean": rng.standard_normal(5).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, 5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["X", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["Y"],
                         epsilon=1e-3),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    (y,) = ReferenceEvaluator(model).run(None, {"X": x})
    write_case("test_bigdl_conv_batchnorm", model, [("X", x)], [("Y", y)])
    # The same with every initializer also listed as a graph input, as
    # exporters write with keep_initializers_as_inputs: still one input.
    graph.input.extend(
        helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in consts.items()
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    write_case("test_bigdl_conv_batchnorm_initializers_as_inputs", model, [("X", x)], [("Y", y)])
    return 2


def constant_case():
    """Constant nodes (a tensor value and a list of integers) feeding an Add
    and a Reshape's shape, against onnx's reference."""
    import numpy as np
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    c = rng.standard_normal((3, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c, "c")),
        helper.make_node("Constant", [], ["shape"], value_ints=[0, 12]),
        helper.make_node("Add", ["X", "c"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (y,) = ReferenceEvaluator(model).run(None, {"X": x})
    write_case("test_bigdl_constant_nodes", model, [("X", x)], [("Y", y)])
    return 1


def shared_initializers_case():
    """Identity nodes on initializers, as PyTorch's exporter writes when it
    merges equal initializers (a fresh model's batch-norm statistics, zero
    biases): a convolution's weight through two Identities, another's bias
    and a BatchNormalization's scale (folded into that convolution) through
    one, against onnx's reference."""
    import numpy as np
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(19)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    consts = {
        "W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "B": rng.standard_normal(4).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "beta": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Identity", ["W"], ["W1"]),
        helper.make_node("Identity", ["W1"], ["W2"]),
        helper.make_node("Identity", ["B"], ["B2"]),
        helper.make_node("Identity", ["gamma"], ["gamma2"]),
        helper.make_node("Conv", ["X", "W", "B"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["X", "W2", "B2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["b", "gamma2", "beta", "mean", "var"], ["bn"]),
        helper.make_node("Add", ["a", "bn"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    (y,) = ReferenceEvaluator(model).run(None, {"X": x})
    write_case("test_bigdl_shared_initializers", model, [("X", x)], [("Y", y)])
    return 1


def recurrent_constants_case():
    """A bidirectional LSTM whose weights, peepholes and sequence lengths are
    initializers and whose initial states are Constant nodes: the one input
    is X (also a seed of the ONNX fuzz target). Outputs from ONNX Runtime
    (the reference evaluator ignores sequence_lens)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper

    rng = np.random.default_rng(17)
    t, n, d, h = 4, 3, 5, 3
    x = rng.standard_normal((t, n, d)).astype(np.float32)
    consts = {
        "W": (0.5 * rng.standard_normal((2, 4 * h, d))).astype(np.float32),
        "R": (0.5 * rng.standard_normal((2, 4 * h, h))).astype(np.float32),
        "B": (0.5 * rng.standard_normal((2, 8 * h))).astype(np.float32),
        "lens": np.array([4, 1, 3], np.int32),
        "P": (0.5 * rng.standard_normal((2, 3 * h))).astype(np.float32),
    }
    h0 = rng.standard_normal((2, n, h)).astype(np.float32)
    c0 = rng.standard_normal((2, n, h)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["h0"], value=numpy_helper.from_array(h0, "h0")),
        helper.make_node("Constant", [], ["c0"], value=numpy_helper.from_array(c0, "c0")),
        helper.make_node("LSTM", ["X", "W", "R", "B", "lens", "h0", "c0", "P"], ["Y", "Y_h", "Y_c"],
                         hidden_size=h, direction="bidirectional"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in ("Y", "Y_h", "Y_c")],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ys = sess.run(None, {"X": x})
    write_case("test_bigdl_lstm_constants", model, [("X", x)],
               list(zip(("Y", "Y_h", "Y_c"), ys)))
    return 1


def recurrent_cases():
    """LSTM, GRU and RNN nodes with random weights (ONNX's own recurrent
    tests use equal weights for every gate, so they cannot catch a wrong
    gate order), in every direction, some with a zero initial state given,
    some ("states") with random initial states as graph inputs and, for the
    LSTM, peepholes and the Y_c output; outputs from onnx's reference
    evaluator."""
    import numpy as np
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(7)
    specs = [
        ("LSTM", 4, "forward", 0, {}, False),
        ("LSTM", 4, "bidirectional", 1, {}, False),
        ("GRU", 3, "forward", 0, {"linear_before_reset": 1}, False),
        ("GRU", 3, "bidirectional", 1, {"linear_before_reset": 1}, False),
        ("RNN", 1, "bidirectional", 0, {}, False),
        ("LSTM", 4, "reverse", 0, {}, True),
        ("GRU", 3, "reverse", 1, {"linear_before_reset": 1}, False),
        ("RNN", 1, "forward", 1, {}, True),
        ("GRU", 3, "forward", 0, {}, True),
        ("GRU", 3, "bidirectional", 1, {"linear_before_reset": 0}, False),
        ("LSTM", 4, "bidirectional", 0, {}, "states"),
        ("LSTM", 4, "reverse", 1, {}, "states"),
        ("GRU", 3, "forward", 1, {"linear_before_reset": 1}, "states"),
        ("RNN", 1, "bidirectional", 0, {}, "states"),
        ("LSTM", 4, "bidirectional", 0, {}, "states_lens"),
        ("GRU", 3, "reverse", 0, {"linear_before_reset": 0}, "lens"),
        ("RNN", 1, "forward", 0, {}, "lens"),
        ("GRU", 3, "bidirectional", 0, {"linear_before_reset": 1}, "states_lens"),
        # The default activations spelled out, as some exporters write them.
        ("GRU", 3, "bidirectional", 0,
         {"linear_before_reset": 1, "activations": ["Sigmoid", "Tanh"] * 2}, False),
    ]
    for op, gates, direction, layout, extra, initial in specs:
        t, n, d, h = 5, 3, 4, 6
        dirs = 2 if direction == "bidirectional" else 1
        x = rng.standard_normal((n, t, d) if layout else (t, n, d)).astype(np.float32)
        w = (0.5 * rng.standard_normal((dirs, gates * h, d))).astype(np.float32)
        r = (0.5 * rng.standard_normal((dirs, gates * h, h))).astype(np.float32)
        b = (0.5 * rng.standard_normal((dirs, 2 * gates * h))).astype(np.float32)
        inputs = [("X", x), ("W", w), ("R", r), ("B", b)]
        names = ["X", "W", "R", "B"]
        outputs = ["Y", "Y_h"]
        state_shape = (n, dirs, h) if layout else (dirs, n, h)
        if initial in ("lens", "states_lens"):
            # Sequence lengths from 1 to T: onnx's reference evaluator ignores
            # them, so ONNX Runtime gives the expected outputs.
            names.append("sequence_lens")
            inputs.append(("sequence_lens", np.array([t, 2, 1][:n], np.int32)))
        if initial in ("states", "states_lens"):
            if len(names) == 4:
                names.append("")
            names.append("initial_h")
            inputs.append(("initial_h", rng.standard_normal(state_shape).astype(np.float32)))
            if op == "LSTM":
                names += ["initial_c", "P"]
                inputs.append(("initial_c", rng.standard_normal(state_shape).astype(np.float32)))
                inputs.append(("P", (0.5 * rng.standard_normal((dirs, 3 * h))).astype(np.float32)))
                outputs.append("Y_c")
        elif initial is True:
            # A zero initial state, as exporters write when none is given.
            inputs.append(("initial_h", np.zeros(state_shape, np.float32)))
            names += ["", "initial_h"]
        node = helper.make_node(
            op, names, outputs, hidden_size=h,
            direction=direction, layout=layout, **extra,
        )
        graph = helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs],
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        if isinstance(initial, str) and "lens" in initial:
            import onnxruntime

            model.ir_version = 8
            sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            ys = sess.run(None, dict(inputs))
        else:
            ys = ReferenceEvaluator(model).run(None, dict(inputs))
        suffix = {False: "", True: "_initial_h"}.get(initial, f"_{initial}")
        name = f"test_bigdl_{op.lower()}_{direction}_layout{layout}{suffix}"
        if op == "GRU" and not extra.get("linear_before_reset"):
            name += "_reset_before"
        if "activations" in extra:
            name += "_activations"
        sd = os.path.join(OUT, name, "test_data_set_0")
        os.makedirs(sd)
        with open(os.path.join(OUT, name, "model.onnx"), "wb") as f:
            f.write(model.SerializeToString())
        for j, (k, v) in enumerate(inputs):
            with open(os.path.join(sd, f"input_{j}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(v, k).SerializeToString())
        for j, (k, v) in enumerate(zip(outputs, ys)):
            with open(os.path.join(sd, f"output_{j}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(np.asarray(v, np.float32), k).SerializeToString())
    return len(specs)


if __name__ == "__main__":
    main()
