"""RESHAPE: no code; the output is an alias of the input's storage (memory.py)."""

from __future__ import annotations

from typing import Any

from . import OpSpec, register


@register
class Reshape(OpSpec):
    kind = "RESHAPE"
    tflite_ops = ("RESHAPE",)
    alias = True

    def from_tflite(self, ctx: Any) -> None:
        # the optional second input (the new shape) is implied by the output tensor's shape
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs, {})

    def check(self, node, graph, err):
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.dtype != y.dtype:
            raise err(f"input dtype {x.dtype} and output dtype {y.dtype} differ")
        if x.size != y.size:
            raise err(f"cannot reshape {list(x.shape)} ({x.size} elements) to {list(y.shape)}")
        if (
            x.quant is not None
            and y.quant is not None
            and (x.quant.scale != y.quant.scale or x.quant.zero_point != y.quant.zero_point)
        ):
            raise err("input and output quantisation differ")

    def fold(self, node, graph):
        return [graph.t(node.inputs[0]).data.reshape(graph.t(node.outputs[0]).shape)]
