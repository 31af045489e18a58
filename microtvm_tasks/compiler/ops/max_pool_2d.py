"""MAX_POOL_2D over NHWC, int8 and float32 (ONNX MaxPool maps here too).

Attributes (as AVERAGE_POOL_2D): filter (h, w), stride (h, w), padding "SAME" / "VALID"
(TFLite's: the odd extra pixel goes to the bottom / right) and the fused activation; the
ONNX frontend may instead give padding "EXPLICIT" with pads (top, left, bottom, right),
which ONNX allows and TFLite cannot express. Padded positions never take part in the max.
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
        return {
            "filter": (int(o.FilterHeight()), int(o.FilterWidth())),
            "stride": (int(o.StrideH()), int(o.StrideW())),
            "padding": ctx.padding(),
            "activation": ctx.activation(),
        }

    @staticmethod
    def geometry(node, x, err) -> tuple[int, int, int, int]:
        """(out_h, out_w, pad_top, pad_left) from the attributes."""
        fh, fw = node.attrs["filter"]
        sh, sw = node.attrs.get("stride", (1, 1))
        padding = node.attrs.get("padding", "VALID")
        if min(fh, fw, sh, sw) < 1:
            raise err("filter size and stride must be >= 1")
        if padding == "EXPLICIT":
            top, left, bottom, right = node.attrs["pads"]
            oh = (x.shape[1] + top + bottom - fh) // sh + 1
            ow = (x.shape[2] + left + right - fw) // sw + 1
            return oh, ow, top, left
        if padding not in ("SAME", "VALID"):
            raise err(f"padding {padding} is not supported")
        oh, top, _ = tflite_padding(padding, x.shape[1], fh, sh)
        ow, left, _ = tflite_padding(padding, x.shape[2], fw, sw)
        return oh, ow, top, left

    def from_onnx(self, ctx):
        ctx.pool(self.kind)

    def inplace(self, node, graph) -> bool:
        """Without padding every window of a later output lies at or after the current
        output position (NHWC, stride >= 1), and the kernel reads a channel block's window
        before writing it, so the output may overwrite the input."""
        x = graph.t(node.inputs[0])
        _, _, top, left = self.geometry(node, x, ValueError)
        return top == 0 and left == 0

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
        oh, ow, top, left = self.geometry(node, x, err)
        if (y.shape[0], y.shape[1], y.shape[2], y.shape[3]) != (x.shape[0], oh, ow, x.shape[3]):
            raise err(
                f"output shape {list(y.shape)} does not match the computed {[x.shape[0], oh, ow, x.shape[3]]}"
            )
        fh, fw = node.attrs["filter"]
        if fh <= top or fw <= left:
            raise err("padding as large as the filter is not supported")

    def lower(self, node, ctx):
        x, y = ctx.t(node.inputs[0]), ctx.t(node.outputs[0])
        fh, fw = node.attrs["filter"]
        sh, sw = node.attrs.get("stride", (1, 1))
        _, _, top, left = self.geometry(node, x, ctx.error)
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
