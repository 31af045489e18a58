"""ADD, SUB, MUL: int8 with TFLite's reference integer semantics, and float32, broadcasting.

int8 ADD/SUB (TFLite's Prepare): both inputs are shifted left by 20 bits and rescaled to
twice the larger input scale with their own multipliers, summed, and rescaled to the
output. MUL: one multiplier
s1 * s2 / s_out. The fused activation becomes the output clamp.
"""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float, quantize_multiplier
from . import OpSpec, register
from ._common import require_dtypes, require_quant

_OPCODE = {"ADD": 0, "SUB": 1, "MUL": 2}


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of `shape` along the 4-D padded `out_shape` (0 where broadcast)."""
    padded = [1] * (4 - len(shape)) + [int(d) for d in shape]
    strides = [0] * 4
    step = 1
    for i in range(3, -1, -1):
        strides[i] = 0 if padded[i] == 1 and out_shape[i] != 1 else step
        step *= padded[i]
    return strides


def _pad4(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple([1] * (4 - len(shape)) + [int(d) for d in shape])


def add_sub_params(op: str, s1: float, s2: float, s_out: float) -> tuple[int, ...]:
    """(m1, sh1, m2, sh2, m_out, sh_out) as TFLite Micro's ADD / SUB Prepare: the ratios
    are formed in double from the float32 scales. (Some TFLite Micro sources form SUB's
    ratios in float32; the interpreter we are checked against uses double for both, and
    the SUB tests fail with float32 intermediates, so double it is.)"""
    import numpy as np

    left_shift = 20
    twice = 2.0 * max(float(np.float32(s1)), float(np.float32(s2)))
    r1 = float(np.float32(s1)) / twice
    r2 = float(np.float32(s2)) / twice
    ro = twice / ((1 << left_shift) * float(np.float32(s_out)))
    m1, sh1 = quantize_multiplier(r1)
    m2, sh2 = quantize_multiplier(r2)
    mo, sho = quantize_multiplier(ro)
    return m1, sh1, m2, sh2, mo, sho


@register
class _Binary(OpSpec):
    kind = "ADD"
    tflite_ops = ("ADD",)
    fuses_activation = True

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        return {"activation": ctx.activation()}

    def inplace(self, node, graph) -> bool:
        """The output may overwrite input 0 when that input is not broadcast (element n of
        the output only depends on element n of input 0, read first)."""
        a, out = graph.t(node.inputs[0]), graph.t(node.outputs[0])
        return a.size == out.size and a.nbytes == out.nbytes

    def check(self, node, graph, err):
        import numpy as np

        if len(node.inputs) != 2 or any(i is None for i in node.inputs):
            raise err("expects exactly two inputs")
        dtype = require_dtypes(node, graph, err, ("int8", "float32"))
        a, b, out = (graph.t(n) for n in (*node.inputs, node.outputs[0]))
        if b.dtype != dtype:
            raise err(f"input dtypes differ ({a.dtype}, {b.dtype})")
        if max(len(a.shape), len(b.shape), len(out.shape)) > 4:
            raise err("tensors of more than 4 dimensions are not supported")
        try:
            bshape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise err(f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
        if tuple(bshape) != tuple(out.shape) and int(np.prod(bshape)) != out.size:
            raise err(f"output shape {list(out.shape)} is not the broadcast shape {list(bshape)}")
        if dtype == "int8":
            for t in (a, b, out):
                require_quant(t, err)

    def fold(self, node, graph):
        import numpy as np

        a, b = (graph.t(n) for n in node.inputs)
        if a.dtype != "float32" or node.attrs.get("activation"):
            return None
        x, y = np.asarray(a.data, np.float32), np.asarray(b.data, np.float32)
        r = {"ADD": x + y, "SUB": x - y, "MUL": x * y}[node.kind]
        return [r.reshape(graph.t(node.outputs[0]).shape)]

    def lower(self, node, ctx):
        import numpy as np

        a, b, out = (ctx.t(n) for n in (*node.inputs, node.outputs[0]))
        oshape = _pad4(tuple(np.broadcast_shapes(a.shape, b.shape)))
        sa = broadcast_strides(a.shape, oshape)
        sb = broadcast_strides(b.shape, oshape)
        lo, hi = activation_range(node.attrs.get("activation"), out)
        op = _OPCODE[node.kind]
        ctx.kernel("binary.h")
        dims = [*oshape, *sa, *sb]
        pa, pb, po = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
        if out.dtype == "float32":
            ctx.call("mt_binary_f32", op, pa, pb, po, c_float(lo), c_float(hi), *dims)
            return
        if node.kind == "MUL":
            real = float(np.float32(a.scale)) * float(np.float32(b.scale)) / float(np.float32(out.scale))
            mo, sho = quantize_multiplier(real)
            q = [-a.zero_point, -b.zero_point, 0, 0, 0, 0, 0, mo, sho, out.zero_point, lo, hi]
        else:
            m1, sh1, m2, sh2, mo, sho = add_sub_params(node.kind, a.scale, b.scale, out.scale)
            q = [-a.zero_point, -b.zero_point, 20, m1, sh1, m2, sh2, mo, sho, out.zero_point, lo, hi]
        init = ", ".join(str(int(v)) for v in q)
        ctx.emit("{")
        ctx.emit(f"  static const mt_bin_q_t q = {{{init}}};")
        ctx.emit(f"  mt_binary_s8({op}, {pa}, {pb}, {po}, &q, {', '.join(str(d) for d in dims)});")
        ctx.emit("}")


@register
class _Sub(_Binary):
    kind = "SUB"
    tflite_ops = ("SUB",)


@register
class _Mul(_Binary):
    kind = "MUL"
    tflite_ops = ("MUL",)
