"""SQUEEZE: drops size-1 dimensions. The data does not move, so it is an alias: no code,
the output shares the input's storage (like RESHAPE)."""

from __future__ import annotations

from . import OpSpec, register


@register
class Squeeze(OpSpec):
    kind = "SQUEEZE"
    tflite_ops = ("SQUEEZE",)
    alias = True

    def check(self, node, graph, err):
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        if x.size != y.size or x.dtype != y.dtype:
            raise err(f"output {list(y.shape)} {y.dtype} is not a view of input {list(x.shape)} {x.dtype}")

    def fold(self, node, graph):
        import numpy as np

        return [np.asarray(graph.t(node.inputs[0]).data).reshape(graph.t(node.outputs[0]).shape)]
