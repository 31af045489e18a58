"""One focused test per TFLite operator and per padding / stride / dilation / depth
multiplier / activation / quantisation variant, on small models built in-process
(tests/model_builders.py).

Each model is compiled by our compiler, its C built once into a shared library and run on
a few random inputs: int8 outputs must equal TFLite Micro's bit for bit, float32 outputs
LiteRT's within 1e-4 x the output range.
"""

from __future__ import annotations

import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import model_builders as mb  # noqa: E402

from microtvm_tasks.compiler import load_model  # noqa: E402
from microtvm_tasks.compiler.passes import run_passes  # noqa: E402
from microtvm_tasks.errors import CompileError  # noqa: E402

pytest.importorskip("tflite_micro", reason="TFLite Micro (PyPI tflite-micro) is the int8 reference")
pytest.importorskip("ai_edge_litert", reason="LiteRT (PyPI ai-edge-litert) is the float reference")
if shutil.which("gcc") is None:
    pytest.skip("gcc is needed to build the generated C", allow_module_level=True)

Q = mb.QParams

CASES = {
    # CONV_2D
    "conv_same_s1_per_channel": lambda: mb.conv2d(),
    "conv_valid_s1": lambda: mb.conv2d(padding="VALID"),
    "conv_same_s2": lambda: mb.conv2d(stride=(2, 2), input_shape=(1, 10, 9, 3)),
    "conv_valid_s2_odd": lambda: mb.conv2d(padding="VALID", stride=(2, 2), input_shape=(1, 9, 10, 3)),
    "conv_stride_2x1": lambda: mb.conv2d(stride=(2, 1)),
    "conv_dilation2_same": lambda: mb.conv2d(dilation=(2, 2)),
    "conv_dilation2_valid": lambda: mb.conv2d(dilation=(2, 2), padding="VALID"),
    "conv_per_tensor": lambda: mb.conv2d(per_channel=False),
    "conv_relu": lambda: mb.conv2d(activation="RELU"),
    "conv_relu6": lambda: mb.conv2d(activation="RELU6"),
    "conv_1x1": lambda: mb.conv2d(kernel=(1, 1), out_channels=7),
    "conv_5x3_kernel": lambda: mb.conv2d(kernel=(5, 3), input_shape=(1, 8, 7, 2)),
    "conv_batch2": lambda: mb.conv2d(input_shape=(2, 6, 6, 3)),
    "conv_f32_same": lambda: mb.conv2d("float32"),
    "conv_f32_valid_s2_dil": lambda: mb.conv2d("float32", padding="VALID", stride=(2, 2),
                                               input_shape=(1, 11, 11, 3)),
    "conv_f32_dilation2": lambda: mb.conv2d("float32", dilation=(2, 2)),
    "conv_f32_relu6": lambda: mb.conv2d("float32", activation="RELU6"),
    # DEPTHWISE_CONV_2D
    "dw_same_s1": lambda: mb.depthwise_conv2d(),
    "dw_valid": lambda: mb.depthwise_conv2d(padding="VALID"),
    "dw_same_s2": lambda: mb.depthwise_conv2d(stride=(2, 2), input_shape=(1, 10, 9, 4)),
    "dw_dilation2": lambda: mb.depthwise_conv2d(dilation=(2, 2)),
    "dw_depth_multiplier2": lambda: mb.depthwise_conv2d(depth_multiplier=2),
    "dw_depth_multiplier3_valid_s2": lambda: mb.depthwise_conv2d(depth_multiplier=3, padding="VALID",
                                                                 stride=(2, 2)),
    "dw_per_tensor": lambda: mb.depthwise_conv2d(per_channel=False),
    "dw_relu6": lambda: mb.depthwise_conv2d(activation="RELU6"),
    "dw_f32": lambda: mb.depthwise_conv2d("float32"),
    "dw_f32_multiplier2_s2": lambda: mb.depthwise_conv2d("float32", depth_multiplier=2, stride=(2, 2)),
    "dw_f32_dilation2_valid": lambda: mb.depthwise_conv2d("float32", dilation=(2, 2), padding="VALID"),
    # FULLY_CONNECTED
    "fc_per_tensor": lambda: mb.fully_connected(),
    "fc_per_channel": lambda: mb.fully_connected(per_channel=True),
    "fc_relu": lambda: mb.fully_connected(activation="RELU"),
    "fc_no_bias": lambda: mb.fully_connected(bias=False),
    "fc_batch3": lambda: mb.fully_connected(batch=3),
    "fc_4d_input": lambda: mb.fully_connected(input_shape=(1, 2, 2, 4)),
    "fc_f32": lambda: mb.fully_connected("float32"),
    "fc_f32_relu6": lambda: mb.fully_connected("float32", activation="RELU6"),
    # pooling
    "avgpool_valid": lambda: mb.pool2d("AVERAGE_POOL_2D"),
    "avgpool_same_3x3_s2": lambda: mb.pool2d("AVERAGE_POOL_2D", padding="SAME", filter_size=(3, 3),
                                             input_shape=(1, 7, 8, 3)),
    "avgpool_s1_relu": lambda: mb.pool2d("AVERAGE_POOL_2D", stride=(1, 1), activation="RELU"),
    "avgpool_f32_same": lambda: mb.pool2d("AVERAGE_POOL_2D", "float32", padding="SAME",
                                          filter_size=(3, 3)),
    "maxpool_valid": lambda: mb.pool2d("MAX_POOL_2D"),
    "maxpool_same_3x3_s2": lambda: mb.pool2d("MAX_POOL_2D", padding="SAME", filter_size=(3, 3),
                                             input_shape=(1, 7, 8, 3)),
    "maxpool_s1_relu6": lambda: mb.pool2d("MAX_POOL_2D", stride=(1, 1), activation="RELU6"),
    "maxpool_f32_same": lambda: mb.pool2d("MAX_POOL_2D", "float32", padding="SAME", filter_size=(3, 2),
                                          stride=(1, 2)),
    # SOFTMAX
    "softmax": lambda: mb.softmax(),
    "softmax_rows_beta": lambda: mb.softmax(input_shape=(3, 12), beta=0.5, input_q=Q(0.05, -10)),
    "softmax_f32": lambda: mb.softmax("float32"),
    # RESHAPE / SQUEEZE / TRANSPOSE
    "reshape": lambda: mb.reshape(),
    "reshape_no_shape_input_f32": lambda: mb.reshape("float32", shape_input=False),
    "squeeze": lambda: mb.squeeze(),
    "squeeze_f32_all": lambda: mb.squeeze("float32", input_shape=(1, 1, 1, 6), squeeze_dims=()),
    "transpose_nhwc": lambda: mb.transpose(),
    "transpose_f32_3d": lambda: mb.transpose("float32", input_shape=(2, 3, 4), perm=(2, 0, 1)),
    # ADD / SUB / MUL
    "add": lambda: mb.binary("ADD"),
    "add_broadcast_channel": lambda: mb.binary("ADD", shape_b=(1, 1, 1, 3)),
    "add_broadcast_both": lambda: mb.binary("ADD", shape_a=(1, 4, 1, 3), shape_b=(1, 1, 5, 3)),
    "add_const_vector": lambda: mb.binary("ADD", shape_b=(3,), const_b=True),
    "add_relu6": lambda: mb.binary("ADD", activation="RELU6"),
    "add_scales_b_larger": lambda: mb.binary("ADD", qa=Q(0.01, 5), qb=Q(0.2, -7), qout=Q(0.25, 3)),
    "add_f32_relu": lambda: mb.binary("ADD", "float32", activation="RELU"),
    "add_f32_broadcast": lambda: mb.binary("ADD", "float32", shape_a=(2, 3), shape_b=(3,)),
    "sub": lambda: mb.binary("SUB"),
    "sub_broadcast": lambda: mb.binary("SUB", shape_a=(1, 1, 4, 3), shape_b=(1, 4, 1, 3)),
    "sub_scales": lambda: mb.binary("SUB", qa=Q(0.07, -20), qb=Q(0.011, 30), qout=Q(0.09, 0)),
    "sub_relu": lambda: mb.binary("SUB", activation="RELU"),
    "sub_f32": lambda: mb.binary("SUB", "float32", shape_b=(1, 4, 1, 1)),
    "mul": lambda: mb.binary("MUL"),
    "mul_broadcast": lambda: mb.binary("MUL", shape_b=(1, 4, 4, 1)),
    "mul_const": lambda: mb.binary("MUL", shape_b=(1, 1, 1, 3), const_b=True),
    "mul_relu": lambda: mb.binary("MUL", activation="RELU", qout=Q(0.02, -128)),
    "mul_f32": lambda: mb.binary("MUL", "float32", shape_b=(1, 4, 1, 3)),
    # activations
    "logistic": lambda: mb.unary("LOGISTIC"),
    "logistic_wide_input": lambda: mb.unary("LOGISTIC", input_q=Q(0.2, 20)),
    "logistic_f32": lambda: mb.unary("LOGISTIC", "float32"),
    "tanh": lambda: mb.unary("TANH"),
    "tanh_fine_input": lambda: mb.unary("TANH", input_q=Q(0.008, -50)),
    "tanh_f32": lambda: mb.unary("TANH", "float32"),
    "relu_requantise": lambda: mb.unary("RELU"),
    "relu_same_quant": lambda: mb.unary("RELU", output_q=Q(0.05, -3)),
    "relu_f32": lambda: mb.unary("RELU", "float32"),
    "relu6_same_quant": lambda: mb.unary("RELU6", output_q=Q(0.05, -3)),
    "relu6_f32": lambda: mb.unary("RELU6", "float32"),
    # QUANTIZE / DEQUANTIZE
    "quantize_f32_to_int8": lambda: mb.quantize(),
    "quantize_int8_requantise": lambda: mb.quantize(from_dtype="int8"),
    "quantize_int8_larger_scale": lambda: mb.quantize(from_dtype="int8", output_q=Q(0.3, -100)),
    "dequantize": lambda: mb.dequantize(),
    # PAD / CONCATENATION / MEAN
    "pad": lambda: mb.pad(),
    "pad_channels_f32": lambda: mb.pad("float32", paddings=((0, 0), (0, 0), (1, 1), (2, 3))),
    "pad_2d": lambda: mb.pad(input_shape=(3, 4), paddings=((1, 0), (2, 2))),
    "padv2_f32_value": lambda: mb.pad("float32", value=-2.5),
    "padv2_int8_zero_point": lambda: mb.pad(value=-3),
    "concat_channels": lambda: mb.concatenation(),
    "concat_three_height_f32": lambda: mb.concatenation("float32", shapes=((1, 2, 2, 3), (1, 3, 2, 3),
                                                                          (1, 1, 2, 3)), axis=1),
    "concat_width": lambda: mb.concatenation(shapes=((1, 2, 1, 3), (1, 2, 4, 3)), axis=2),
    "mean_hw_keepdims": lambda: mb.mean(),
    "mean_hw_requantise": lambda: mb.mean(keep_dims=False, output_q=Q(0.02, 5)),
    "mean_hw_large_count": lambda: mb.mean(input_shape=(1, 13, 11, 4), output_q=Q(0.01, -1)),
    "mean_f32": lambda: mb.mean("float32"),
    # PAD in front of a window operator: fused into explicit padding where exact
    "pad_conv_valid_s2": lambda: mb.conv2d(padding="VALID", stride=(2, 2), input_shape=(1, 8, 8, 3),
                                           pre_pad=((1, 1), (1, 1))),
    "pad_conv_same_asymmetric": lambda: mb.conv2d(pre_pad=((2, 0), (0, 1)), input_shape=(1, 6, 7, 3)),
    "pad_conv_1x1_wider_than_kernel": lambda: mb.conv2d(padding="VALID", kernel=(1, 1), stride=(2, 2),
                                                        pre_pad=((1, 2), (2, 0)), input_shape=(1, 5, 5, 4)),
    "pad_conv_f32_valid_s2_dil": lambda: mb.conv2d("float32", padding="VALID", stride=(2, 2), dilation=(2, 2),
                                                   pre_pad=((2, 1), (1, 2)), input_shape=(1, 9, 8, 3)),
    "pad_dw_valid_s2": lambda: mb.depthwise_conv2d(padding="VALID", stride=(2, 2), input_shape=(1, 8, 8, 4),
                                                   pre_pad=((1, 1), (1, 1))),
    "pad_dw_valid_s1_top_only": lambda: mb.depthwise_conv2d(padding="VALID", pre_pad=((2, 0), (1, 1)),
                                                            input_shape=(1, 6, 6, 5)),
    "pad_dw_f32_multiplier2": lambda: mb.depthwise_conv2d("float32", padding="VALID", depth_multiplier=2,
                                                          pre_pad=((0, 2), (1, 0))),
    "pad_avgpool_f32": lambda: mb.pool2d("AVERAGE_POOL_2D", "float32", filter_size=(3, 3),
                                         pre_pad=((1, 1), (1, 1)), input_shape=(1, 7, 7, 3)),
    "pad_avgpool_int8_kept": lambda: mb.pool2d("AVERAGE_POOL_2D", filter_size=(3, 3),
                                               pre_pad=((1, 1), (1, 1)), input_shape=(1, 7, 7, 3)),
    "pad_maxpool_f32_kept": lambda: mb.pool2d("MAX_POOL_2D", "float32", pre_pad=((1, 0), (0, 1))),
    # CONV_2D -> MAX_POOL_2D: fused where the pool tiles the convolution (float32)
    "convpool_f32_2x2_drops_row_and_column": lambda: mb.conv2d_maxpool(input_shape=(1, 7, 9, 3)),
    "convpool_f32_3x3_relu6_pool": lambda: mb.conv2d_maxpool(input_shape=(2, 9, 10, 2), out_channels=13,
                                                             pool=(3, 3), pool_activation="RELU6"),
    "convpool_f32_stride2_valid_narrow": lambda: mb.conv2d_maxpool(input_shape=(1, 12, 7, 4), stride=(2, 2),
                                                                   padding="VALID", pool=(2, 1),
                                                                   activation="NONE"),
    "convpool_f32_overlapping_pool_kept": lambda: mb.conv2d_maxpool(pool=(3, 3), pool_stride=(2, 2)),
    "convpool_f32_same_pool_kept": lambda: mb.conv2d_maxpool(input_shape=(1, 7, 7, 3), pool_padding="SAME"),
    "convpool_f32_conv_also_output_kept": lambda: mb.conv2d_maxpool(also_output_conv=True),
    "convpool_int8_kept": lambda: mb.conv2d_maxpool("int8"),
    # few-operator models (arena reuse between operators)
    "small_cnn": lambda: mb.small_cnn(),
    "small_cnn_f32": lambda: mb.small_cnn("float32"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_reference(case, tmp_path):
    model = CASES[case]()
    mb.check_tflite(model, tmp_path, n_inputs=3, seed=zlib.crc32(case.encode()) % 1000)


def test_float_io_int8_model_equals_tflm(tmp_path):
    """QUANTIZE -> int8 FC -> DEQUANTIZE: the float output equals TFLite Micro's exactly."""
    mb.check_tflite(mb.float_io_int8_fc(), tmp_path, n_inputs=5, float_vs_tflm=True)


@pytest.mark.parametrize("op", ["LOGISTIC", "TANH", "RELU", "RELU6"])
def test_int8_activation_tables_for_every_input_value(op):
    """The compile-time tables (and RELU6 bounds) equal TFLite Micro on all 256 int8 inputs,
    for several input quantisations (the C lookup itself is covered by the model tests)."""
    from microtvm_tasks.compiler.ops.activations import relu6_bounds_s8, relu_table_s8
    from microtvm_tasks.compiler.ops.fixedpoint_lut import logistic_table_s8, tanh_table_s8

    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    for scale, zp in [(0.05, -3), (0.1, 5), (0.004, 0), (0.9, 127), (0.0123, -77)]:
        out_q = {"RELU": Q(0.03, -100), "RELU6": Q(scale, zp)}.get(op)
        model = mb.unary(op, input_shape=(1, 256), input_q=Q(scale, zp), output_q=out_q)
        (ref,) = mb.run_tflm(model, [x])
        if op == "LOGISTIC":
            ours = logistic_table_s8(scale, zp)
        elif op == "TANH":
            ours = tanh_table_s8(scale, zp)
        elif op == "RELU":
            ours = relu_table_s8(scale, zp, out_q.scale, out_q.zero_point)
        else:
            lo, hi = relu6_bounds_s8(scale, zp)
            ours = [min(max(q, lo), hi) for q in range(-128, 128)]
        assert ours == ref.reshape(-1).tolist(), (op, scale, zp)


def test_quantize_rounding_ties_and_saturation(tmp_path):
    """float -> int8 at exact .5 ties (away from zero) and far outside the range."""
    model = mb.quantize(input_shape=(1, 12), output_q=Q(0.5, 3))
    cm = mb.compile_c(model, tmp_path)
    x = np.array([[0.25, -0.25, 0.75, -0.75, 1.25, -1.25, 63.0, -65.0, 1e6, -1e6, 0.0, 0.2499]],
                 np.float32)
    (ours,) = cm.run([x])
    (ref,) = mb.run_tflm(model, [x])
    assert np.array_equal(ours.reshape(-1), ref.reshape(-1))


def test_activation_after_op_is_fused_and_exact(tmp_path):
    """ADD followed by a stand-alone RELU of equal quantisation: one node after the passes,
    same bits as TFLite Micro running two operators."""
    b = mb.TFLiteBuilder()
    qa, qo = Q(0.05, -3), Q(0.08, -2)
    a = b.tensor("a", [1, 4, 4, 3], "int8", scale=qa.scale, zero_point=qa.zero_point)
    c = b.tensor("c", [1, 4, 4, 3], "int8", scale=qa.scale, zero_point=qa.zero_point)
    s = b.tensor("sum", [1, 4, 4, 3], "int8", scale=qo.scale, zero_point=qo.zero_point)
    y = b.tensor("y", [1, 4, 4, 3], "int8", scale=qo.scale, zero_point=qo.zero_point)
    b.op("ADD", [a, c], [s])
    b.op("RELU", [s], [y])
    model = b.build([a, c], [y])
    path = tmp_path / "add_relu.tflite"
    path.write_bytes(model)
    g = run_passes(load_model(path))
    assert [n.kind for n in g.nodes] == ["ADD"] and g.nodes[0].attrs["activation"] == "RELU"
    mb.check_tflite(model, tmp_path, n_inputs=3)


def test_squeeze_and_reshape_are_aliases(tmp_path):
    """SQUEEZE / RESHAPE move no data: no code and no arena for their outputs."""
    b = mb.TFLiteBuilder()
    q, qs = Q(0.05, -3), Q(1 / 256, -128)
    x = b.tensor("x", [1, 1, 1, 8], "int8", scale=q.scale, zero_point=q.zero_point)
    t = b.tensor("t", [1, 1, 1, 8], "int8", scale=qs.scale, zero_point=qs.zero_point)
    s = b.tensor("s", [1, 8], "int8", scale=qs.scale, zero_point=qs.zero_point)
    y = b.tensor("y", [1, 8], "int8", scale=qs.scale, zero_point=qs.zero_point)
    b.op("LOGISTIC", [x], [t])
    b.op("SQUEEZE", [t], [s], squeeze_dims=[1, 2])
    b.op("LOGISTIC", [s], [y])
    model = b.build([x], [y])
    cm = mb.check_tflite(model, tmp_path, n_inputs=2)
    assert cm.meta["workspace_size_bytes"] <= 16  # just the one 8-byte intermediate
    lib1 = next((tmp_path / "build").rglob("*_lib1.c")).read_text()
    assert "SQUEEZE" in lib1 and "alias" in lib1 and lib1.count("  mt_lut_s8(((") == 2


def _compile_error(model: bytes, tmp_path: Path) -> str:
    path = tmp_path / "bad_model.tflite"
    path.write_bytes(model)
    with pytest.raises(CompileError) as e:
        mb.compile_c(path, tmp_path / "out")
    return str(e.value)


def test_unsupported_operator_is_a_compile_error(tmp_path):
    b = mb.TFLiteBuilder()
    x = b.tensor("x", [1, 4], "float32")
    y = b.tensor("exp_out", [1, 4], "float32")
    b.op("EXP", [x], [y])
    msg = _compile_error(b.build([x], [y]), tmp_path)
    assert "EXP" in msg and "bad_model.tflite" in msg and "exp_out" in msg


def test_int8_concat_with_different_quantisation_is_rejected(tmp_path):
    b = mb.TFLiteBuilder()
    x0 = b.tensor("x0", [1, 2], "int8", scale=0.1, zero_point=0)
    x1 = b.tensor("x1", [1, 2], "int8", scale=0.2, zero_point=0)
    y = b.tensor("cat", [1, 4], "int8", scale=0.1, zero_point=0)
    b.op("CONCATENATION", [x0, x1], [y], axis=1)
    msg = _compile_error(b.build([x0, x1], [y]), tmp_path)
    assert "CONCATENATION" in msg and "quantisation" in msg and "bad_model.tflite" in msg


def test_mean_over_channels_is_rejected(tmp_path):
    msg = _compile_error(mb.mean(axes=(3,), keep_dims=True), tmp_path)
    assert "MEAN" in msg and "height and width" in msg


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_kernels_build_for_cortex_m4(tmp_path):
    """Every kernel this suite adds compiles warning-free for Cortex-M4 (-Wall -Wextra -Werror)."""
    from compiler_harness import arm_compile

    from microtvm_tasks.compiler import compile_to_members

    b = mb.TFLiteBuilder()
    q, qs = Q(0.05, -3), Q(1 / 256, -128)
    f = b.tensor("f", [1, 4, 4, 3], "float32")
    x = b.tensor("x", [1, 4, 4, 3], "int8", scale=q.scale, zero_point=q.zero_point)
    b.op("QUANTIZE", [f], [x])
    chain = [("MAX_POOL_2D", [1, 2, 2, 3], {"padding": "VALID", "stride_w": 2, "stride_h": 2,
                                             "filter_width": 2, "filter_height": 2}),
             ("PAD", [1, 4, 4, 3], None), ("LOGISTIC", [1, 4, 4, 3], {}), ("TANH", [1, 4, 4, 3], {}),
             ("RELU6", [1, 4, 4, 3], {}), ("MEAN", [1, 1, 1, 3], None), ("DEQUANTIZE", [1, 1, 1, 3], {})]
    cur = x
    for op, shape, opts in chain:
        if op == "LOGISTIC":
            qo = qs
        elif op == "TANH":
            qo = Q(1 / 128, 0)
        else:
            qo = q if op != "RELU6" else Q(1 / 128, 0)
        if op == "DEQUANTIZE":
            nxt = b.tensor(op.lower(), shape, "float32")
        else:
            nxt = b.tensor(op.lower(), shape, "int8", scale=qo.scale, zero_point=qo.zero_point)
        if op == "PAD":
            pads = b.tensor("paddings", [4, 2], "int32", np.array([[0, 0], [1, 1], [1, 1], [0, 0]]))
            b.op(op, [cur, pads], [nxt])
        elif op == "MEAN":
            axes = b.tensor("axes", [2], "int32", np.array([1, 2]))
            b.op(op, [cur, axes], [nxt], keep_dims=True)
        else:
            b.op(op, [cur], [nxt], **(opts or {}))
        cur = nxt
        if op == "TANH":
            q = Q(1 / 128, 0)
    other = b.tensor("other", [1, 1, 1, 3], "float32")
    added = b.tensor("added", [1, 1, 1, 3], "float32")
    b.op("ADD", [cur, other], [added])
    both = b.tensor("both", [1, 1, 1, 6], "float32")
    b.op("CONCATENATION", [added, other], [both], axis=3)
    tr = b.tensor("tr", [1, 1, 6, 1], "float32")
    b.op("TRANSPOSE", [both, b.tensor("perm", [4], "int32", np.array([0, 1, 3, 2]))], [tr])
    model = b.build([f, other], [tr])
    mb.check_tflite(model, tmp_path / "host", n_inputs=2)
    path = tmp_path / "all_ops.tflite"
    path.write_bytes(model)
    objs = arm_compile(compile_to_members(path, module_name="all_ops"), tmp_path / "arm")
    assert len(objs) == 2 and all(o.stat().st_size > 0 for o in objs)


@pytest.mark.parametrize(("case", "fused"), [
    ("pad_conv_valid_s2", True), ("pad_conv_same_asymmetric", True), ("pad_dw_valid_s2", True),
    ("pad_conv_f32_valid_s2_dil", True), ("pad_avgpool_f32", True),
    # int8 average pools would need the zero point in the padded sum; max pools ignore padding
    ("pad_avgpool_int8_kept", False), ("pad_maxpool_f32_kept", False),
])
def test_pad_fuses_into_the_next_window_operator(case, fused, tmp_path):
    """A PAD feeding a convolution becomes its explicit padding: no padded copy in the
    arena (here the arena is empty: caller buffers in, caller buffers out)."""
    from microtvm_tasks.compiler.memory import plan_memory

    path = tmp_path / "m.tflite"
    path.write_bytes(CASES[case]())
    g = run_passes(load_model(path))
    kinds = [n.kind for n in g.nodes]
    assert ("PAD" not in kinds) == fused, kinds
    if fused:
        assert len(kinds) == 1 and g.nodes[0].attrs["padding"] == "EXPLICIT"
        op = g.nodes[0]
        if op.kind == "CONV_2D" and g.t(op.inputs[0]).dtype == "int8":
            return  # the int8 convolution's patch buffer is its only arena use
        assert plan_memory(g).arena_size == 0


FLOAT_CONV_GEOMETRIES = {
    # rows narrower than a 4-pixel block, channels in whole 8-blocks and leftovers
    "narrow_rows_13ch": dict(input_shape=(1, 5, 3, 2), out_channels=13),
    # the last block of a row overlaps the previous one; padding on both sides
    "overlap_16ch_5x5": dict(input_shape=(1, 7, 10, 3), out_channels=16, kernel=(5, 5)),
    "stride2_dil2_valid_8ch": dict(input_shape=(1, 11, 13, 4), out_channels=8, stride=(2, 2),
                                   dilation=(2, 2), padding="VALID"),
    "explicit_pads_s2_12ch": dict(input_shape=(1, 8, 9, 3), out_channels=12, stride=(2, 2),
                                  padding="VALID", pre_pad=((1, 1), (1, 1))),
    "wide_pads_1x1_9ch": dict(input_shape=(1, 4, 6, 5), out_channels=9, kernel=(1, 1), padding="VALID",
                              pre_pad=((2, 1), (3, 2)), activation="RELU6"),
}


@pytest.mark.parametrize("geometry", sorted(FLOAT_CONV_GEOMETRIES))
def test_float_conv_register_blocks_sse_equals_portable(geometry, tmp_path):
    """The float convolution's SSE2 register blocks and its portable C give the same floats
    (same order of operations per output), both within LiteRT's bound, on the geometries
    that exercise row blocks, overlapping last blocks, leftover channels and padding."""
    from compiler_harness import CompiledModel

    from microtvm_tasks.compiler import compile_to_members

    model = mb.conv2d("float32", **FLOAT_CONV_GEOMETRIES[geometry])
    path = tmp_path / "conv.tflite"
    path.write_bytes(model)
    members = compile_to_members(path)
    sse = CompiledModel(members, tmp_path / "sse")
    portable = CompiledModel(members, tmp_path / "portable", extra_flags=["-U__SSE2__"])
    for seed in range(3):
        xs = mb.random_inputs(model, seed)
        a, b = sse.run(xs)[0], portable.run(xs)[0]
        assert np.array_equal(a, b)
    mb.check_tflite(model, tmp_path, n_inputs=3, compiled=sse)


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("convpool_")))
def test_conv_max_pool_fusion(case, tmp_path):
    """A float max pool whose windows tile the convolution's output (stride = filter, no
    padding) runs inside the convolution: one node, and the arena holds one convolution
    row (the pooled columns) instead of the whole convolution output. The SSE2 and
    portable builds give the same floats (the references are in test_op_matches_reference)."""
    from compiler_harness import CompiledModel

    from microtvm_tasks.compiler import compile_to_members
    from microtvm_tasks.compiler.memory import plan_memory

    model = CASES[case]()
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    g = run_passes(load_model(path))
    kinds = [n.kind for n in g.nodes]
    if case.endswith("_kept"):
        assert kinds == ["CONV_2D", "MAX_POOL_2D"]
        return
    assert kinds == ["CONV_2D"] and "pool" in g.nodes[0].attrs
    conv = g.nodes[0]
    x, y = g.t(conv.inputs[0]), g.t(conv.outputs[0])
    fw = conv.attrs["pool"]["filter"][1]
    assert plan_memory(g).arena_size == -(-((y.shape[2] * fw) * y.shape[3] * 4) // 16) * 16
    members = compile_to_members(path)
    sse = CompiledModel(members, tmp_path / "sse")
    portable = CompiledModel(members, tmp_path / "portable", extra_flags=["-U__SSE2__"])
    for seed in range(2):
        xs = mb.random_inputs(model, seed)
        assert np.array_equal(sse.run(xs)[0], portable.run(xs)[0])
    assert x.shape[0] == y.shape[0]


def test_element_wise_ops_and_max_pool_run_in_place(tmp_path):
    """LOGISTIC -> TANH -> LOGISTIC (int8) and RELU -> MAX_POOL_2D -> TANH (float): the
    middle operator writes over its input, so one arena buffer suffices; results unchanged."""
    from microtvm_tasks.compiler.memory import plan_memory

    b = mb.TFLiteBuilder()
    q, qs, qt = Q(0.05, -3), Q(1 / 256, -128), Q(1 / 128, 0)
    x = b.tensor("x", [1, 64], "int8", scale=q.scale, zero_point=q.zero_point)
    t1 = b.tensor("t1", [1, 64], "int8", scale=qs.scale, zero_point=qs.zero_point)
    t2 = b.tensor("t2", [1, 64], "int8", scale=qt.scale, zero_point=qt.zero_point)
    y = b.tensor("y", [1, 64], "int8", scale=qs.scale, zero_point=qs.zero_point)
    b.op("LOGISTIC", [x], [t1])
    b.op("TANH", [t1], [t2])
    b.op("LOGISTIC", [t2], [y])
    int8_model = b.build([x], [y])

    b = mb.TFLiteBuilder()
    f = b.tensor("f", [1, 8, 8, 4], "float32")
    r1 = b.tensor("r1", [1, 8, 8, 4], "float32")
    p = b.tensor("p", [1, 4, 4, 4], "float32")
    z = b.tensor("z", [1, 4, 4, 4], "float32")
    b.op("RELU", [f], [r1])
    b.op("MAX_POOL_2D", [r1], [p], padding="VALID", stride_w=2, stride_h=2, filter_width=2,
         filter_height=2)
    b.op("TANH", [p], [z])
    float_model = b.build([f], [z])

    for name, model, one_buffer in (("lut", int8_model, 64), ("pool", float_model, 8 * 8 * 4 * 4)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(model)
        g = run_passes(load_model(path))
        plan = plan_memory(g)
        assert plan.arena_size == one_buffer
        assert g.nodes[1].attrs.get("_inplace") is True
        mb.check_tflite(model, tmp_path / name, n_inputs=3)
