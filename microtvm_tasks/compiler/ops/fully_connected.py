"""FULLY_CONNECTED: int8 with TFLite's reference integer semantics, and float32.

int8 has three kernel variants (every one exact on every target; only speed differs):
- "generic": kernels/fully_connected.h, four rows at a time through dot_s8.h (SSE2 on x86).
- "dsp_pairs": kernels/fc_s8_dsp.h, row pairs packed into one weight word (three DSP
  instructions per four multiply-adds), the int8 input sign-extended in the loop.
- "dsp_pairs_x16": the same with the input first widened to int16 into arena scratch
  (2 bytes per input), one LDRD per four inputs instead of LDR + two SXTB16; it pays
  where a layer has many 4-row blocks to share the widening, and costs scratch.
"""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float, conv_multipliers, sse2_rmul
from . import OpSpec, register
from ._common import require_const, require_dtypes, require_quant, require_symmetric

GENERIC, PAIRS, PAIRS_X16 = "generic", "dsp_pairs", "dsp_pairs_x16"
# dsp_pairs_x16 is the DSP default only where its scratch (2 bytes per input) stays small
# and there are at least three 4-row blocks to share the widening (it costs about as much
# per input as the LDR + two SXTB16 it saves per block)
_X16_MAX_SCRATCH = 512
_X16_MIN_OUT = 12


def _wrap_i32(v: Any) -> Any:
    """int64 values modulo 2^32 as int32 (the kernel's accumulators wrap the same way)."""
    import numpy as np

    return (((np.asarray(v, np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)).astype(np.int32)


def pack_fc_pairs(weights: Any, bias: Any) -> tuple[Any, Any, Any]:
    """(wp uint32, wr int8, bp int32): the weight and bias tables of kernels/fc_s8_dsp.h.

    Rows a, b = a + 1 share words whose 16-bit lanes are 256 * w[b][i] + (w[a][i] + 128),
    two inputs per word in SXTB16 lane order ((4k, 4k+2), then (4k+1, 4k+3)); per 4-row
    block the two pairs' words for one k are consecutive (one LDM in the kernel). wr holds
    what does not pack (the last in_dim % 4 weights of each packed row, and a last odd row
    whole), so the tables are no larger than the weights. bp: (bias[a] + 256 * bias[b],
    bias[b]) per pair, modulo 2^32, then the odd row's bias.
    """
    import numpy as np

    w = np.asarray(weights, np.int64)
    b = np.asarray(bias, np.int64)
    out_dim, in_dim = w.shape
    k4 = in_dim // 4
    o4, o2 = out_dim & ~3, out_dim & ~1

    def pair_words(a: int) -> Any:
        lane = (((w[a, : 4 * k4] + 128) & 0xFF) | ((w[a + 1, : 4 * k4] & 0xFF) << 8)).reshape(k4, 4)
        return np.stack([lane[:, 0] | (lane[:, 2] << 16), lane[:, 1] | (lane[:, 3] << 16)], axis=1)

    words: list[Any] = []
    rest: list[Any] = []
    bp = np.zeros(out_dim, np.int64)
    for o in range(0, o2, 4):
        pairs = [o] if o + 4 > o4 else [o, o + 2]
        words.append(np.concatenate([pair_words(a) for a in pairs], axis=1).reshape(-1))
        for a in pairs:
            rest += [w[a, 4 * k4 :], w[a + 1, 4 * k4 :]]
            bp[a], bp[a + 1] = b[a] + 256 * b[a + 1], b[a + 1]
    if o2 < out_dim:
        rest.append(w[o2])
        bp[o2] = b[o2]
    wp = np.concatenate(words).astype(np.uint32) if words else np.zeros(0, np.uint32)
    wr = np.concatenate(rest).astype(np.int8) if rest else np.zeros(0, np.int8)
    return wp, wr, _wrap_i32(bp)


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

    def variants(self, node, graph, target):
        """int8: the DSP variants first on a DSP target (x16 where it pays and its scratch is
        small), else the dot_s8 kernel first; float32 has one kernel."""
        if graph.t(node.inputs[0]).dtype != "int8":
            return ()
        w = graph.t(node.inputs[1])
        out_dim, in_dim = int(w.shape[0]), int(w.shape[1])
        if not getattr(target, "dsp", False):
            return (GENERIC, PAIRS, PAIRS_X16)
        if out_dim >= _X16_MIN_OUT and 8 * (in_dim // 4) <= _X16_MAX_SCRATCH:
            return (PAIRS_X16, PAIRS, GENERIC)
        return (PAIRS, PAIRS_X16, GENERIC)

    def scratch_bytes(self, node, graph):
        if node.attrs.get("_variant") != PAIRS_X16:
            return 0
        return 8 * (int(graph.t(node.inputs[1]).shape[1]) // 4)

    def lower(self, node, ctx):
        import numpy as np

        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        b = ctx.t(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        out_dim, in_dim = int(w.shape[0]), int(w.shape[1])
        batches = x.size // in_dim
        lo, hi = activation_range(node.attrs.get("activation"), out)
        if x.dtype == "int8":
            wd = np.asarray(w.data, dtype=np.int64)
            bias = np.zeros(out_dim, np.int64) if b is None else np.asarray(b.data, np.int64)
            bias = bias - x.zero_point * wd.sum(axis=1)
            mults, shifts = conv_multipliers(x, w, out, out_dim)
            per_channel = len(set(zip(mults, shifts, strict=False))) > 1
            if not per_channel:
                mults, shifts = mults[:1], shifts[:1]
            variant = node.attrs.get("_variant") or GENERIC
            if variant in (PAIRS, PAIRS_X16):
                self._lower_pairs(node, ctx, bias, mults, shifts, per_channel, lo, hi, variant == PAIRS_X16)
                return
            ctx.kernel("fully_connected.h")
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
            ctx.kernel("fully_connected.h")
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

    def _lower_pairs(self, node, ctx, bias, mults, shifts, per_channel, lo, hi, expand):
        """The call of kernels/fc_s8_dsp.h (tables from pack_fc_pairs)."""
        import numpy as np

        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        out_dim, in_dim = int(w.shape[0]), int(w.shape[1])
        wp, wr, bp = pack_fc_pairs(w.data, bias)
        ctx.kernel("fc_s8_dsp.h")
        scratch = expand and self.scratch_bytes(node, ctx.graph) > 0
        # the one-SMLAL requantisation (fc_s8_dsp.h mt_fc_out) needs right shifts 2..23
        # and non-negative multipliers in every channel; else mt_mbqm
        fast = all(-23 <= s <= -2 for s in shifts) and min(mults) >= 0
        zp = int(out.zero_point)
        rnd = [(1 << (-s - 2)) + zp * (1 << (-s - 1)) for s in shifts] if fast else [0] * len(shifts)
        i32 = np.int32
        ctx.call(
            "mt_fc_s8_pairs",
            ctx.ptr(node.inputs[0]),
            ctx.const(wp, "weights (row pairs)"),
            ctx.const(wr, "weights (rest)"),
            ctx.const(bp, "bias (row pairs)"),
            int(per_channel),
            ctx.const(np.asarray(mults, i32), "mult") if per_channel else "(const int32_t*)0",
            ctx.const(np.asarray(shifts, np.int8), "shift") if per_channel else "(const int8_t*)0",
            ctx.const(np.asarray(rnd, i32), "rounding") if per_channel else "(const int32_t*)0",
            int(mults[0]),
            int(shifts[0]),
            int(rnd[0]),
            int(fast),
            ctx.ptr(node.outputs[0]),
            x.size // in_dim,
            in_dim,
            out_dim,
            out.zero_point,
            lo,
            hi,
            int(scratch),
            ctx.scratch_ptr("uint32_t") if scratch else "(uint32_t*)0",
        )
