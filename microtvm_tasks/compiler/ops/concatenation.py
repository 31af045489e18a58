"""CONCATENATION along any axis (int8 with equal quantisation everywhere, float32).

A concatenation is a sequence of strided copies: one kernel call per input (constants
included). TFLite Micro requires int8 inputs and output to share one quantisation, so no
rescale is needed; other int8 models are rejected rather than silently mis-scaled.
"""

from __future__ import annotations

from typing import Any

from . import OpSpec, register


@register
class Concatenation(OpSpec):
    kind = "CONCATENATION"
    tflite_ops = ("CONCATENATION",)
    onnx_ops = ("Concat",)
    fuses_activation = False

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        if ctx.activation() is not None:
            raise ctx.error("a fused activation on CONCATENATION is not supported")
        return {"axis": int(ctx.options.Axis())}

    def check(self, node, graph, err):
        y = graph.t(node.outputs[0])
        rank = len(y.shape)
        axis = node.attrs["axis"] % rank if rank else 0
        if y.dtype not in ("int8", "float32"):
            raise err(f"dtype {y.dtype} is not supported (int8, float32)")
        total = 0
        for name in node.inputs:
            if name is None:
                raise err("missing input")
            x = graph.t(name)
            if x.dtype != y.dtype or len(x.shape) != rank:
                raise err(f"input {name!r} ({x.dtype}{list(x.shape)}) does not match the output")
            if any(x.shape[i] != y.shape[i] for i in range(rank) if i != axis):
                raise err(f"input {name!r} shape {list(x.shape)} differs outside axis {axis}")
            total += x.shape[axis]
            if y.dtype == "int8":
                if x.quant is None or y.quant is None or x.zero_point != y.zero_point or x.scale != y.scale:
                    raise err("int8 inputs must share the output's quantisation (as TFLite Micro requires)")
        if total != y.shape[axis]:
            raise err(f"inputs add up to {total} along axis {axis}, output has {y.shape[axis]}")

    def fold(self, node, graph):
        import numpy as np

        y = graph.t(node.outputs[0])
        return [
            np.concatenate(
                [np.asarray(graph.t(n).data) for n in node.inputs], axis=node.attrs["axis"] % len(y.shape)
            )
        ]

    def lower(self, node, ctx):
        import math

        y = ctx.t(node.outputs[0])
        axis = node.attrs["axis"] % len(y.shape)
        item = y.nbytes // max(y.size, 1)
        outer = math.prod(y.shape[:axis])
        inner = math.prod(y.shape[axis + 1 :]) * item
        row = y.shape[axis] * inner
        ctx.kernel("concatenation.h")
        offset = 0
        for name in node.inputs:
            chunk = ctx.t(name).shape[axis] * inner
            ctx.call("mt_concat_part", ctx.ptr(name), ctx.ptr(node.outputs[0]), outer, chunk, row, offset)
            offset += chunk
