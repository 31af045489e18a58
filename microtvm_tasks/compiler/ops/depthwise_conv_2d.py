"""DEPTHWISE_CONV_2D: NHWC, filter [1, kh, kw, in_c * depth_multiplier]; int8 (per-channel,
TFLite reference integer semantics) and float32; stride, dilation, SAME/VALID.

int8 kernel variants (all bit-exact on every target; only speed differs):
- "generic": depthwise_conv_2d.h, channel blocks accumulated in memory (SSE2 on x86 hosts).
- "dsp_c4" (depth multiplier 1): depthwise_conv_2d_dsp.h, four channels per pass in
  registers with SXTB16 + SMLABB/SMLATT, a bounds-test-free interior.
- "dsp_c1" (one input channel, any multiplier, no horizontal dilation): the filter
  reordered so SMLAD multiplies two taps of one channel (micro_speech's 10x8 x8 layer).
The DSP variants requantise with SMMULR where the compiler proves it exact (fast_requant).
"""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float
from . import OpSpec, register
from ._common import window_attrs
from .conv_2d import check_conv, conv_geometry, int8_params, kernel_geometry_args

#: rows of the window the DSP kernels keep pointers to (depthwise_conv_2d_dsp.h MT_DW_MAX_KH)
_MAX_KH = 16


def dsp_variants(g: dict[str, int]) -> tuple[str, ...]:
    """The DSP kernels that fit this geometry, the faster first."""
    dm = g["oc"] // g["ic"]
    names = []
    if g["kh"] <= _MAX_KH and g["ic"] == 1 and g["dw"] == 1 and dm > 1:
        names.append("dsp_c1")
    if g["kh"] <= _MAX_KH and dm == 1:
        names.append("dsp_c4")
    return tuple(names)


def fast_requant(mults: list[int], shifts: list[int], bias: Any, w: Any, out_zp: int) -> Any:
    """The {multiplier, round + (out_zp << right), right} table of the DSP kernels' SMMULR
    requantisation, or None where it would not equal MultiplyByQuantizedMultiplier.

    With no left shift and right >= 1, SRDHM(acc, m) = (2 acc m + 2^31) >> 32 (SMMULR of
    2 acc) when 2 acc fits in int32, and RoundingDivideByPOT(hi, right) + out_zp =
    (hi + 2^(right-1) - (hi < 0) + (out_zp << right)) >> right. The accumulator's bound is
    known at compile time: |bias| + 255 * sum(|w|) (the kernels multiply x - input_zp, in
    -255..255, padding adding nothing); the sums must stay inside int32 with a margin."""
    import numpy as np

    wabs = np.abs(np.asarray(w, np.int64)).reshape(-1, np.asarray(w).shape[-1]).sum(axis=0)
    bound = np.abs(np.asarray(bias, np.int64)) + 255 * wabs
    rows = []
    n = len(mults)
    for c in range(n):
        m, s = int(mults[c]), int(shifts[c])
        right = -s
        if right < 1 or right > 30:
            return None
        c1 = (1 << (right - 1)) + (int(out_zp) << right)
        b = int(bound.max()) if n == 1 else int(bound[c])
        if 2 * b >= 1 << 31 or b + abs(c1) + 2 >= 1 << 31:
            return None
        rows.append((m, c1, right))
    return np.asarray(rows, np.int32).reshape(-1)


def reorder_c1(w: Any) -> Any:
    """The filter [1, kh, kw, dm] of a one-input-channel depthwise convolution in the order
    mt_dwconv_s8_c1 reads it (depthwise_conv_2d_dsp.h): the same bytes, permuted."""
    import numpy as np

    w = np.asarray(w, np.int8).reshape(w.shape[1], w.shape[2], w.shape[3])
    kh, kw, oc = w.shape
    groups, chunks = oc // 4, kw // 4
    out = []
    for gi in range(groups):
        c = 4 * gi
        for ky in range(kh):
            for j in range(chunks):
                for p in (0, 1):
                    t = 4 * j + p
                    for a in (c, c + 2):
                        out += [w[ky, t, a], w[ky, t, a + 1], w[ky, t + 2, a], w[ky, t + 2, a + 1]]
            for kx in range(4 * chunks, kw):
                out += [w[ky, kx, c + i] for i in range(4)]
    flat = np.asarray(out, np.int8)
    rest = np.ascontiguousarray(w[:, :, 4 * groups:]).reshape(-1)
    res = np.concatenate([flat, rest])
    assert res.size == w.size
    return res


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

    def variants(self, node, graph, target):
        """int8: "generic" and the DSP kernels that fit (all exact everywhere); on a target
        with the DSP extension the best-fitting DSP kernel first."""
        if graph.t(node.inputs[0]).dtype != "int8":
            return ()
        dsp = dsp_variants(conv_geometry(node, graph, lambda m: ValueError(m), depthwise=True))
        return (*dsp, "generic") if target.dsp else ("generic", *dsp)

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
        variant = ctx.variant or "generic"
        if x.dtype == "int8" and variant != "generic":
            self._lower_dsp(node, ctx, g, variant, geo, lo, hi)
            return
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

    def _lower_dsp(self, node, ctx, g, variant, geo, lo, hi) -> None:
        """A call of mt_dwconv_s8_c4 / _c1 with its constants (the fast requantisation table
        instead of multipliers and shifts where it is exact)."""
        import numpy as np

        from ..quant import conv_multipliers

        if variant not in dsp_variants(g):
            raise ctx.error(f"kernel variant {variant!r} does not fit this depthwise convolution")
        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        b = ctx.t(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        wdata = np.asarray(w.data, np.int8)
        # the DSP kernels subtract input_zp from every input (padding adds nothing): raw bias
        bias = np.zeros(g["oc"], np.int64) if b is None else np.asarray(b.data, np.int64).reshape(-1)
        mults, shifts = conv_multipliers(x, w, out, g["oc"])
        per_channel = len(set(zip(mults, shifts, strict=True))) > 1
        if not per_channel:
            mults, shifts = mults[:1], shifts[:1]
        rq = fast_requant(mults, shifts, bias, wdata, out.zero_point)
        if rq is None:
            mult_c = ctx.const(np.asarray(mults, np.int32), "mult")
            shift_c = ctx.const(np.asarray(shifts, np.int8), "shift")
            rq_c = "(const int32_t*)0"
        else:
            mult_c, shift_c = "(const int32_t*)0", "(const int8_t*)0"
            rq_c = ctx.const(rq, "requant")
        filt = reorder_c1(wdata) if variant == "dsp_c1" else wdata
        ctx.kernel("depthwise_conv_2d_dsp.h")
        ctx.call(
            "mt_dwconv_s8_c1" if variant == "dsp_c1" else "mt_dwconv_s8_c4",
            ctx.ptr(node.inputs[0]),
            ctx.const(filt, "filter"),
            ctx.const(bias.astype(np.int32), "bias"),
            mult_c,
            shift_c,
            int(per_channel),
            rq_c,
            ctx.ptr(node.outputs[0]),
            ctx.scratch_ptr("int8_t") if node.attrs.get("_inplace") else "(int8_t*)0",
            *geo,
            x.zero_point,
            out.zero_point,
            lo,
            hi,
        )
