"""AVERAGE_POOL_2D: NHWC; int8 (input and output share quantisation, TFLite reference
rounding) and float32; SAME/VALID or explicit (top, left, bottom, right) padding, stride,
fused activation.

attrs["count_include_pad"] (from ONNX AveragePool) makes padded positions count in the
divisor as zeros; TFLite (and ONNX's default) divide by the in-bounds count only."""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float
from . import OpSpec, register
from ._common import nhwc, require_dtypes, require_quant, window_padding


def pool_geometry(node, graph, err) -> list[int]:
    """[n, ih, iw, c, oh, ow, kh, kw, sh, sw, pad_top, pad_left, divisor] (the kernel's
    arguments); divisor 0 = count the window's in-bounds elements (TFLite, ONNX
    count_include_pad=0), else every window divides by kh * kw (ONNX count_include_pad=1:
    the output size keeps every window inside the padded input)."""
    n, ih, iw, c = nhwc(graph.t(node.inputs[0]).shape, err, "input")
    on, oh, ow, oc = nhwc(graph.t(node.outputs[0]).shape, err, "output")
    kh, kw = node.attrs["filter"]
    sh, sw = node.attrs.get("stride", (1, 1))
    if min(kh, kw, sh, sw) < 1:
        raise err("filter size and stride must be >= 1")
    (eh, ew), pads = window_padding(node.attrs, (ih, iw), (kh, kw), (sh, sw), (1, 1), err)
    top, left, bottom, right = pads
    if (on, oh, ow, oc) != (n, eh, ew, c):
        raise err(f"output shape {[on, oh, ow, oc]} does not match the computed {[n, eh, ew, c]}")
    if max(top, bottom) >= kh or max(left, right) >= kw:
        raise err(f"padding {[top, left, bottom, right]} as large as the filter {[kh, kw]} is not supported")
    include = bool(node.attrs.get("count_include_pad")) and any((top, left, bottom, right))
    return [n, ih, iw, c, oh, ow, kh, kw, sh, sw, top, left, kh * kw if include else 0]


def pool_attrs(ctx: Any) -> dict[str, Any]:
    o = ctx.options
    return {
        "padding": ctx.padding(),
        "stride": (int(o.StrideH()), int(o.StrideW())),
        "filter": (int(o.FilterHeight()), int(o.FilterWidth())),
        "activation": ctx.activation(),
    }


@register
class AveragePool2D(OpSpec):
    kind = "AVERAGE_POOL_2D"
    tflite_ops = ("AVERAGE_POOL_2D",)
    fuses_activation = True

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        return pool_attrs(ctx)

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        if dtype == "int8":
            x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
            require_quant(x, err)
            require_quant(y, err)
            if (x.scale, x.zero_point) != (y.scale, y.zero_point):
                raise err("input and output quantisation differ (TFLite requires them equal)")
            if node.attrs.get("count_include_pad"):
                raise err("count_include_pad is only supported for float32")
        pool_geometry(node, graph, err)

    def lower(self, node, ctx):
        geo = pool_geometry(node, ctx.graph, ctx.error)
        out = ctx.t(node.outputs[0])
        lo, hi = activation_range(node.attrs.get("activation"), out)
        ctx.kernel("average_pool_2d.h")
        if out.dtype == "int8":
            ctx.call("mt_avgpool_s8", ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), *geo, lo, hi)
        else:
            ctx.call(
                "mt_avgpool_f32",
                ctx.ptr(node.inputs[0]),
                ctx.ptr(node.outputs[0]),
                *geo,
                c_float(lo),
                c_float(hi),
            )
