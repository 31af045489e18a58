"""PAD (and PADV2 with a constant value) of up to 4-D tensors, int8 and float32.

The paddings are a constant [rank, 2] int32 tensor. int8 pads with the output zero
point (TFLite Micro requires equal input and output quantisation), float32 with 0 or
the PADV2 constant.
"""

from __future__ import annotations

from typing import Any

from ..quant import c_float
from . import OpSpec, register
from ._common import require_dtypes, require_quant


@register
class Pad(OpSpec):
    kind = "PAD"
    tflite_ops = ("PAD", "PADV2")

    def from_tflite(self, ctx: Any) -> None:
        import numpy as np

        if len(ctx.inputs) < 2 or ctx.inputs[1] is None or not ctx.t(ctx.inputs[1]).is_const:
            raise ctx.error("the paddings must be a constant tensor")
        pads = np.asarray(ctx.t(ctx.inputs[1]).data, np.int64).reshape(-1, 2)
        attrs: dict[str, Any] = {"pads": [(int(a), int(b)) for a, b in pads]}
        if len(ctx.inputs) > 2 and ctx.inputs[2] is not None:
            v = ctx.t(ctx.inputs[2])
            if not v.is_const:
                raise ctx.error("the pad value must be a constant tensor")
            attrs["value"] = float(np.asarray(v.data).reshape(-1)[0])
            if v.dtype == "int8":
                attrs["value_q"] = int(np.asarray(v.data).reshape(-1)[0])
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs, attrs)

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        pads = node.attrs["pads"]
        if len(x.shape) > 4 or len(pads) != len(x.shape):
            raise err(f"paddings for {len(pads)} dimensions with an input of shape {list(x.shape)}")
        if any(a < 0 or b < 0 for a, b in pads):
            raise err("negative paddings are not supported")
        want = [d + a + b for d, (a, b) in zip(x.shape, pads, strict=True)]
        if list(y.shape) != want:
            raise err(f"output shape {list(y.shape)} should be {want}")
        if dtype == "int8":
            require_quant(x, err)
            require_quant(y, err)
            if x.zero_point != y.zero_point or abs(x.scale - y.scale) > 1e-6:
                raise err("input and output quantisation must be equal (as TFLite Micro requires)")
            if "value_q" in node.attrs and node.attrs["value_q"] != y.zero_point:
                raise err("a pad value other than the zero point is not supported for int8")

    def lower(self, node, ctx):
        x, y = ctx.t(node.inputs[0]), ctx.t(node.outputs[0])
        k = 4 - len(x.shape)
        dims = [1] * k + list(x.shape)
        odims = [1] * k + list(y.shape)
        before = [0] * k + [a for a, _ in node.attrs["pads"]]
        ctx.kernel("pad.h")
        args = [ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), *dims, *odims, *before]
        if x.dtype == "int8":
            ctx.call("mt_pad_s8", *args, y.zero_point)
        else:
            ctx.call("mt_pad_f32", *args, c_float(node.attrs.get("value", 0.0)))
