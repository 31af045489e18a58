"""LOGISTIC, TANH, RELU, RELU6 as stand-alone operators (int8 and float32).

int8 follows TFLite Micro exactly:
- LOGISTIC / TANH: a 256-entry table computed at compile time with TFLite's fixed-point
  algorithm (fixedpoint_lut.py); TFLite fixes their outputs at (1/256, -128) and
  (1/128, 0), and TFLite Micro ignores the output parameters, so do we (checked).
- RELU: requantise x - in_zp to the output scale, add out_zp, clamp at the output's zero
  (as a table when the scales differ, a plain clamp when they are equal).
- RELU6: TFLite Micro clamps in the *input* quantisation to [in_zp, quantised 6.0]
  without rescaling; the output parameters are not used.
float32: clamps, and 1/(1+e^-x) / tanh computed without libm (kernels/activation.h).
A RELU / RELU6 after an operator with a fused activation is merged into it by the
fuse_activations pass, so these kernels only run when that is not possible.
"""

from __future__ import annotations

from ..quant import c_float, quantize_multiplier, tflite_round
from . import OpSpec, register
from ._common import require_dtypes, require_quant
from .fixedpoint_lut import logistic_table_s8, mbqm, tanh_table_s8


def relu_table_s8(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> list[int]:
    """TFLite Micro's int8 RELU for every input value."""
    import numpy as np

    mult, shift = quantize_multiplier(float(np.float32(np.float32(in_scale) / np.float32(out_scale))))
    lo = max(-128, out_zp + int(tflite_round(float(np.float32(0.0) / np.float32(out_scale)))))
    return [min(max(out_zp + mbqm(q - in_zp, mult, shift), lo), 127) for q in range(-128, 128)]


def relu6_bounds_s8(in_scale: float, in_zp: int) -> tuple[int, int]:
    """TFLite Micro's int8 RELU6 clamp: [zero point, round(6 / scale) + zero point]."""
    import numpy as np

    six = int(tflite_round(float(np.float32(6.0) / np.float32(in_scale)))) + in_zp
    return in_zp, min(max(six, -128), 127)


class _Unary(OpSpec):
    def inplace(self, node, graph) -> bool:
        """Element-wise, read before write, same element size: the output may overwrite
        the input (kernels without restrict on in/out)."""
        return graph.t(node.inputs[0]).nbytes == graph.t(node.outputs[0]).nbytes

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.size != y.size:
            raise err(f"input and output sizes differ ({x.size}, {y.size})")
        if dtype == "int8":
            require_quant(x, err)
            require_quant(y, err)

    def _lut(self, node, ctx, table):
        import numpy as np

        n = ctx.t(node.inputs[0]).size
        ctx.kernel("lut.h")
        ctx.call(
            "mt_lut_s8",
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            n,
            ctx.const(np.asarray(table, np.int8), f"{node.kind.lower()}_table"),
        )

    def _lut_or_f32(self, node, ctx, table_s8, f32_kernel: str) -> None:
        """int8: TFLite's fixed-point function precomputed as a table; float32: a C kernel."""
        x = ctx.t(node.inputs[0])
        if x.dtype == "int8":
            self._lut(node, ctx, table_s8(x.scale, x.zero_point))
            return
        ctx.kernel("activation.h")
        ctx.call(f32_kernel, ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), x.size)


@register
class Logistic(_Unary):
    kind = "LOGISTIC"
    tflite_ops = ("LOGISTIC",)
    onnx_ops = ("Sigmoid",)

    def check(self, node, graph, err):
        super().check(node, graph, err)
        y = graph.t(node.outputs[0])
        if y.dtype == "int8" and y.zero_point != -128:
            raise err(f"int8 output zero point must be -128 (TFLite), got {y.zero_point}")

    def from_onnx(self, ctx):
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs)

    def lower(self, node, ctx):
        self._lut_or_f32(node, ctx, logistic_table_s8, "mt_logistic_f32")


@register
class Tanh(_Unary):
    kind = "TANH"
    tflite_ops = ("TANH",)
    onnx_ops = ("Tanh",)

    def from_onnx(self, ctx):
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs)

    def lower(self, node, ctx):
        self._lut_or_f32(node, ctx, tanh_table_s8, "mt_tanh_f32")


@register
class Relu(_Unary):
    kind = "RELU"
    tflite_ops = ("RELU",)
    onnx_ops = ("Relu",)
    activation = "RELU"

    def from_onnx(self, ctx):
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs)

    def lower(self, node, ctx):
        x, y = ctx.t(node.inputs[0]), ctx.t(node.outputs[0])
        if x.dtype == "float32":
            ctx.kernel("activation.h")
            ctx.call(
                "mt_clamp_buf_f32",
                ctx.ptr(node.inputs[0]),
                ctx.ptr(node.outputs[0]),
                x.size,
                "0.0f",
                "FLT_MAX",
            )
            return
        table = relu_table_s8(x.scale, x.zero_point, y.scale, y.zero_point)
        if table == [min(max(q, table[0]), 127) for q in range(-128, 128)]:
            ctx.kernel("activation.h")  # identity rescale: a clamp is enough
            ctx.call(
                "mt_clamp_buf_s8", ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), x.size, table[0], 127
            )
            return
        self._lut(node, ctx, table)


@register
class Relu6(_Unary):
    kind = "RELU6"
    tflite_ops = ("RELU6",)
    activation = "RELU6"

    def lower(self, node, ctx):
        x = ctx.t(node.inputs[0])
        ctx.kernel("activation.h")
        if x.dtype == "float32":
            ctx.call(
                "mt_clamp_buf_f32", ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), x.size, "0.0f", "6.0f"
            )
            return
        lo, hi = relu6_bounds_s8(x.scale, x.zero_point)
        ctx.call("mt_clamp_buf_s8", ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), x.size, lo, hi)


@register
class ReluN1To1(_Unary):
    kind = "RELU_N1_TO_1"
    tflite_ops = ("RELU_N1_TO_1",)
    activation = "RELU_N1_TO_1"

    def check(self, node, graph, err):
        require_dtypes(node, graph, err, ("float32",))

    def lower(self, node, ctx):
        ctx.kernel("activation.h")
        ctx.call(
            "mt_clamp_buf_f32",
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            ctx.t(node.inputs[0]).size,
            c_float(-1.0),
            c_float(1.0),
        )


@register
class Clip(_Unary):
    """float32 clamp to [min, max] (ONNX Clip with bounds that are not a named activation)."""

    kind = "CLIP"

    def check(self, node, graph, err):
        require_dtypes(node, graph, err, ("float32",))
        if not node.attrs["min"] <= node.attrs["max"]:
            raise err(f"min {node.attrs['min']} > max {node.attrs['max']}")

    def lower(self, node, ctx):
        ctx.kernel("activation.h")
        ctx.call(
            "mt_clamp_buf_f32",
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            ctx.t(node.inputs[0]).size,
            c_float(node.attrs["min"]),
            c_float(node.attrs["max"]),
        )
