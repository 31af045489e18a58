"""Small single-operator (and few-operator) models built in-process, for compiler tests.

Why this exists: TensorFlow is not a dependency, yet the compiler must be tested on every
operator, padding, stride, dilation and quantisation variant on its own. This module writes
``.tflite`` flatbuffers directly with the ``flatbuffers`` package and the generated TFLite
schema code shipped by the ``tflite`` PyPI package (``ModelStart``, ``TensorStart`` ...), and
ONNX models with ``onnx.helper``. Quantised weights follow what the TFLite converter emits:
int8 symmetric weights (per-tensor or per-channel), int32 biases with
``scale = input_scale * weight_scale`` and zero point 0, asymmetric int8 activations.

It also wraps the three reference runtimes (TFLite Micro, LiteRT, onnxruntime) so tests can
compare the compiler's C against them with one call each.

Everything is deterministic: each factory takes a ``seed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------
# TFLite flatbuffer writer
# --------------------------------------------------------------------------------------

_TENSOR_TYPES = {
    "float32": 0,
    "float16": 1,
    "int32": 2,
    "uint8": 3,
    "int64": 4,
    "bool": 6,
    "int16": 7,
    "int8": 9,
}

# op name -> (options table module name or None). The BuiltinOperator code is looked up by
# name in tflite.BuiltinOperator and the options union type in tflite.BuiltinOptions.
_OP_OPTIONS = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "RESHAPE": "ReshapeOptions",
    "SOFTMAX": "SoftmaxOptions",
    "ADD": "AddOptions",
    "SUB": "SubOptions",
    "MUL": "MulOptions",
    "SQUEEZE": "SqueezeOptions",
    "LOGISTIC": None,
    "TANH": None,
    "RELU": None,
    "RELU6": None,
    "QUANTIZE": "QuantizeOptions",
    "DEQUANTIZE": "DequantizeOptions",
    "PAD": "PadOptions",
    "CONCATENATION": "ConcatenationOptions",
    "MEAN": "ReducerOptions",
    "TRANSPOSE": "TransposeOptions",
    "PADV2": "PadV2Options",
}

# Padding / activation enums of the schema, named for readability in tests.
PADDING = {"SAME": 0, "VALID": 1}
ACTIVATION = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4}


def _camel(name: str) -> str:
    """snake_case option name -> the CamelCase used by the generated builder functions."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


@dataclasses.dataclass
class _Tensor:
    name: str
    shape: list[int]
    dtype: str
    buffer: int
    scale: list[float] | None
    zero_point: list[int] | None
    quantized_dimension: int
    variable: bool = False


@dataclasses.dataclass
class _Op:
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any]


class TFLiteBuilder:
    """Collects tensors and operators of one subgraph and serialises a TFLite model.

    Tensor data (weights) go into their own buffers, 16-byte aligned like the converter's
    output; buffer 0 is the schema's mandatory empty buffer.
    """

    def __init__(self, description: str = "microtvm-tasks test model") -> None:
        self.description = description
        self.tensors: list[_Tensor] = []
        self.buffers: list[bytes] = [b""]
        self.ops: list[_Op] = []

    def tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str = "int8",
        data: np.ndarray | None = None,
        scale: float | Sequence[float] | None = None,
        zero_point: int | Sequence[int] | None = None,
        quantized_dimension: int = 0,
        variable: bool = False,
    ) -> int:
        """Add a tensor (a constant if ``data`` is given; `variable`: state an operator keeps
        between invocations, as LSTMs' do); returns its index."""
        buf = 0
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=dtype).reshape(shape))
            self.buffers.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
            buf = len(self.buffers) - 1
        else:
            self.buffers.append(b"")
            buf = len(self.buffers) - 1
        scales = None if scale is None else [float(s) for s in np.atleast_1d(scale)]
        zps = None
        if scales is not None:
            zp = 0 if zero_point is None else zero_point
            zps = [int(z) for z in np.atleast_1d(zp)]
            if len(zps) == 1 and len(scales) > 1:
                zps = zps * len(scales)
        self.tensors.append(_Tensor(name, [int(d) for d in shape], dtype, buf, scales, zps,
                                    quantized_dimension, variable))
        return len(self.tensors) - 1

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], **options: Any) -> None:
        """Add an operator; ``options`` are the builtin options' fields in snake_case
        (e.g. ``padding="SAME"``, ``stride_w=2``, ``fused_activation_function="RELU"``).
        Optional inputs may be given as -1."""
        self.ops.append(_Op(name, list(inputs), list(outputs), dict(options)))

    # -- serialisation ---------------------------------------------------------------

    def build(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        import flatbuffers
        import tflite

        b = flatbuffers.Builder(1024)

        def int_vector(start_fn, values: Sequence[int]) -> int:
            start_fn(b, len(values))
            for v in reversed(values):
                b.PrependInt32(int(v))
            return b.EndVector()

        def long_vector(start_fn, values: Sequence[int]) -> int:
            start_fn(b, len(values))
            for v in reversed(values):
                b.PrependInt64(int(v))
            return b.EndVector()

        def float_vector(start_fn, values: Sequence[float]) -> int:
            start_fn(b, len(values))
            for v in reversed(values):
                b.PrependFloat32(float(v))
            return b.EndVector()

        # Buffers.
        buf_offsets = []
        for data in self.buffers:
            data_off = None
            if data:
                b.StartVector(1, len(data), 16)
                b.head = b.head - len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                data_off = b.EndVector()
            tflite.BufferStart(b)
            if data_off is not None:
                tflite.BufferAddData(b, data_off)
            buf_offsets.append(tflite.BufferEnd(b))

        # Tensors.
        tensor_offsets = []
        for t in self.tensors:
            name_off = b.CreateString(t.name)
            shape_off = int_vector(tflite.TensorStartShapeVector, t.shape)
            q_off = None
            if t.scale is not None:
                scale_off = float_vector(tflite.QuantizationParametersStartScaleVector, t.scale)
                zp_off = long_vector(tflite.QuantizationParametersStartZeroPointVector,
                                     t.zero_point or [0])
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, scale_off)
                tflite.QuantizationParametersAddZeroPoint(b, zp_off)
                tflite.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
                q_off = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape_off)
            tflite.TensorAddType(b, _TENSOR_TYPES[t.dtype])
            tflite.TensorAddBuffer(b, t.buffer)
            tflite.TensorAddName(b, name_off)
            if q_off is not None:
                tflite.TensorAddQuantization(b, q_off)
            if t.variable:
                tflite.TensorAddIsVariable(b, True)
            tensor_offsets.append(tflite.TensorEnd(b))

        # Operator codes (one per distinct op name, in first-use order).
        code_names: list[str] = []
        for o in self.ops:
            if o.name not in code_names:
                code_names.append(o.name)

        # Operators.
        op_offsets = []
        for o in self.ops:
            opts_name = _OP_OPTIONS.get(o.name)  # unknown ops get no options (error tests)
            opts_off = None
            if opts_name is not None:
                opts_off = self._options(b, opts_name, o.options, int_vector)
            in_off = int_vector(tflite.OperatorStartInputsVector, o.inputs)
            out_off = int_vector(tflite.OperatorStartOutputsVector, o.outputs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, code_names.index(o.name))
            tflite.OperatorAddInputs(b, in_off)
            tflite.OperatorAddOutputs(b, out_off)
            if opts_off is not None:
                tflite.OperatorAddBuiltinOptionsType(
                    b, getattr(tflite.BuiltinOptions, opts_name))
                tflite.OperatorAddBuiltinOptions(b, opts_off)
            op_offsets.append(tflite.OperatorEnd(b))

        def table_vector(start_fn, offsets: Sequence[int]) -> int:
            start_fn(b, len(offsets))
            for off in reversed(offsets):
                b.PrependUOffsetTRelative(off)
            return b.EndVector()

        tensors_vec = table_vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
        ops_vec = table_vector(tflite.SubGraphStartOperatorsVector, op_offsets)
        sg_in = int_vector(tflite.SubGraphStartInputsVector, inputs)
        sg_out = int_vector(tflite.SubGraphStartOutputsVector, outputs)
        sg_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, sg_in)
        tflite.SubGraphAddOutputs(b, sg_out)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)

        code_offsets = []
        for name in code_names:
            code = getattr(tflite.BuiltinOperator, name)
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offsets.append(tflite.OperatorCodeEnd(b))

        codes_vec = table_vector(tflite.ModelStartOperatorCodesVector, code_offsets)
        subgraphs_vec = table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = table_vector(tflite.ModelStartBuffersVector, buf_offsets)
        desc = b.CreateString(self.description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buffers_vec)
        model = tflite.ModelEnd(b)
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _options(b, opts_name: str, options: dict[str, Any], int_vector) -> int:
        import importlib

        mod = importlib.import_module(f"tflite.{opts_name}")
        # Vectors must be written before the table is started.
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key == "padding" and isinstance(value, str):
                value = PADDING[value]
            elif key == "fused_activation_function" and isinstance(value, str):
                value = ACTIVATION[value]
            if isinstance(value, (list, tuple)):
                value = int_vector(getattr(mod, f"{opts_name}Start{_camel(key)}Vector"), value)
            values[key] = value
        getattr(mod, f"{opts_name}Start")(b)
        for key, value in values.items():
            getattr(mod, f"{opts_name}Add{_camel(key)}")(b, value)
        return getattr(mod, f"{opts_name}End")(b)


# --------------------------------------------------------------------------------------
# Quantisation helpers (what the TFLite converter would produce)
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QParams:
    """Quantisation of an int8 activation tensor."""

    scale: float
    zero_point: int


def qparams_for_range(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters covering [lo, hi] (0 always representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = int(round(-128 - lo / scale))
    return QParams(float(np.float32(scale)), int(np.clip(zp, -128, 127)))


def quantize_symmetric(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """int8 symmetric weights, per-tensor (axis None) or per-channel along ``axis``."""
    if axis is None:
        amax = np.array([np.max(np.abs(w))])
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.max(np.abs(w), axis=red)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------
# Single-operator model factories. Each returns the .tflite bytes.
# --------------------------------------------------------------------------------------

_IN_Q = QParams(0.05, -3)      # covers about [-6.25, 6.6]


def conv2d(
    dtype: str = "int8",
    *,
    input_shape: Sequence[int] = (1, 9, 9, 3),
    out_channels: int = 4,
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    padding: str = "SAME",
    activation: str = "NONE",
    pre_pad: Sequence[Sequence[int]] | None = None,
    per_channel: bool = True,
    bias: bool = True,
    seed: int = 0,
) -> bytes:
    """One CONV_2D (NHWC input, OHWI weights)."""
    rng = _rng(seed)
    cin = input_shape[3]
    w = rng.uniform(-1, 1, (out_channels, kernel[0], kernel[1], cin)).astype(np.float32)
    bvals = rng.uniform(-1, 1, out_channels).astype(np.float32)
    out_hw = _out_hw(_padded_shape(input_shape, pre_pad)[1:3], kernel, stride, dilation, padding)
    out_shape = [input_shape[0], out_hw[0], out_hw[1], out_channels]
    mb = TFLiteBuilder()
    if dtype == "float32":
        x = mb.tensor("input", input_shape, "float32")
        wt = mb.tensor("weights", w.shape, "float32", w)
        bt = mb.tensor("bias", [out_channels], "float32", bvals) if bias else -1
        y = mb.tensor("output", out_shape, "float32")
    else:
        x = mb.tensor("input", input_shape, "int8", scale=_IN_Q.scale, zero_point=_IN_Q.zero_point)
        wq, ws = quantize_symmetric(w, 0 if per_channel else None)
        wt = mb.tensor("weights", w.shape, "int8", wq, scale=ws, zero_point=0,
                       quantized_dimension=0)
        bs = (_IN_Q.scale * ws).astype(np.float64)
        bt = (mb.tensor("bias", [out_channels], "int32",
                        np.round(bvals / np.broadcast_to(bs, bvals.shape)).astype(np.int32),
                        scale=bs, zero_point=0) if bias else -1)
        fan_in = kernel[0] * kernel[1] * cin
        oq = qparams_for_range(-0.4 * fan_in ** 0.5 * 6, 0.4 * fan_in ** 0.5 * 6)
        y = mb.tensor("output", out_shape, "int8", scale=oq.scale, zero_point=oq.zero_point)
    xp = _pre_pad(mb, x, pre_pad)
    mb.op("CONV_2D", [xp, wt, bt], [y], padding=padding, stride_w=stride[1], stride_h=stride[0],
          dilation_w_factor=dilation[1], dilation_h_factor=dilation[0],
          fused_activation_function=activation)
    return mb.build([x], [y])


def depthwise_conv2d(
    dtype: str = "int8",
    *,
    input_shape: Sequence[int] = (1, 9, 9, 3),
    depth_multiplier: int = 1,
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    padding: str = "SAME",
    activation: str = "NONE",
    pre_pad: Sequence[Sequence[int]] | None = None,
    per_channel: bool = True,
    seed: int = 0,
) -> bytes:
    """One DEPTHWISE_CONV_2D (weights [1, KH, KW, C*M], per-channel along dimension 3)."""
    rng = _rng(seed)
    cin = input_shape[3]
    cout = cin * depth_multiplier
    w = rng.uniform(-1, 1, (1, kernel[0], kernel[1], cout)).astype(np.float32)
    bvals = rng.uniform(-1, 1, cout).astype(np.float32)
    out_hw = _out_hw(_padded_shape(input_shape, pre_pad)[1:3], kernel, stride, dilation, padding)
    out_shape = [input_shape[0], out_hw[0], out_hw[1], cout]
    mb = TFLiteBuilder()
    if dtype == "float32":
        x = mb.tensor("input", input_shape, "float32")
        wt = mb.tensor("weights", w.shape, "float32", w)
        bt = mb.tensor("bias", [cout], "float32", bvals)
        y = mb.tensor("output", out_shape, "float32")
    else:
        x = mb.tensor("input", input_shape, "int8", scale=_IN_Q.scale, zero_point=_IN_Q.zero_point)
        wq, ws = quantize_symmetric(w, 3 if per_channel else None)
        wt = mb.tensor("weights", w.shape, "int8", wq, scale=ws, zero_point=0,
                       quantized_dimension=3)
        bs = np.broadcast_to((_IN_Q.scale * ws).astype(np.float64), (cout,))
        bt = mb.tensor("bias", [cout], "int32", np.round(bvals / bs).astype(np.int32),
                       scale=bs, zero_point=0, quantized_dimension=0)
        oq = qparams_for_range(-8.0, 7.0)
        y = mb.tensor("output", out_shape, "int8", scale=oq.scale, zero_point=oq.zero_point)
    xp = _pre_pad(mb, x, pre_pad)
    mb.op("DEPTHWISE_CONV_2D", [xp, wt, bt], [y], padding=padding, stride_w=stride[1],
          stride_h=stride[0], depth_multiplier=depth_multiplier, dilation_w_factor=dilation[1],
          dilation_h_factor=dilation[0], fused_activation_function=activation)
    return mb.build([x], [y])


def fully_connected(
    dtype: str = "int8",
    *,
    batch: int = 1,
    in_features: int = 16,
    out_features: int = 8,
    activation: str = "NONE",
    per_channel: bool = False,
    bias: bool = True,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
) -> bytes:
    """One FULLY_CONNECTED (weights [out, in]). ``input_shape`` may be e.g. (1, 2, 2, 4):
    TFLite flattens it to [batch, in_features]."""
    rng = _rng(seed)
    in_shape = list(input_shape) if input_shape is not None else [batch, in_features]
    n_in = int(np.prod(in_shape)) // batch
    w = rng.uniform(-1, 1, (out_features, n_in)).astype(np.float32)
    bvals = rng.uniform(-1, 1, out_features).astype(np.float32)
    mb = TFLiteBuilder()
    if dtype == "float32":
        x = mb.tensor("input", in_shape, "float32")
        wt = mb.tensor("weights", w.shape, "float32", w)
        bt = mb.tensor("bias", [out_features], "float32", bvals) if bias else -1
        y = mb.tensor("output", [batch, out_features], "float32")
    else:
        x = mb.tensor("input", in_shape, "int8", scale=_IN_Q.scale, zero_point=_IN_Q.zero_point)
        wq, ws = quantize_symmetric(w, 0 if per_channel else None)
        wt = mb.tensor("weights", w.shape, "int8", wq, scale=ws, zero_point=0)
        bs = np.broadcast_to((_IN_Q.scale * ws).astype(np.float64), (out_features,))
        bt = (mb.tensor("bias", [out_features], "int32", np.round(bvals / bs).astype(np.int32),
                        scale=(_IN_Q.scale * ws), zero_point=0) if bias else -1)
        oq = qparams_for_range(-12.0, 10.0)
        y = mb.tensor("output", [batch, out_features], "int8", scale=oq.scale,
                      zero_point=oq.zero_point)
    mb.op("FULLY_CONNECTED", [x, wt, bt], [y], fused_activation_function=activation)
    return mb.build([x], [y])


def pool2d(
    op: str = "AVERAGE_POOL_2D",
    dtype: str = "int8",
    *,
    input_shape: Sequence[int] = (1, 8, 8, 3),
    filter_size: tuple[int, int] = (2, 2),
    stride: tuple[int, int] = (2, 2),
    padding: str = "VALID",
    activation: str = "NONE",
    pre_pad: Sequence[Sequence[int]] | None = None,
) -> bytes:
    """One AVERAGE_POOL_2D or MAX_POOL_2D (same quantisation in and out, as TFLite requires)."""
    out_hw = _out_hw(_padded_shape(input_shape, pre_pad)[1:3], filter_size, stride, (1, 1), padding)
    out_shape = [input_shape[0], out_hw[0], out_hw[1], input_shape[3]]
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    y = _act(mb, "output", out_shape, dtype, _IN_Q)
    xp = _pre_pad(mb, x, pre_pad)
    mb.op(op, [xp], [y], padding=padding, stride_w=stride[1], stride_h=stride[0],
          filter_width=filter_size[1], filter_height=filter_size[0],
          fused_activation_function=activation)
    return mb.build([x], [y])


def softmax(dtype: str = "int8", *, input_shape: Sequence[int] = (1, 10), beta: float = 1.0,
            input_q: QParams = QParams(0.1, 5)) -> bytes:
    """One SOFTMAX; int8 output uses the converter's fixed 1/256, -128."""
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, input_q)
    y = _act(mb, "output", input_shape, dtype, QParams(1.0 / 256, -128))
    mb.op("SOFTMAX", [x], [y], beta=beta)
    return mb.build([x], [y])


def reshape(dtype: str = "int8", *, input_shape: Sequence[int] = (1, 4, 4, 2),
            new_shape: Sequence[int] = (1, 32), shape_input: bool = True) -> bytes:
    """One RESHAPE, with the target shape as a constant second input and/or option."""
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    y = _act(mb, "output", new_shape, dtype, _IN_Q)
    ins = [x]
    if shape_input:
        ins.append(mb.tensor("shape", [len(new_shape)], "int32", np.array(new_shape)))
    mb.op("RESHAPE", ins, [y], new_shape=list(new_shape))
    return mb.build([x], [y])


def squeeze(dtype: str = "int8", *, input_shape: Sequence[int] = (1, 1, 1, 6),
            squeeze_dims: Sequence[int] = (1, 2)) -> bytes:
    out_shape = [d for i, d in enumerate(input_shape)
                 if not (i in squeeze_dims or (not squeeze_dims and d == 1))]
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    y = _act(mb, "output", out_shape, dtype, _IN_Q)
    mb.op("SQUEEZE", [x], [y], squeeze_dims=list(squeeze_dims))
    return mb.build([x], [y])


def binary(
    op: str = "ADD",
    dtype: str = "int8",
    *,
    shape_a: Sequence[int] = (1, 4, 4, 3),
    shape_b: Sequence[int] = (1, 4, 4, 3),
    activation: str = "NONE",
    qa: QParams = QParams(0.05, -3),
    qb: QParams = QParams(0.03, 10),
    qout: QParams | None = None,
    const_b: bool = False,
    seed: int = 0,
) -> bytes:
    """ADD / SUB / MUL of two tensors (broadcasting allowed); b may be a constant."""
    out_shape = list(np.broadcast_shapes(tuple(shape_a), tuple(shape_b)))
    if qout is None:
        qout = {"ADD": QParams(0.08, -2), "SUB": QParams(0.08, 1),
                "MUL": QParams(0.12, 4)}[op]
    mb = TFLiteBuilder()
    a = _act(mb, "a", shape_a, dtype, qa)
    if const_b:
        rng = _rng(seed)
        if dtype == "float32":
            data = rng.uniform(-3, 3, shape_b).astype(np.float32)
        else:
            data = rng.integers(-128, 128, shape_b).astype(np.int8)
        bb = _act(mb, "b", shape_b, dtype, qb, data)
    else:
        bb = _act(mb, "b", shape_b, dtype, qb)
    y = _act(mb, "output", out_shape, dtype, qout)
    mb.op(op, [a, bb], [y], fused_activation_function=activation)
    return mb.build([a] if const_b else [a, bb], [y])


def unary(op: str = "RELU", dtype: str = "int8", *, input_shape: Sequence[int] = (1, 4, 4, 3),
          input_q: QParams = QParams(0.05, -3), output_q: QParams | None = None) -> bytes:
    """LOGISTIC, TANH, RELU, RELU6. int8 LOGISTIC/TANH outputs use the fixed
    (1/256, -128) / (1/128, 0) that TFLite requires."""
    if output_q is None:
        output_q = {"LOGISTIC": QParams(1.0 / 256, -128), "TANH": QParams(1.0 / 128, 0),
                    "RELU": QParams(0.03, -128), "RELU6": QParams(6.0 / 255, -128)}[op]
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, input_q)
    y = _act(mb, "output", input_shape, dtype, output_q)
    mb.op(op, [x], [y])
    return mb.build([x], [y])


def quantize(*, input_shape: Sequence[int] = (1, 8), from_dtype: str = "float32",
             input_q: QParams = QParams(0.05, -3), output_q: QParams = QParams(0.02, 7)) -> bytes:
    """QUANTIZE float32->int8, or int8->int8 (requantise) when from_dtype is int8."""
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, from_dtype, input_q)
    y = _act(mb, "output", input_shape, "int8", output_q)
    mb.op("QUANTIZE", [x], [y])
    return mb.build([x], [y])


def dequantize(*, input_shape: Sequence[int] = (1, 8),
               input_q: QParams = QParams(0.05, -3)) -> bytes:
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, "int8", input_q)
    y = _act(mb, "output", input_shape, "float32", input_q)
    mb.op("DEQUANTIZE", [x], [y])
    return mb.build([x], [y])


def pad(dtype: str = "int8", *, input_shape: Sequence[int] = (1, 4, 4, 3),
        paddings: Sequence[Sequence[int]] = ((0, 0), (1, 2), (2, 1), (0, 0)),
        value: float | None = None) -> bytes:
    """PAD, or PADV2 with a constant pad value when ``value`` is given."""
    out_shape = [d + p[0] + p[1] for d, p in zip(input_shape, paddings, strict=True)]
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    pt = mb.tensor("paddings", [len(input_shape), 2], "int32", np.array(paddings))
    y = _act(mb, "output", out_shape, dtype, _IN_Q)
    if value is None:
        mb.op("PAD", [x, pt], [y])
    else:
        v = (mb.tensor("value", [1], "float32", np.array([value])) if dtype == "float32" else
             mb.tensor("value", [1], "int8", np.array([int(value)]), scale=_IN_Q.scale,
                       zero_point=_IN_Q.zero_point))
        mb.op("PADV2", [x, pt, v], [y])
    return mb.build([x], [y])


def concatenation(dtype: str = "int8", *, shapes: Sequence[Sequence[int]] = ((1, 2, 2, 3),
                                                                            (1, 2, 2, 5)),
                  axis: int = 3, activation: str = "NONE") -> bytes:
    """CONCATENATION of N inputs (same int8 quantisation everywhere, as TFLM requires)."""
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    mb = TFLiteBuilder()
    xs = [_act(mb, f"input{i}", s, dtype, _IN_Q) for i, s in enumerate(shapes)]
    y = _act(mb, "output", out_shape, dtype, _IN_Q)
    mb.op("CONCATENATION", xs, [y], axis=axis, fused_activation_function=activation)
    return mb.build(xs, [y])


def mean(dtype: str = "int8", *, input_shape: Sequence[int] = (1, 5, 4, 3),
         axes: Sequence[int] = (1, 2), keep_dims: bool = True,
         output_q: QParams = QParams(0.05, -3)) -> bytes:
    out_shape = [1 if i in axes else d for i, d in enumerate(input_shape)] if keep_dims else \
        [d for i, d in enumerate(input_shape) if i not in axes]
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    ax = mb.tensor("axes", [len(axes)], "int32", np.array(axes))
    y = _act(mb, "output", out_shape, dtype, output_q)
    mb.op("MEAN", [x, ax], [y], keep_dims=keep_dims)
    return mb.build([x], [y])


def transpose(dtype: str = "int8", *, input_shape: Sequence[int] = (1, 3, 4, 5),
              perm: Sequence[int] = (0, 2, 3, 1)) -> bytes:
    out_shape = [input_shape[p] for p in perm]
    mb = TFLiteBuilder()
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    pt = mb.tensor("perm", [len(perm)], "int32", np.array(perm))
    y = _act(mb, "output", out_shape, dtype, _IN_Q)
    mb.op("TRANSPOSE", [x, pt], [y])
    return mb.build([x], [y])


def float_io_int8_fc(*, in_features: int = 16, out_features: int = 6, seed: int = 0) -> bytes:
    """float input -> QUANTIZE -> int8 FULLY_CONNECTED (relu) -> DEQUANTIZE -> float output:
    the converter's "int8 inside, float at the edges" layout."""
    rng = _rng(seed)
    w = rng.uniform(-1, 1, (out_features, in_features)).astype(np.float32)
    bv = rng.uniform(-1, 1, out_features).astype(np.float32)
    wq, ws = quantize_symmetric(w, 0)
    qo = QParams(0.07, -20)
    mb = TFLiteBuilder()
    x = mb.tensor("x", [1, in_features], "float32")
    xq = mb.tensor("x_q", [1, in_features], "int8", scale=_IN_Q.scale, zero_point=_IN_Q.zero_point)
    wt = mb.tensor("w", w.shape, "int8", wq, scale=ws, zero_point=0)
    bs = (_IN_Q.scale * ws).astype(np.float64)
    bt = mb.tensor("b", [out_features], "int32", np.round(bv / bs).astype(np.int32), scale=bs)
    yq = mb.tensor("y_q", [1, out_features], "int8", scale=qo.scale, zero_point=qo.zero_point)
    y = mb.tensor("y", [1, out_features], "float32")
    mb.op("QUANTIZE", [x], [xq])
    mb.op("FULLY_CONNECTED", [xq, wt, bt], [yq], fused_activation_function="RELU")
    mb.op("DEQUANTIZE", [yq], [y])
    return mb.build([x], [y])


def small_cnn(dtype: str = "int8", seed: int = 0) -> bytes:
    """A few-operator model: CONV_2D(relu) -> DEPTHWISE_CONV_2D -> AVERAGE_POOL_2D ->
    RESHAPE -> FULLY_CONNECTED -> SOFTMAX. Exercises arena reuse between ops."""
    rng = _rng(seed)
    mb = TFLiteBuilder()
    f = dtype == "float32"
    x = _act(mb, "input", [1, 8, 8, 2], dtype, _IN_Q)
    w1 = rng.uniform(-1, 1, (4, 3, 3, 2)).astype(np.float32)
    w2 = rng.uniform(-1, 1, (1, 3, 3, 4)).astype(np.float32)
    w3 = rng.uniform(-1, 1, (5, 16)).astype(np.float32)
    b1 = rng.uniform(-1, 1, 4).astype(np.float32)
    b2 = rng.uniform(-1, 1, 4).astype(np.float32)
    b3 = rng.uniform(-1, 1, 5).astype(np.float32)
    q1, q2, q3, q4 = (QParams(0.06, -128), QParams(0.1, -5), QParams(0.1, -5), QParams(0.2, 3))

    def weights(name, w, axis, in_scale):
        if f:
            return mb.tensor(name, w.shape, "float32", w)
        wq, ws = quantize_symmetric(w, axis)
        return mb.tensor(name, w.shape, "int8", wq, scale=ws, zero_point=0,
                         quantized_dimension=axis or 0)

    def biases(name, bv, w, axis, in_scale):
        if f:
            return mb.tensor(name, bv.shape, "float32", bv)
        _, ws = quantize_symmetric(w, axis)
        bs = np.broadcast_to((in_scale * ws).astype(np.float64), bv.shape)
        return mb.tensor(name, bv.shape, "int32", np.round(bv / bs).astype(np.int32),
                         scale=bs, zero_point=0)

    t1 = _act(mb, "conv", [1, 8, 8, 4], dtype, q1)
    mb.op("CONV_2D", [x, weights("w1", w1, 0, _IN_Q.scale), biases("b1", b1, w1, 0, _IN_Q.scale)],
          [t1], padding="SAME", stride_w=1, stride_h=1, dilation_w_factor=1,
          dilation_h_factor=1, fused_activation_function="RELU")
    t2 = _act(mb, "dwconv", [1, 8, 8, 4], dtype, q2)
    mb.op("DEPTHWISE_CONV_2D", [t1, weights("w2", w2, 3, q1.scale),
                                biases("b2", b2, w2, 3, q1.scale)], [t2],
          padding="SAME", stride_w=1, stride_h=1, depth_multiplier=1, dilation_w_factor=1,
          dilation_h_factor=1)
    t3 = _act(mb, "pool", [1, 2, 2, 4], dtype, q2)
    mb.op("AVERAGE_POOL_2D", [t2], [t3], padding="VALID", stride_w=4, stride_h=4,
          filter_width=4, filter_height=4)
    t4 = _act(mb, "flat", [1, 16], dtype, q2)
    mb.op("RESHAPE", [t3, mb.tensor("shape", [2], "int32", np.array([1, 16]))], [t4],
          new_shape=[1, 16])
    t5 = _act(mb, "logits", [1, 5], dtype, q4)
    mb.op("FULLY_CONNECTED", [t4, weights("w3", w3, None, q3.scale),
                              biases("b3", b3, w3, None, q3.scale)], [t5])
    y = _act(mb, "probs", [1, 5], dtype, QParams(1.0 / 256, -128))
    mb.op("SOFTMAX", [t5], [y], beta=1.0)
    return mb.build([x], [y])


def conv2d_maxpool(
    dtype: str = "float32",
    *,
    input_shape: Sequence[int] = (1, 9, 9, 3),
    out_channels: int = 8,
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    padding: str = "SAME",
    activation: str = "RELU",
    pool: tuple[int, int] = (2, 2),
    pool_stride: tuple[int, int] | None = None,
    pool_padding: str = "VALID",
    pool_activation: str = "NONE",
    also_output_conv: bool = False,
    seed: int = 0,
) -> bytes:
    """CONV_2D -> MAX_POOL_2D (the pattern the compiler fuses when the pool tiles the
    convolution's output); ``also_output_conv`` makes the convolution's output a model
    output too (then it must exist: no fusion)."""
    rng = _rng(seed)
    cin = input_shape[3]
    w = rng.uniform(-1, 1, (out_channels, kernel[0], kernel[1], cin)).astype(np.float32)
    bvals = rng.uniform(-1, 1, out_channels).astype(np.float32)
    ohw = _out_hw(input_shape[1:3], kernel, stride, (1, 1), padding)
    pstride = pool_stride or pool
    phw = _out_hw(ohw, pool, pstride, (1, 1), pool_padding)
    mb = TFLiteBuilder()
    q = QParams(0.05, -3)
    x = _act(mb, "input", input_shape, dtype, _IN_Q)
    if dtype == "float32":
        wt = mb.tensor("weights", w.shape, "float32", w)
        bt = mb.tensor("bias", [out_channels], "float32", bvals)
    else:
        wq, ws = quantize_symmetric(w, 0)
        wt = mb.tensor("weights", w.shape, "int8", wq, scale=ws, zero_point=0)
        bs = (_IN_Q.scale * ws).astype(np.float64)
        bt = mb.tensor("bias", [out_channels], "int32", np.round(bvals / bs).astype(np.int32), scale=bs,
                       zero_point=0)
        q = qparams_for_range(-8.0, 8.0)
    c = _act(mb, "conv", [input_shape[0], ohw[0], ohw[1], out_channels], dtype, q)
    y = _act(mb, "output", [input_shape[0], phw[0], phw[1], out_channels], dtype, q)
    mb.op("CONV_2D", [x, wt, bt], [c], padding=padding, stride_w=stride[1], stride_h=stride[0],
          dilation_w_factor=1, dilation_h_factor=1, fused_activation_function=activation)
    mb.op("MAX_POOL_2D", [c], [y], padding=pool_padding, stride_w=pstride[1], stride_h=pstride[0],
          filter_width=pool[1], filter_height=pool[0], fused_activation_function=pool_activation)
    return mb.build([x], [y, c] if also_output_conv else [y])


def _pre_pad(mb: TFLiteBuilder, x: int, pre_pad: Sequence[Sequence[int]] | None) -> int:
    """A spatial PAD ((top, bottom), (left, right)) in front of tensor ``x`` (same dtype and
    quantisation, so int8 pads with the zero point); returns the padded tensor, or ``x``."""
    if pre_pad is None:
        return x
    t = mb.tensors[x]
    (top, bottom), (left, right) = pre_pad
    shape = [t.shape[0], t.shape[1] + top + bottom, t.shape[2] + left + right, t.shape[3]]
    pt = mb.tensor("paddings", [4, 2], "int32", np.array([[0, 0], [top, bottom], [left, right], [0, 0]]))
    y = mb.tensor("padded", shape, t.dtype, scale=t.scale, zero_point=t.zero_point)
    mb.op("PAD", [x, pt], [y])
    return y


def _padded_shape(shape: Sequence[int], pre_pad: Sequence[Sequence[int]] | None) -> list[int]:
    if pre_pad is None:
        return list(shape)
    (top, bottom), (left, right) = pre_pad
    return [shape[0], shape[1] + top + bottom, shape[2] + left + right, *shape[3:]]


def _act(mb: TFLiteBuilder, name: str, shape: Sequence[int], dtype: str, q: QParams,
         data: np.ndarray | None = None) -> int:
    """An activation tensor: quantised if int8, plain if float32."""
    if dtype == "int8":
        return mb.tensor(name, shape, "int8", data, scale=q.scale, zero_point=q.zero_point)
    return mb.tensor(name, shape, dtype, data)


def _out_hw(in_hw: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
            dilation: Sequence[int], padding: str) -> tuple[int, int]:
    out = []
    for i in range(2):
        eff = (kernel[i] - 1) * dilation[i] + 1
        if padding == "SAME":
            out.append((in_hw[i] + stride[i] - 1) // stride[i])
        else:
            out.append((in_hw[i] - eff + stride[i]) // stride[i])
    return out[0], out[1]


# --------------------------------------------------------------------------------------
# Reference runtimes
# --------------------------------------------------------------------------------------

def tflite_io(model: bytes) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of the first subgraph: name, shape, dtype, quantization
    (scale, zero point), read from the flatbuffer (no interpreter needed)."""
    import tflite

    m = tflite.Model.GetRootAsModel(model, 0)
    sg = m.Subgraphs(0)
    names = {v: k for k, v in _TENSOR_TYPES.items()}

    def detail(i: int) -> dict:
        t = sg.Tensors(i)
        q = t.Quantization()
        quant = (0.0, 0)
        if q is not None and q.ScaleLength():
            quant = (float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0)
        return {"name": t.Name().decode(), "index": i, "shape": np.array(t.ShapeAsNumpy()),
                "dtype": np.dtype(names[t.Type()]), "quantization": quant}

    return ([detail(int(i)) for i in sg.InputsAsNumpy()],
            [detail(int(i)) for i in sg.OutputsAsNumpy()])


def random_inputs(model: bytes, seed: int = 0) -> list[np.ndarray]:
    """One random array per model input: full int8 range, or N(0, 1) (x2) floats."""
    rng = _rng(seed)
    ins, _ = tflite_io(model)
    out = []
    for d in ins:
        dt = np.dtype(d["dtype"])
        if dt.kind == "f":
            out.append((rng.standard_normal(d["shape"]) * 2).astype(dt))
        else:
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(dt))
    return out


def run_tflm(model: bytes, inputs: Sequence[np.ndarray], arena_size: int = 1 << 20
             ) -> list[np.ndarray]:
    """Run TFLite Micro's interpreter once (the int8 bit-exact reference)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    for i, x in enumerate(inputs):
        it.set_input(x, i)
    it.invoke()
    n_out = len(tflite_io(model)[1])
    return [np.array(it.get_output(i), copy=True) for i in range(n_out)]


class TFLMRunner:
    """A TFLite Micro interpreter kept alive for many inputs (creating one per input is slow)."""

    def __init__(self, model: bytes, arena_size: int = 1 << 20) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self._it = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        self._n_out = len(tflite_io(model)[1])

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self._it.set_input(x, i)
        self._it.invoke()
        return [np.array(self._it.get_output(i), copy=True) for i in range(self._n_out)]


def run_litert(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run LiteRT (the float reference)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs, strict=True):
        it.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]).reshape(d["shape"]))
    it.invoke()
    return [np.array(it.get_tensor(d["index"]), copy=True) for d in it.get_output_details()]


# --------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------

def onnx_model(nodes: list, inputs: list, outputs: list, initializers: Sequence = (),
               opset: int = 13, name: str = "test"):
    """Wrap nodes into a checked ONNX ModelProto (float32 graphs)."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="microtvm-tasks-tests")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def onnx_value(name: str, shape: Sequence[int]):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def onnx_const(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array), name)


def onnx_single(op_type: str, input_shapes: Sequence[Sequence[int]], output_shape: Sequence[int],
                *, consts: dict[str, np.ndarray] | None = None, opset: int = 13,
                **attrs: Any):
    """One ONNX node: graph inputs x0, x1..., then the named constants (initializers) in the
    order given, one output y."""
    from onnx import helper

    consts = consts or {}
    ins = [onnx_value(f"x{i}", s) for i, s in enumerate(input_shapes)]
    node = helper.make_node(op_type, [v.name for v in ins] + list(consts), ["y"],
                            name=f"{op_type.lower()}_0", **attrs)
    return onnx_model([node], ins, [onnx_value("y", output_shape)],
                      [onnx_const(k, v) for k, v in consts.items()], opset=opset,
                      name=f"single_{op_type}")


def run_onnxruntime(model, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run onnxruntime (CPU) on a ModelProto, bytes or path."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feed = {i.name: np.asarray(x, dtype=np.float32) for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    return [np.asarray(y) for y in sess.run(None, feed)]


# --------------------------------------------------------------------------------------
# Compile with our compiler, run the C via ctypes, compare with the reference runtimes
# --------------------------------------------------------------------------------------

def compile_c(model: Any, workdir: Any, name: str = "model") -> Any:
    """Compile ``model`` (.tflite bytes, an onnx ModelProto, or a path) with
    ``microtvm_tasks.compiler`` and load its C as a shared library
    (tests/compiler_harness.CompiledModel). Builds once; call ``.run(inputs)`` many times."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from compiler_harness import CompiledModel

    from microtvm_tasks.compiler import compile_to_members

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, (str, Path)):
        path = Path(model)
    elif hasattr(model, "SerializeToString"):
        path = workdir / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
    else:
        path = workdir / f"{name}.tflite"
        path.write_bytes(model)
    members = compile_to_members(path, module_name=name)
    return CompiledModel(members, workdir / "build")


def float_tolerance(ref: np.ndarray) -> float:
    """The brief's float bound: 1e-4 x the reference output's range (at least 1e-4 x max|ref|)."""
    ref = np.asarray(ref, np.float64)
    return 1e-4 * max(float(np.ptp(ref)), float(np.max(np.abs(ref))), 1e-6)


def check_tflite(model: bytes, workdir: Any, n_inputs: int = 5, seed: int = 0,
                 compiled: Any = None, float_vs_tflm: bool = False) -> Any:
    """Compile and run ``model`` on ``n_inputs`` random inputs; int8 outputs must equal
    TFLite Micro's bit for bit, float outputs LiteRT's within float_tolerance (or, with
    ``float_vs_tflm``, TFLite Micro's exactly: for int8 models with float I/O, whose
    dequantised outputs inherit TFLite Micro's integer results). Returns the
    CompiledModel (to reuse)."""
    cm = compiled if compiled is not None else compile_c(model, workdir)
    tflm = TFLMRunner(model)
    for k in range(n_inputs):
        xs = random_inputs(model, seed + k)
        ours = cm.run(xs)
        refs = tflm(xs)
        floats = None
        for i, (o, r) in enumerate(zip(ours, refs, strict=True)):
            o = np.asarray(o).reshape(-1)
            if np.dtype(r.dtype).kind == "f" and float_vs_tflm:
                r = r.reshape(-1)
                assert np.array_equal(o, r), (
                    f"output {i} input #{k}: max |ours - TFLite Micro| = {np.max(np.abs(o - r))}")
            elif np.dtype(r.dtype).kind == "f":
                if floats is None:
                    floats = run_litert(model, xs)
                r = floats[i].reshape(-1)
                err = float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64))))
                assert err <= float_tolerance(r), (
                    f"output {i} input #{k}: max |ours - LiteRT| = {err} > {float_tolerance(r)}")
            else:
                r = r.reshape(-1)
                bad = np.flatnonzero(o != r)
                assert bad.size == 0, (
                    f"output {i} input #{k}: {bad.size}/{r.size} values differ from TFLite Micro; "
                    f"first at {bad[0]}: ours {o[bad[0]]} vs {r[bad[0]]}")
    return cm


def check_onnx(model: Any, workdir: Any, n_inputs: int = 5, seed: int = 0,
               compiled: Any = None, scale: float = 1.0) -> Any:
    """Compile and run an ONNX model; outputs within float_tolerance of onnxruntime."""
    cm = compiled if compiled is not None else compile_c(model, workdir)
    rng = _rng(seed)
    for k in range(n_inputs):
        xs = [(rng.standard_normal(s["shape"]) * scale).astype(np.float32) for s in cm.inputs]
        ours = cm.run(xs)
        refs = run_onnxruntime(model, xs)
        for i, (o, r) in enumerate(zip(ours, refs, strict=True)):
            assert tuple(np.asarray(o).shape) == tuple(r.shape) or np.asarray(o).size == r.size
            o, r = np.asarray(o, np.float64).reshape(-1), np.asarray(r, np.float64).reshape(-1)
            err = float(np.max(np.abs(o - r)))
            assert err <= float_tolerance(r), (
                f"output {i} input #{k}: max |ours - onnxruntime| = {err} > {float_tolerance(r)}")
    return cm
