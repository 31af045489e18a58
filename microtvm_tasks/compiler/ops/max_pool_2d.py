"""MAX_POOL_2D over NHWC, int8 and float32 (ONNX MaxPool maps here too).

Attributes: filter (h, w), stride (h, w), pads (top, left, bottom, right) and the fused
activation. TFLite's SAME / VALID padding is resolved to explicit pads when the node is
created, the way TFLite's ComputePaddingHeightWidth does (the extra odd pixel goes to the
bottom / right); ONNX gives explicit pads. Padded positions never take part in the max.
"""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float
from . import OpSpec, register
from ._common import require_dtypes, require_quant


def tflite_padding(
    padding: str, in_size: int, filter_size: int, stride: int, dilation: int = 1
) -> tuple[int, int, int]:
    """(output size, pad before, pad after) for TFLite's SAME / VALID padding."""
    eff = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size - eff + stride) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2, total - total // 2


@register
class MaxPool2D(OpSpec):
    kind = "MAX_POOL_2D"
    tflite_ops = ("MAX_POOL_2D",)
    onnx_ops = ("MaxPool",)
    fuses_activation = True

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        o = ctx.options
        x = ctx.t(ctx.inputs[0])
        fh, fw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
        pad = ctx.padding()
        _, top, bottom = tflite_padding(pad, x.shape[1], fh, sh)
        _, left, right = tflite_padding(pad, x.shape[2], fw, sw)
        return {
            "filter": (fh, fw),
            "stride": (sh, sw),
            "pads": (top, left, bottom, right),
            "padding": pad,
            "activation": ctx.activation(),
        }

    def from_onnx(self, ctx):
        ctx.pool(self.kind)

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise err(f"expects 4-D NHWC tensors, got {list(x.shape)} -> {list(y.shape)}")
        if dtype == "int8":
            require_quant(x, err)
            require_quant(y, err)
            if abs(x.scale - y.scale) > 1e-6 or x.zero_point != y.zero_point:
                raise err("input and output quantisation must be equal (as TFLite requires)")
        fh, fw = node.attrs["filter"]
        top, left, _, _ = node.attrs["pads"]
        if fh <= top or fw <= left:
            raise err("padding as large as the filter is not supported")

    def lower(self, node, ctx):
        x, y = ctx.t(node.inputs[0]), ctx.t(node.outputs[0])
        fh, fw = node.attrs["filter"]
        sh, sw = node.attrs["stride"]
        top, left, _, _ = node.attrs["pads"]
        lo, hi = activation_range(node.attrs.get("activation"), y)
        ctx.kernel("max_pool_2d.h")
        args = [
            ctx.ptr(node.inputs[0]),
            ctx.ptr(node.outputs[0]),
            x.shape[0],
            x.shape[1],
            x.shape[2],
            x.shape[3],
            y.shape[1],
            y.shape[2],
            fh,
            fw,
            sh,
            sw,
            top,
            left,
        ]
        if x.dtype == "int8":
            ctx.call("mt_max_pool_s8", *args, lo, hi)
        else:
            ctx.call("mt_max_pool_f32", *args, c_float(lo), c_float(hi))
