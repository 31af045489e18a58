"""The ONNX frontend: one focused test per ONNX operator and attribute variant on small
models built with onnx.helper, the real MNIST model, the NCHW/NHWC boundary, the folds
(BatchNormalization, constant Transpose, bias Add, flatten before a dense layer) and the
errors for what is not supported. Outputs must match onnxruntime within 1e-4 x range.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import model_builders as mb  # noqa: E402
from conftest import SHARED_MODELS  # noqa: E402

from microtvm_tasks.compiler import compile_model, load_model  # noqa: E402
from microtvm_tasks.compiler.passes import run_passes  # noqa: E402
from microtvm_tasks.errors import CompileError  # noqa: E402

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime", reason="onnxruntime is the reference")
if __import__("shutil").which("gcc") is None:
    pytest.skip("gcc is needed to build the generated C", allow_module_level=True)
from onnx import helper  # noqa: E402

MNIST = SHARED_MODELS / "mnist-8.onnx"
_RNG = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    return _RNG.uniform(-1, 1, shape).astype(np.float32)


def _conv(x_shape, w_shape, y_shape, bias=True, **attrs):
    consts = {"W": _w(*w_shape)}
    if bias:
        consts["B"] = _w(w_shape[0])
    return mb.onnx_single("Conv", [x_shape], y_shape, consts=consts, **attrs)


def _chain(nodes, x_shapes, y_shape, consts, opset=13, name="chain"):
    ins = [mb.onnx_value(f"x{i}", s) for i, s in enumerate(x_shapes)]
    return mb.onnx_model(nodes, ins, [mb.onnx_value("y", y_shape)],
                         [mb.onnx_const(k, v) for k, v in consts.items()], opset=opset, name=name)


def _bn_consts(c):
    return {"gamma": _w(c) + 1.5, "beta": _w(c), "mean": _w(c) * 0.3,
            "var": np.abs(_w(c)) + 0.5}


N = helper.make_node

CASES = {
    # Conv
    "conv_same_upper": lambda: _conv((1, 3, 9, 9), (4, 3, 3, 3), (1, 4, 9, 9), auto_pad="SAME_UPPER"),
    "conv_valid": lambda: _conv((1, 3, 9, 9), (4, 3, 3, 3), (1, 4, 7, 7)),
    "conv_pads_1_symmetric": lambda: _conv((1, 3, 8, 8), (5, 3, 3, 3), (1, 5, 8, 8), pads=[1, 1, 1, 1]),
    "conv_pads_stride2_not_tflite": lambda: _conv((1, 3, 8, 8), (4, 3, 3, 3), (1, 4, 4, 4),
                                                 pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv_asymmetric_pads": lambda: _conv((1, 2, 7, 6), (3, 2, 3, 2), (1, 3, 8, 8), pads=[2, 0, 1, 3]),
    "conv_pads_stride2_pytorch_even": lambda: _conv((1, 3, 10, 10), (4, 3, 3, 3), (1, 4, 5, 5),
                                                    pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv_pads_top_left_only": lambda: _conv((1, 2, 6, 6), (3, 2, 3, 3), (1, 3, 6, 6), pads=[2, 2, 0, 0]),
    "conv_pads_dilated_stride2": lambda: _conv((1, 2, 9, 8), (3, 2, 3, 3), (1, 3, 5, 4),
                                               pads=[2, 1, 2, 0], strides=[2, 2], dilations=[2, 2]),
    "conv_pads_larger_than_kernel": lambda: _conv((1, 2, 4, 4), (3, 2, 2, 2), (1, 3, 8, 4),
                                                  pads=[3, 0, 2, 1]),
    "conv_1x1_pads_stride2": lambda: _conv((1, 3, 5, 5), (4, 3, 1, 1), (1, 4, 4, 4), pads=[1, 1, 1, 1],
                                           strides=[2, 2]),
    "conv_depthwise_pads_stride2_pytorch": lambda: _conv((1, 4, 8, 8), (4, 1, 3, 3), (1, 4, 4, 4), group=4,
                                                         pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv_depthwise_multiplier2_asymmetric_pads": lambda: _conv((1, 2, 6, 7), (4, 1, 3, 3), (1, 4, 7, 6),
                                                               group=2, pads=[2, 0, 1, 1]),
    "conv_same_lower_stride2": lambda: _conv((1, 2, 8, 8), (3, 2, 3, 3), (1, 3, 4, 4), strides=[2, 2],
                                             auto_pad="SAME_LOWER"),
    "conv_stride2_valid": lambda: _conv((1, 3, 9, 10), (4, 3, 3, 3), (1, 4, 4, 4), strides=[2, 2]),
    "conv_dilation2": lambda: _conv((1, 3, 9, 9), (4, 3, 3, 3), (1, 4, 5, 5), dilations=[2, 2]),
    "conv_no_bias_1x1": lambda: _conv((1, 6, 5, 5), (4, 6, 1, 1), (1, 4, 5, 5), bias=False),
    "conv_depthwise": lambda: _conv((1, 4, 8, 8), (4, 1, 3, 3), (1, 4, 8, 8), group=4,
                                    pads=[1, 1, 1, 1]),
    "conv_depthwise_multiplier2_s2": lambda: _conv((1, 3, 9, 9), (6, 1, 3, 3), (1, 6, 4, 4), group=3,
                                                   strides=[2, 2]),
    "conv_single_channel_input": lambda: _conv((1, 1, 6, 6), (3, 1, 3, 3), (1, 3, 4, 4)),
    # BatchNormalization
    "conv_batchnorm_folded": lambda: _chain(
        [N("Conv", ["x0", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
         N("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], epsilon=1e-3)],
        [(1, 3, 6, 6)], (1, 4, 6, 6), {"W": _w(4, 3, 3, 3), "B": _w(4), **_bn_consts(4)}),
    "batchnorm_alone": lambda: _chain(
        [N("BatchNormalization", ["x0", "gamma", "beta", "mean", "var"], ["y"])],
        [(1, 3, 4, 5)], (1, 3, 4, 5), _bn_consts(3)),
    # Gemm / MatMul
    "gemm_transB_bias": lambda: mb.onnx_single("Gemm", [(2, 6)], (2, 4),
                                               consts={"B": _w(4, 6), "C": _w(4)}, transB=1),
    "gemm_alpha_beta": lambda: mb.onnx_single("Gemm", [(1, 6)], (1, 4),
                                              consts={"B": _w(6, 4), "C": _w(1, 4)}, alpha=0.5, beta=2.0),
    "gemm_no_bias": lambda: mb.onnx_single("Gemm", [(1, 5)], (1, 3), consts={"B": _w(5, 3)}),
    "matmul_add_bias": lambda: _chain(
        [N("MatMul", ["x0", "W"], ["m"]), N("Add", ["m", "b"], ["y"])], [(1, 8)], (1, 5),
        {"W": _w(8, 5), "b": _w(5)}),
    "matmul_3d_input": lambda: mb.onnx_single("MatMul", [(2, 3, 5)], (2, 3, 4), consts={"W": _w(5, 4)}),
    # element-wise
    "add_two_inputs_4d": lambda: mb.onnx_single("Add", [(1, 3, 4, 5), (1, 3, 4, 5)], (1, 3, 4, 5)),
    "add_channel_constant_4d": lambda: mb.onnx_single("Add", [(1, 3, 4, 5)], (1, 3, 4, 5),
                                                      consts={"c": _w(3, 1, 1)}),
    "sub_broadcast_2d": lambda: mb.onnx_single("Sub", [(3, 4), (1, 4)], (3, 4)),
    "mul_constant_scalar": lambda: mb.onnx_single("Mul", [(1, 2, 3, 3)], (1, 2, 3, 3),
                                                  consts={"s": np.array(1.7, np.float32)}),
    "mul_broadcast_w": lambda: mb.onnx_single("Mul", [(1, 2, 3, 4), (1, 1, 1, 4)], (1, 2, 3, 4)),
    "relu_4d": lambda: mb.onnx_single("Relu", [(1, 3, 4, 4)], (1, 3, 4, 4)),
    "sigmoid": lambda: mb.onnx_single("Sigmoid", [(2, 7)], (2, 7)),
    "tanh_4d": lambda: mb.onnx_single("Tanh", [(1, 2, 3, 3)], (1, 2, 3, 3)),
    "clip_relu6_opset11": lambda: mb.onnx_single(
        "Clip", [(1, 8)], (1, 8), consts={"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)},
        opset=11),
    "clip_arbitrary_opset11": lambda: mb.onnx_single(
        "Clip", [(1, 8)], (1, 8), consts={"lo": np.array(-0.5, np.float32),
                                          "hi": np.array(1.25, np.float32)}, opset=11),
    "clip_attrs_opset6": lambda: mb.onnx_single("Clip", [(2, 5)], (2, 5), opset=6, min=-1.0, max=1.0),
    "conv_clip_fused": lambda: _chain(
        [N("Conv", ["x0", "W", "B"], ["c"]), N("Clip", ["c", "lo", "hi"], ["y"])], [(1, 2, 5, 5)],
        (1, 3, 3, 3), {"W": _w(3, 2, 3, 3), "B": _w(3), "lo": np.array(0, np.float32),
                       "hi": np.array(6, np.float32)}),
    # pooling
    "maxpool_valid": lambda: mb.onnx_single("MaxPool", [(1, 3, 8, 8)], (1, 3, 4, 4),
                                            kernel_shape=[2, 2], strides=[2, 2]),
    "maxpool_same_upper": lambda: mb.onnx_single("MaxPool", [(1, 2, 7, 7)], (1, 2, 4, 4),
                                                 kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "maxpool_explicit_pads": lambda: mb.onnx_single("MaxPool", [(1, 2, 6, 6)], (1, 2, 4, 4),
                                                    kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 2, 2]),
    "averagepool_valid": lambda: mb.onnx_single("AveragePool", [(1, 3, 8, 8)], (1, 3, 3, 3),
                                                kernel_shape=[3, 3], strides=[2, 2]),
    "averagepool_same_upper": lambda: mb.onnx_single("AveragePool", [(1, 2, 7, 7)], (1, 2, 7, 7),
                                                     kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
    "averagepool_same_upper_count_include_pad": lambda: mb.onnx_single(
        "AveragePool", [(1, 2, 7, 7)], (1, 2, 7, 7), kernel_shape=[3, 3], auto_pad="SAME_UPPER",
        count_include_pad=1),
    "averagepool_pads_stride2_exclude_pad": lambda: mb.onnx_single(
        "AveragePool", [(1, 3, 8, 8)], (1, 3, 4, 4), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "averagepool_pads_stride2_include_pad": lambda: mb.onnx_single(
        "AveragePool", [(1, 3, 8, 8)], (1, 3, 4, 4), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
        count_include_pad=1),
    "averagepool_asymmetric_pads_include_pad": lambda: mb.onnx_single(
        "AveragePool", [(1, 2, 6, 5)], (1, 2, 7, 3), kernel_shape=[3, 2], strides=[1, 2], pads=[2, 0, 1, 1],
        count_include_pad=1),
    "averagepool_asymmetric_pads_exclude_pad": lambda: mb.onnx_single(
        "AveragePool", [(1, 2, 6, 5)], (1, 2, 7, 3), kernel_shape=[3, 2], strides=[1, 2], pads=[2, 0, 1, 1]),
    "averagepool_same_lower": lambda: mb.onnx_single(
        "AveragePool", [(1, 2, 6, 6)], (1, 2, 3, 3), kernel_shape=[2, 2], strides=[2, 2],
        auto_pad="SAME_LOWER"),
    "conv_relu_maxpool_fused": lambda: _chain(
        [N("Conv", ["x0", "W", "B"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]),
         N("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
        [(1, 3, 9, 9)], (1, 10, 4, 4), {"W": _w(10, 3, 3, 3), "B": _w(10)}),
    "global_average_pool": lambda: mb.onnx_single("GlobalAveragePool", [(1, 5, 4, 3)], (1, 5, 1, 1)),
    # shapes
    "reshape_nhwc_to_2d_then_gemm": lambda: _chain(
        [N("Reshape", ["x0", "shape"], ["r"]), N("Gemm", ["r", "W"], ["y"])], [(1, 3, 2, 2)], (1, 4),
        {"shape": np.array([1, -1], np.int64), "W": _w(12, 4)}),
    "conv_flatten_matmul": lambda: _chain(
        [N("Conv", ["x0", "W"], ["c"]), N("Flatten", ["c"], ["f"]), N("MatMul", ["f", "M"], ["y"])],
        [(1, 2, 5, 5)], (1, 6), {"W": _w(3, 2, 3, 3), "M": _w(27, 6)}),
    "conv_flatten_output": lambda: _chain(
        [N("Conv", ["x0", "W"], ["c"]), N("Flatten", ["c"], ["y"])], [(1, 2, 4, 4)], (1, 18),
        {"W": _w(2, 2, 2, 2)}),
    "reshape_zero_dim": lambda: _chain([N("Reshape", ["x0", "shape"], ["y"])], [(2, 3, 4)], (2, 12),
                                       {"shape": np.array([0, -1], np.int64)}),
    "softmax_2d_opset13": lambda: mb.onnx_single("Softmax", [(3, 10)], (3, 10)),
    "softmax_opset8_axis1": lambda: mb.onnx_single("Softmax", [(1, 10)], (1, 10), opset=8),
    "softmax_4d_channels": lambda: mb.onnx_single("Softmax", [(1, 6, 2, 2)], (1, 6, 2, 2), axis=1),
    "transpose_constant_folded": lambda: _chain(
        [N("Transpose", ["Wt"], ["W"], perm=[1, 0]), N("MatMul", ["x0", "W"], ["y"])], [(1, 6)], (1, 4),
        {"Wt": _w(4, 6)}),
    "transpose_activation": lambda: mb.onnx_single("Transpose", [(2, 3, 4)], (4, 2, 3), perm=[2, 0, 1]),
    "concat_channels_4d": lambda: mb.onnx_single("Concat", [(1, 2, 3, 3), (1, 4, 3, 3)], (1, 6, 3, 3),
                                                 axis=1),
    "div_by_constant": lambda: mb.onnx_single(
        "Div", [(1, 3, 2, 2)], (1, 3, 2, 2),
        consts={"d": np.array([[[2.0]], [[-4.0]], [[0.5]]], np.float32)}),
    "unsqueeze_squeeze_activation": lambda: _chain(
        [N("Unsqueeze", ["x0", "ax"], ["u"]), N("Relu", ["u"], ["r"]), N("Squeeze", ["r", "ax"], ["y"])],
        [(2, 5)], (2, 5), {"ax": np.array([1], np.int64)}),
    "identity_dropout": lambda: _chain(
        [N("Dropout", ["x0"], ["d"]), N("Relu", ["d"], ["y"])], [(1, 6)], (1, 6), {}),
    "shape_gather_unsqueeze_concat_reshape": lambda: _chain(
        [N("Shape", ["x0"], ["s"]), N("Gather", ["s", "i0"], ["n"], axis=0),
         N("Unsqueeze", ["n", "ax"], ["nu"]), N("Concat", ["nu", "minus1"], ["shp"], axis=0),
         N("Reshape", ["x0", "shp"], ["y"])],
        [(2, 3, 2)], (2, 6), {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64),
                              "minus1": np.array([-1], np.int64)}),
    "mini_resnet": lambda: _chain(
        [N("Conv", ["x0", "W1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
         N("BatchNormalization", ["c1", "g1", "b1", "m1", "v1"], ["n1"]),
         N("Relu", ["n1"], ["r1"]),
         N("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1]),
         N("BatchNormalization", ["c2", "g2", "b2", "m2", "v2"], ["n2"]),
         N("Add", ["n2", "r1"], ["s"]),
         N("Relu", ["s"], ["r2"]),
         N("GlobalAveragePool", ["r2"], ["p"]),
         N("Flatten", ["p"], ["f"]),
         N("Gemm", ["f", "Wf", "Bf"], ["y"], transB=1)],
        [(1, 3, 10, 10)], (1, 5),
        {"W1": _w(8, 3, 3, 3), "W2": _w(8, 8, 3, 3), "B2": _w(8), "Wf": _w(5, 8), "Bf": _w(5),
         **{k + "1": v for k, v in
            zip(("g", "b", "m", "v"), _bn_consts(8).values(), strict=True)},
         **{k + "2": v for k, v in zip(("g", "b", "m", "v"), _bn_consts(8).values(), strict=True)}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_op_matches_onnxruntime(case, tmp_path):
    model = CASES[case]()
    mb.check_onnx(model, tmp_path, n_inputs=3)


def _passes(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return run_passes(load_model(path))


def test_batchnorm_and_bias_fold_into_conv(tmp_path):
    g = _passes(CASES["conv_batchnorm_folded"](), tmp_path)
    # NCHW -> NHWC at the input, the convolution, NHWC -> NCHW at the output: no MUL / ADD
    assert [n.kind for n in g.nodes] == ["TRANSPOSE", "CONV_2D", "TRANSPOSE"]


def test_clip_0_6_fuses_into_conv_as_relu6(tmp_path):
    g = _passes(CASES["conv_clip_fused"](), tmp_path)
    kinds = [n.kind for n in g.nodes]
    assert kinds == ["TRANSPOSE", "CONV_2D", "TRANSPOSE"] and g.nodes[1].attrs["activation"] == "RELU6"


def test_flatten_before_dense_permutes_weights_instead_of_data(tmp_path):
    g = _passes(CASES["conv_flatten_matmul"](), tmp_path)
    # only the model input is transposed (NCHW -> NHWC); the flatten is an alias
    assert [n.kind for n in g.nodes] == ["TRANSPOSE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]


def test_constant_transpose_is_folded(tmp_path):
    g = _passes(CASES["transpose_constant_folded"](), tmp_path)
    assert [n.kind for n in g.nodes] == ["FULLY_CONNECTED"]


@pytest.mark.parametrize("case", ["conv_pads_stride2_pytorch_even", "conv_asymmetric_pads",
                                  "conv_depthwise_pads_stride2_pytorch", "conv_pads_larger_than_kernel"])
def test_explicit_conv_pads_need_no_pad_operator(case, tmp_path):
    """Pads TFLite's SAME / VALID cannot express go to the convolution itself: no PAD node
    and no padded copy of the input in the arena."""
    g = _passes(CASES[case](), tmp_path)
    kinds = [n.kind for n in g.nodes]
    assert "PAD" not in kinds
    conv = next(n for n in g.nodes if n.kind.endswith("CONV_2D"))
    assert conv.attrs["padding"] == "EXPLICIT" and len(conv.attrs["pads"]) == 4
    # the arena holds at most the NHWC input and output (TRANSPOSEs at the boundary)
    from microtvm_tasks.compiler.memory import plan_memory

    x, y = g.t(conv.inputs[0]), g.t(conv.outputs[0])
    assert plan_memory(g).arena_size <= -(-x.nbytes // 16) * 16 + -(-y.nbytes // 16) * 16


def test_averagepool_count_include_pad_reaches_the_kernel(tmp_path):
    g = _passes(CASES["averagepool_pads_stride2_include_pad"](), tmp_path)
    pool = next(n for n in g.nodes if n.kind == "AVERAGE_POOL_2D")
    assert pool.attrs["count_include_pad"] is True and pool.attrs["pads"] == (1, 1, 1, 1)
    g = _passes(CASES["averagepool_pads_stride2_exclude_pad"](), tmp_path)
    assert not next(n for n in g.nodes if n.kind == "AVERAGE_POOL_2D").attrs.get("count_include_pad")


def test_pooling_pads_as_large_as_the_kernel_are_rejected(tmp_path):
    for op in ("AveragePool", "MaxPool"):
        model = mb.onnx_single(op, [(1, 2, 4, 4)], (1, 2, 7, 4), kernel_shape=[2, 2], pads=[2, 0, 1, 0])
        msg = _error(model, tmp_path)
        assert op in msg and "as large as the kernel" in msg


def test_conv_relu_maxpool_becomes_one_node(tmp_path):
    g = _passes(CASES["conv_relu_maxpool_fused"](), tmp_path)
    conv = next(n for n in g.nodes if n.kind == "CONV_2D")
    assert "MAX_POOL_2D" not in [n.kind for n in g.nodes]
    assert conv.attrs["activation"] == "RELU" and conv.attrs["pool"]["filter"] == (2, 2)


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    if not MNIST.is_file():
        pytest.skip(f"{MNIST} not present")
    return mb.compile_c(MNIST, tmp_path_factory.mktemp("mnist"), name="mnist")


def test_mnist_matches_onnxruntime_on_50_inputs(mnist_model):
    model = onnx.load(str(MNIST))
    mb.check_onnx(model, None, n_inputs=50, compiled=mnist_model)
    assert mnist_model.inputs[0]["shape"] == (1, 1, 28, 28)  # the ONNX shape, NCHW
    # TVM 0.18's AOT workspace: 31360; both max pools run inside their convolutions here
    assert mnist_model.meta["workspace_size_bytes"] <= 8064


def test_mnist_with_nhwc_input_layout(tmp_path):
    if not MNIST.is_file():
        pytest.skip(f"{MNIST} not present")
    out = compile_model(MNIST, tmp_path / "mnist_nhwc.tar", module_name="mnist_nhwc", input_layout="NHWC")
    import tarfile

    with tarfile.open(out) as tar:
        members = {m.name.removeprefix("./"): tar.extractfile(m).read()
                   for m in tar.getmembers() if m.isfile()}
    from compiler_harness import CompiledModel

    cm = CompiledModel(members, tmp_path / "build")
    assert cm.inputs[0]["shape"] == (1, 28, 28, 1)
    rng = np.random.default_rng(3)
    model = onnx.load(str(MNIST))
    for _ in range(3):
        x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
        (ours,) = cm.run([np.transpose(x, (0, 2, 3, 1))])
        (ref,) = mb.run_onnxruntime(model, [x])
        assert np.abs(ours.reshape(-1) - ref.reshape(-1)).max() <= mb.float_tolerance(ref)


def test_4d_output_keeps_onnx_nchw_shape(tmp_path):
    model = _conv((1, 3, 6, 5), (4, 3, 3, 3), (1, 4, 6, 5), pads=[1, 1, 1, 1])
    cm = mb.check_onnx(model, tmp_path, n_inputs=2)
    assert cm.outputs[0]["shape"] == (1, 4, 6, 5)


def _error(model, tmp_path) -> str:
    path = tmp_path / "bad_net.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(CompileError) as e:
        compile_model(path, tmp_path / "bad.tar")
    return str(e.value)


def test_unsupported_operator_names_operator_node_and_model(tmp_path):
    msg = _error(mb.onnx_single("Erf", [(1, 4)], (1, 4)), tmp_path)
    assert "Erf" in msg and "erf_0" in msg and "bad_net.onnx" in msg


def test_unsupported_group_convolution(tmp_path):
    msg = _error(_conv((1, 4, 5, 5), (4, 2, 3, 3), (1, 4, 3, 3), group=2), tmp_path)
    assert "Conv" in msg and "group=2" in msg and "conv_0" in msg


def test_unsupported_attribute_value(tmp_path):
    model = mb.onnx_single("MaxPool", [(1, 2, 6, 6)], (1, 2, 3, 3), kernel_shape=[2, 2], strides=[2, 2],
                           ceil_mode=1)
    msg = _error(model, tmp_path)
    assert "MaxPool" in msg and "ceil_mode" in msg


def test_non_float_input_is_rejected(tmp_path):
    from onnx import TensorProto

    x = helper.make_tensor_value_info("x0", TensorProto.INT32, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4])
    model = mb.onnx_model([N("Relu", ["x0"], ["y"], name="r")], [x], [y], opset=14)
    msg = _error(model, tmp_path)
    assert "x0" in msg and "INT32" in msg and "float32" in msg


def test_dynamic_dimension_is_rejected(tmp_path):
    from onnx import TensorProto

    x = helper.make_tensor_value_info("x0", TensorProto.FLOAT, [1, "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "n"])
    msg = _error(mb.onnx_model([N("Relu", ["x0"], ["y"])], [x], [y]), tmp_path)
    assert "dynamic" in msg and "x0" in msg


def test_matmul_of_two_activations_is_rejected(tmp_path):
    msg = _error(mb.onnx_single("MatMul", [(2, 3), (3, 2)], (2, 2)), tmp_path)
    assert "MatMul" in msg and "constant" in msg


def test_onnx_compile_is_reproducible_and_builds_for_cortex_m4(tmp_path):
    """Same model, same options: byte-identical archive; its C is -Werror clean for Cortex-M4."""
    import shutil

    model = CASES["mini_resnet"]()
    path = tmp_path / "resnet.onnx"
    path.write_bytes(model.SerializeToString())
    a = compile_model(path, tmp_path / "a.tar", module_name="resnet").read_bytes()
    b = compile_model(path, tmp_path / "b.tar", module_name="resnet").read_bytes()
    assert a == b
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    from compiler_harness import arm_compile

    from microtvm_tasks.compiler import compile_to_members

    objs = arm_compile(compile_to_members(path, module_name="resnet"), tmp_path / "arm")
    assert len(objs) == 2
