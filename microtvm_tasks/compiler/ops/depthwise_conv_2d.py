"""DEPTHWISE_CONV_2D: NHWC, filter [1, kh, kw, in_c * depth_multiplier]; int8 (per-channel,
TFLite reference integer semantics) and float32; stride, dilation, SAME/VALID."""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float
from . import OpSpec, register
from ._common import window_attrs
from .conv_2d import check_conv, conv_geometry, int8_params, kernel_geometry_args


@register
class DepthwiseConv2D(OpSpec):
    kind = "DEPTHWISE_CONV_2D"
    tflite_ops = ("DEPTHWISE_CONV_2D",)
    fuses_activation = True

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        attrs = window_attrs(ctx)
        attrs["depth_multiplier"] = int(ctx.options.DepthMultiplier())
        return attrs

    def check(self, node, graph, err):
        check_conv(node, graph, err, depthwise=True)
        if int(graph.t(node.inputs[1]).shape[0]) != 1:
            raise err(f"filter shape {list(graph.t(node.inputs[1]).shape)} must start with 1")

    def inplace(self, node, graph):
        """int8, stride 1, no dilation, depth multiplier 1, output the input's shape, at most
        kh - 1 rows of padding on top: the kernel writes each output row over the input row
        it replaces and keeps that row and the pad_top rows above it, which later outputs
        still read, in a ring buffer (scratch)."""
        if graph.t(node.inputs[0]).dtype != "int8":
            return False
        g = conv_geometry(node, graph, lambda m: ValueError(m), depthwise=True)
        return (
            (g["sh"], g["sw"], g["dh"], g["dw"]) == (1, 1, 1, 1)
            and g["oc"] == g["ic"]
            and (g["oh"], g["ow"]) == (g["ih"], g["iw"])
            and g["ph"] <= g["kh"] - 1
        )

    def scratch_bytes(self, node, graph):
        if not node.attrs.get("_inplace"):
            return 0
        g = conv_geometry(node, graph, lambda m: ValueError(m), depthwise=True)
        return (g["ph"] + 1) * g["iw"] * g["ic"]

    def lower(self, node, ctx):
        import numpy as np

        g = conv_geometry(node, ctx.graph, ctx.error, depthwise=True)
        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        dm = g["oc"] // g["ic"]  # the filter shape decides (older files store a stale attribute)
        lo, hi = activation_range(node.attrs.get("activation"), out)
        geo = kernel_geometry_args(g, dm)
        ctx.kernel("depthwise_conv_2d.h")
        if x.dtype == "int8":
            bias, mult, shift, pc, rmul = int8_params(node, ctx, (0, 1, 2), g["oc"])
            ctx.call(
                "mt_dwconv_s8",
                ctx.ptr(node.inputs[0]),
                ctx.const(np.asarray(w.data, np.int8), "filter"),
                bias,
                mult,
                shift,
                pc,
                rmul,
                ctx.ptr(node.outputs[0]),
                ctx.scratch_ptr("int8_t") if node.attrs.get("_inplace") else "(int8_t*)0",
                *geo,
                x.zero_point,
                out.zero_point,
                lo,
                hi,
            )
        else:
            b = node.inputs[2] if len(node.inputs) > 2 else None
            bias_c = ctx.const(np.asarray(ctx.t(b).data, np.float32), "bias") if b else "(const float*)0"
            ctx.call(
                "mt_dwconv_f32",
                ctx.ptr(node.inputs[0]),
                ctx.const(np.asarray(w.data, np.float32), "filter"),
                bias_c,
                ctx.ptr(node.outputs[0]),
                *geo,
                c_float(lo),
                c_float(hi),
            )
