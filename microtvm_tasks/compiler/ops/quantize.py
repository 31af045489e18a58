"""QUANTIZE (float32 -> int8, int8 -> int8 requantisation) and DEQUANTIZE (int8 -> float32).

As TFLite Micro: QUANTIZE from float is round(x / scale) (float32 division, halves away
from zero) + zero point, saturated; int8 -> int8 is MultiplyByQuantizedMultiplier with
in_scale / out_scale (a compile-time table here); DEQUANTIZE is scale * (q - zero point).
"""

from __future__ import annotations

from ..quant import c_float, quantize_multiplier
from . import OpSpec, register
from ._common import require_quant
from .fixedpoint_lut import mbqm


def requantize_table_s8(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> list[int]:
    import numpy as np

    mult, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    return [min(max(mbqm(q - in_zp, mult, shift) + out_zp, -128), 127) for q in range(-128, 128)]


def _check_per_tensor(t, err):
    require_quant(t, err)
    if t.quant.per_channel:
        raise err(f"per-channel quantisation of {t.name!r} is not supported here")


@register
class Quantize(OpSpec):
    kind = "QUANTIZE"
    tflite_ops = ("QUANTIZE",)

    def inplace(self, node, graph) -> bool:
        """int8 <- int8 (table) or int8 <- float32 (element i is written at byte i, after
        float i, at bytes 4i..4i+3, was read): the output may overwrite the input."""
        return True

    def check(self, node, graph, err):
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if y.dtype != "int8" or x.dtype not in ("float32", "int8"):
            raise err(f"{x.dtype} -> {y.dtype} is not supported (float32 or int8 -> int8)")
        _check_per_tensor(y, err)
        if x.dtype == "int8":
            _check_per_tensor(x, err)

    def fold(self, node, graph):
        import numpy as np

        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.dtype != "float32":
            return None
        v = np.asarray(x.data, np.float32) / np.float32(y.scale)
        r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
        return [np.clip(r.astype(np.int64) + y.zero_point, -128, 127).astype(np.int8)]

    def lower(self, node, ctx):
        import numpy as np

        x, y = ctx.t(node.inputs[0]), ctx.t(node.outputs[0])
        if x.dtype == "int8":
            ctx.kernel("lut.h")
            table = requantize_table_s8(x.scale, x.zero_point, y.scale, y.zero_point)
            ctx.call(
                "mt_lut_s8",
                ctx.ptr(node.inputs[0]),
                ctx.ptr(node.outputs[0]),
                x.size,
                ctx.const(np.asarray(table, np.int8), "requantize_table"),
            )
            return
        ctx.kernel("quantize.h")
        ctx.call(
            "mt_quantize_f32_s8",
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            x.size,
            c_float(y.scale),
            y.zero_point,
        )


@register
class Dequantize(OpSpec):
    kind = "DEQUANTIZE"
    tflite_ops = ("DEQUANTIZE",)

    def check(self, node, graph, err):
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.dtype != "int8" or y.dtype != "float32":
            raise err(f"{x.dtype} -> {y.dtype} is not supported (int8 -> float32)")
        _check_per_tensor(x, err)

    def fold(self, node, graph):
        import numpy as np

        x = graph.t(node.inputs[0])
        q = np.asarray(x.data, np.int64) - x.zero_point
        return [(np.float64(np.float32(x.scale)) * q).astype(np.float32)]

    def lower(self, node, ctx):
        x = ctx.t(node.inputs[0])
        ctx.kernel("quantize.h")
        ctx.call(
            "mt_dequantize_s8_f32",
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            x.size,
            c_float(x.scale),
            x.zero_point,
        )
