"""SOFTMAX over the last dimension: int8 -> int8 bit exact with TFLite's reference integer
softmax (output scale 1/256, zero point -128), and float32."""

from __future__ import annotations

import math
from typing import Any

from ..quant import c_float, quantize_multiplier
from . import OpSpec, register
from ._common import require_dtypes, require_quant

_SCALED_DIFF_INTEGER_BITS = 5


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input multiplier, left shift, diff_min): TFLite's PreprocessSoftmaxScaling and
    CalculateInputRadius for 5 integer bits, in double as TFLite computes them."""
    real = min(beta * input_scale * (1 << (31 - _SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError("softmax input scale too small")
    max_input_rescaled = (
        1.0 * ((1 << _SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - _SCALED_DIFF_INTEGER_BITS)) / (1 << shift)
    )
    diff_min = -int(math.floor(max_input_rescaled))
    return mult, shift, diff_min


@register
class Softmax(OpSpec):
    kind = "SOFTMAX"
    tflite_ops = ("SOFTMAX",)

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        return {"beta": float(ctx.options.Beta()) if ctx.options is not None else 1.0}

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.shape != y.shape or not x.shape:
            raise err(f"input {list(x.shape)} and output {list(y.shape)} shapes must match and be >= 1-D")
        if dtype == "int8":
            require_quant(x, err)
            require_quant(y, err)
            if y.zero_point != -128 or y.scale != 1.0 / 256:
                raise err(
                    f"int8 output must have scale 1/256 and zero point -128, got {y.scale}, {y.zero_point}"
                )

    def lower(self, node, ctx):
        import numpy as np

        x = ctx.t(node.inputs[0])
        depth = int(x.shape[-1])
        rows = x.size // depth
        beta = float(np.float32(node.attrs.get("beta", 1.0)))
        ctx.kernel("softmax.h")
        if x.dtype == "int8":
            try:
                mult, shift, diff_min = softmax_params(beta, float(x.scale))
            except ValueError as e:
                raise ctx.error(str(e)) from None
            ctx.call(
                "mt_softmax_s8",
                ctx.ptr(node.inputs[0]),
                ctx.ptr(node.outputs[0]),
                rows,
                depth,
                mult,
                shift,
                diff_min,
            )
        else:
            ctx.include("math.h")
            ctx.call(
                "mt_softmax_f32",
                ctx.ptr(node.inputs[0]),
                ctx.ptr(node.outputs[0]),
                rows,
                depth,
                c_float(beta),
            )
