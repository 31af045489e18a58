"""MEAN over height and width of an NHWC tensor (global average pooling), int8 and float32.

int8 follows TFLite Micro's QuantizedMeanOrSum: int32 sum, minus zero point * count,
times a multiplier for in_scale / out_scale whose division by the count is folded in at
compile time (TFLite's shift-by-log2(count) then integer divide), plus the output zero
point. ONNX GlobalAveragePool maps here.
"""

from __future__ import annotations

from typing import Any

from ..quant import quantize_multiplier
from . import OpSpec, register
from ._common import require_dtypes, require_quant


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """(multiplier, shift) with the 1/count folded in exactly as TFLite Micro does."""
    import numpy as np

    mult, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    s = count.bit_length() - 1
    s = min(s, 32, 31 + shift)
    mult = (mult << s) // count
    return int(mult), shift - s


@register
class Mean(OpSpec):
    kind = "MEAN"
    tflite_ops = ("MEAN",)
    onnx_ops = ("GlobalAveragePool",)

    def from_tflite(self, ctx: Any) -> None:
        import numpy as np

        if len(ctx.inputs) < 2 or ctx.inputs[1] is None or not ctx.t(ctx.inputs[1]).is_const:
            raise ctx.error("the reduction axes must be a constant tensor")
        rank = len(ctx.t(ctx.inputs[0]).shape)
        axes = sorted({int(a) % rank for a in np.asarray(ctx.t(ctx.inputs[1]).data).reshape(-1)})
        keep = bool(ctx.options.KeepDims()) if ctx.options is not None else False
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs, {"axes": tuple(axes), "keep_dims": keep})

    def from_onnx(self, ctx):
        ctx.global_pool(self.kind)

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if len(x.shape) != 4 or tuple(node.attrs["axes"]) != (1, 2):
            raise err(
                f"only the mean over height and width of a 4-D tensor is supported "
                f"(axes {list(node.attrs['axes'])}, input {list(x.shape)})"
            )
        if y.size != x.shape[0] * x.shape[3]:
            raise err(f"output shape {list(y.shape)} does not match input {list(x.shape)}")
        if dtype == "int8":
            require_quant(x, err)
            require_quant(y, err)

    def lower(self, node, ctx):
        x, y = ctx.t(node.inputs[0]), ctx.t(node.outputs[0])
        n, h, w, c = x.shape
        ctx.kernel("mean.h")
        if x.dtype == "float32":
            ctx.call("mt_mean_hw_f32", ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), n, h * w, c)
            return
        mult, shift = mean_multiplier(x.scale, y.scale, h * w)
        ctx.call(
            "mt_mean_hw_s8",
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            n,
            h * w,
            c,
            -x.zero_point * h * w,
            mult,
            shift,
            y.zero_point,
        )
