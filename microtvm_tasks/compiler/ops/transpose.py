"""TRANSPOSE with a constant permutation (up to 4-D; int8, uint8, int32, float32).

The ONNX frontend uses it to move between ONNX's NCHW and the IR's NHWC at a model's
inputs and outputs; TFLite's TRANSPOSE with a constant permutation maps here too. A
permutation that only moves size-1 dimensions does not move data: the frontends emit an
alias (RESHAPE) for those instead. Constant inputs are folded at compile time.
"""

from __future__ import annotations

from typing import Any

from . import OpSpec, register


def is_trivial_permutation(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True if permuting `shape` by `perm` keeps the data order (only size-1 dims move)."""
    moved = [d for d in perm if shape[d] != 1]
    return moved == sorted(moved)


@register
class Transpose(OpSpec):
    kind = "TRANSPOSE"
    tflite_ops = ("TRANSPOSE",)

    def from_tflite(self, ctx: Any) -> None:
        import numpy as np

        if len(ctx.inputs) < 2 or ctx.inputs[1] is None or not ctx.t(ctx.inputs[1]).is_const:
            raise ctx.error("the permutation must be a constant tensor")
        perm = tuple(int(p) for p in np.asarray(ctx.t(ctx.inputs[1]).data).reshape(-1))
        ctx.add_node(self.kind, ctx.inputs[:1], ctx.outputs, {"perm": perm})

    def check(self, node, graph, err):
        x, y = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        perm = tuple(node.attrs["perm"])
        if sorted(perm) != list(range(len(x.shape))):
            raise err(f"permutation {list(perm)} does not fit input shape {list(x.shape)}")
        if len(perm) > 4:
            raise err("more than 4 dimensions are not supported")
        if tuple(y.shape) != tuple(x.shape[p] for p in perm) or x.dtype != y.dtype:
            raise err(
                f"output {y.dtype}{list(y.shape)} is not input {x.dtype}{list(x.shape)} "
                f"permuted by {list(perm)}"
            )
        if x.dtype not in ("int8", "uint8", "int32", "float32"):
            raise err(f"dtype {x.dtype} is not supported")

    def fold(self, node, graph):
        import numpy as np

        return [np.transpose(np.asarray(graph.t(node.inputs[0]).data), node.attrs["perm"])]

    def lower(self, node, ctx):
        x = ctx.t(node.inputs[0])
        perm = list(node.attrs["perm"])
        rank = len(x.shape)
        strides = [1] * rank
        for i in range(rank - 2, -1, -1):
            strides[i] = strides[i + 1] * x.shape[i + 1]
        k = 4 - rank
        dims = [1] * k + [x.shape[p] for p in perm]
        st = [0] * k + [strides[p] for p in perm]
        ctx.kernel("transpose.h")
        fn = {
            "int8": "mt_transpose_8",
            "uint8": "mt_transpose_8",
            "int32": "mt_transpose_32",
            "float32": "mt_transpose_f32",
        }[x.dtype]
        src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        if x.dtype == "uint8":
            src, dst = f"(const int8_t*){src}", f"(int8_t*){dst}"
        ctx.call(fn, src, dst, *dims, *st)
