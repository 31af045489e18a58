"""FULLY_CONNECTED: int8 with TFLite's reference integer semantics, and float32."""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float, conv_multipliers, sse2_rmul
from . import OpSpec, register
from ._common import require_const, require_dtypes, require_quant, require_symmetric


@register
class FullyConnected(OpSpec):
    kind = "FULLY_CONNECTED"
    tflite_ops = ("FULLY_CONNECTED",)
    fuses_activation = True

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        o = ctx.options
        if o is not None and o.WeightsFormat() != 0:
            raise ctx.error("shuffled weights format is not supported")
        return {"activation": ctx.activation()}

    def check(self, node, graph, err):
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        w = graph.t(node.inputs[1])
        require_const(w, err, "weights")
        if w.dtype != dtype:
            raise err(f"weights dtype {w.dtype} with input dtype {dtype} (hybrid) is not supported")
        if len(w.shape) != 2:
            raise err(f"weights must be 2-D, got shape {list(w.shape)}")
        x, out = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.size % w.shape[1] != 0 or out.size != (x.size // w.shape[1]) * w.shape[0]:
            raise err(
                f"shapes do not match: input {list(x.shape)}, weights {list(w.shape)}, "
                f"output {list(out.shape)}"
            )
        b = graph.t(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if b is not None:
            require_const(b, err, "bias")
            if b.dtype != ("int32" if dtype == "int8" else "float32"):
                raise err(f"bias dtype {b.dtype} is not supported with {dtype} input")
        if dtype == "int8":
            require_quant(x, err)
            require_quant(out, err)
            require_symmetric(w, err)
            if w.quant.per_channel and w.quant.axis != 0:  # type: ignore[union-attr]
                raise err(f"weights quantised along axis {w.quant.axis}, expected 0")  # type: ignore[union-attr]

    def lower(self, node, ctx):
        import numpy as np

        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        b = ctx.t(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        out_dim, in_dim = int(w.shape[0]), int(w.shape[1])
        batches = x.size // in_dim
        lo, hi = activation_range(node.attrs.get("activation"), out)
        ctx.kernel("fully_connected.h")
        if x.dtype == "int8":
            wd = np.asarray(w.data, dtype=np.int64)
            bias = np.zeros(out_dim, np.int64) if b is None else np.asarray(b.data, np.int64)
            bias = bias - x.zero_point * wd.sum(axis=1)
            mults, shifts = conv_multipliers(x, w, out, out_dim)
            per_channel = len(set(zip(mults, shifts, strict=False))) > 1
            if not per_channel:
                mults, shifts = mults[:1], shifts[:1]
            rmul = sse2_rmul(shifts)
            ctx.call(
                "mt_fc_s8",
                ctx.ptr(node.inputs[0]),
                ctx.const(np.asarray(w.data, np.int8), "weights"),
                ctx.const(bias.astype(np.int32), "bias"),
                ctx.const(np.asarray(mults, np.int32), "mult"),
                ctx.const(np.asarray(shifts, np.int8), "shift"),
                int(per_channel),
                "(const uint32_t*)0" if rmul is None else ctx.const(rmul, "sse2 rmul", sse2_only=True),
                ctx.ptr(node.outputs[0]),
                batches,
                in_dim,
                out_dim,
                out.zero_point,
                lo,
                hi,
            )
        else:
            wt = np.ascontiguousarray(np.asarray(w.data, np.float32).T)
            bias_c = "(const float*)0" if b is None else ctx.const(np.asarray(b.data, np.float32), "bias")
            ctx.call(
                "mt_fc_f32",
                ctx.ptr(node.inputs[0]),
                ctx.const(wt, "weights_t"),
                bias_c,
                ctx.ptr(node.outputs[0]),
                batches,
                in_dim,
                out_dim,
                c_float(lo),
                c_float(hi),
            )
