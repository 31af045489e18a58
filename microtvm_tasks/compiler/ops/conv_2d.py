"""CONV_2D: NHWC input, OHWI filter; int8 (per-channel weights, TFLite reference integer
semantics) and float32; stride, dilation, SAME/VALID or explicit (top, left, bottom, right)
padding (`_common.window_padding`), fused activation.

int8 kernel variants (OpSpec.variants; all bit-exact everywhere, only speed differs):
- "dot4" (kernels/conv_2d.h mt_conv_s8): an int8 patch per output pixel, dot products four
  output channels at a time, SSE2 requantisation on x86 hosts. The generic default.
- "im2col_s16" (kernels/conv_s8_dsp.h mt_conv_s8_s16): two output pixels sign-extended
  once into an int16 scratch, a 2-pixel x 2-channel SMLAD kernel over a filter reordered at
  compile time, and a one-SMLAL requantisation. The default where the target has the Arm
  DSP extension.
"""

from __future__ import annotations

from typing import Any

from ..quant import activation_range, c_float, conv_multipliers, sse2_rmul
from . import OpSpec, register
from ._common import (
    nhwc,
    require_const,
    require_dtypes,
    require_quant,
    require_symmetric,
    window_attrs,
    window_padding,
)


def conv_geometry(node, graph, err, depthwise: bool) -> dict[str, int]:
    """Shapes, strides and padding of a (depthwise) convolution, checked against the output."""
    n, ih, iw, ic = nhwc(graph.t(node.inputs[0]).shape, err, "input")
    on, oh, ow, oc = nhwc(graph.t(node.outputs[0]).shape, err, "output")
    w = graph.t(node.inputs[1])
    if len(w.shape) != 4:
        raise err(f"filter must be 4-D, got {list(w.shape)}")
    if depthwise:
        _, kh, kw, wc = (int(s) for s in w.shape)
        if wc != oc or oc % ic != 0:
            raise err(f"filter {list(w.shape)} does not fit input channels {ic} / output channels {oc}")
    else:
        wo, kh, kw, wic = (int(s) for s in w.shape)
        if wo != oc:
            raise err(f"filter has {wo} output channels, output has {oc}")
        if wic != ic:
            raise err(f"grouped convolution (filter in-channels {wic}, input channels {ic}) is not supported")
    sh, sw = node.attrs.get("stride", (1, 1))
    dh, dw = node.attrs.get("dilation", (1, 1))
    if min(sh, sw, dh, dw) < 1:
        raise err("stride and dilation must be >= 1")
    (eh, ew), pads = window_padding(node.attrs, (ih, iw), (kh, kw), (sh, sw), (dh, dw), err)
    pool = node.attrs.get("pool")
    fh, fw = (1, 1) if pool is None else (int(pool["filter"][0]), int(pool["filter"][1]))
    if min(fh, fw) < 1 or eh < fh or ew < fw:
        raise err(f"max pool window {[fh, fw]} does not fit the convolution output {[eh, ew]}")
    want = [n, eh // fh, ew // fw, oc]
    if [on, oh, ow, oc] != want:
        raise err(f"output shape {[on, oh, ow, oc]} does not match the computed {want}")
    return {
        "n": n,
        "ih": ih,
        "iw": iw,
        "ic": ic,
        "oh": eh,  # the convolution's own output (before a fused pool)
        "ow": ew,
        "pool_h": fh,
        "pool_w": fw,
        "oc": oc,
        "kh": kh,
        "kw": kw,
        "sh": sh,
        "sw": sw,
        "dh": dh,
        "dw": dw,
        "ph": pads[0],
        "pw": pads[1],
        "pb": pads[2],
        "pr": pads[3],
    }


def kernel_geometry_args(g: dict[str, int], channels: int) -> list[int]:
    """The shape arguments every conv-like kernel takes, in its parameter order:
    n, ih, iw, ic, oh, ow, `channels` (output channels, or the depthwise multiplier),
    kh, kw, sh, sw, dh, dw, ph, pw."""
    return [g["n"], g["ih"], g["iw"], g["ic"], g["oh"], g["ow"], channels,
            g["kh"], g["kw"], g["sh"], g["sw"], g["dh"], g["dw"], g["ph"], g["pw"]]


def check_conv(node, graph, err, depthwise: bool) -> None:
    dtype = require_dtypes(node, graph, err, ("int8", "float32"))
    w = graph.t(node.inputs[1])
    require_const(w, err, "filter")
    if w.dtype != dtype:
        raise err(f"filter dtype {w.dtype} with input dtype {dtype} is not supported")
    b = graph.t(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if b is not None:
        require_const(b, err, "bias")
        if b.dtype != ("int32" if dtype == "int8" else "float32"):
            raise err(f"bias dtype {b.dtype} is not supported with {dtype} input")
    if dtype == "int8":
        require_quant(graph.t(node.inputs[0]), err)
        require_quant(graph.t(node.outputs[0]), err)
        require_symmetric(w, err)
        axis = 3 if depthwise else 0
        if w.quant.per_channel and w.quant.axis != axis:  # type: ignore[union-attr]
            raise err(f"filter quantised along axis {w.quant.axis}, expected {axis}")  # type: ignore[union-attr]
    if node.attrs.get("pool") is not None and (depthwise or dtype != "float32"):
        raise err("a fused max pool is only supported after a float32 CONV_2D")
    conv_geometry(node, graph, err, depthwise)


VARIANT_DOT4 = "dot4"
VARIANT_S16 = "im2col_s16"


def s16_blocks(g: dict[str, int]) -> int:
    """Blocks of four depth values (kh * kw * in_c, rounded up) of the im2col_s16 kernel."""
    return (g["kh"] * g["kw"] * g["ic"] + 3) // 4


def pack_filter_s16(w, nblk: int):
    """The OHWI int8 filter in the order mt_conv_s8_s16 reads it, as little-endian words:
    each output channel's depth zero-padded to nblk * 4; for every pair of channels, per
    block the two channels' four bytes; an odd last channel's blocks alone at the end.
    Same bytes as the filter plus the padding (never more than 3 per channel)."""
    import numpy as np

    oc = int(w.shape[0])
    flat = np.asarray(w, np.int8).reshape(oc, -1)
    padded = np.zeros((oc, nblk * 4), np.int8)
    padded[:, : flat.shape[1]] = flat
    blocks = padded.reshape(oc, nblk, 4)
    pairs = oc // 2
    parts = [blocks[: 2 * pairs].reshape(pairs, 2, nblk, 4).transpose(0, 2, 1, 3).reshape(-1)]
    if oc % 2:
        parts.append(blocks[-1].reshape(-1))
    return np.ascontiguousarray(np.concatenate(parts)).view("<u4").astype(np.uint32)


def s16_round_table(shifts: list[int]):
    """2^(r - 2) per channel for conv_s8_dsp.h's one-SMLAL requantisation, which needs every
    channel to shift right by r = 2..31; None otherwise (the kernel then uses mt_mbqm)."""
    import numpy as np

    if not shifts or any(s > -2 or s < -31 for s in shifts):
        return None
    return np.asarray([1 << (-s - 2) for s in shifts], dtype=np.int32)


def int8_params(node, ctx, wsum_axes: tuple[int, ...], channels: int):
    """(folded bias, multipliers, shifts, per-channel flag, SSE2 rmul table) of an int8
    convolution-like op, as C expressions."""
    import numpy as np

    x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
    b = ctx.t(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    wsum = np.asarray(w.data, np.int64).sum(axis=wsum_axes).reshape(-1)
    bias = np.zeros(channels, np.int64) if b is None else np.asarray(b.data, np.int64).reshape(-1)
    bias = bias - x.zero_point * wsum
    mults, shifts = conv_multipliers(x, w, out, channels)
    per_channel = len(set(zip(mults, shifts, strict=True))) > 1
    if not per_channel:
        mults, shifts = mults[:1], shifts[:1]
    rmul = sse2_rmul(shifts)
    return (
        ctx.const(bias.astype(np.int32), "bias"),
        ctx.const(np.asarray(mults, np.int32), "mult"),
        ctx.const(np.asarray(shifts, np.int8), "shift"),
        int(per_channel),
        "(const uint32_t*)0" if rmul is None else ctx.const(rmul, "sse2 rmul", sse2_only=True),
    )


@register
class Conv2D(OpSpec):
    kind = "CONV_2D"
    tflite_ops = ("CONV_2D",)
    fuses_activation = True

    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        return window_attrs(ctx)

    def check(self, node, graph, err):
        check_conv(node, graph, err, depthwise=False)

    def inplace(self, node, graph):
        """int8 1x1, stride 1, unpadded, out_c <= in_c: output pixel p only needs input pixel
        p, which the kernel copies to its patch before writing p (never past pixel p)."""
        if graph.t(node.inputs[0]).dtype != "int8":
            return False
        g = conv_geometry(node, graph, lambda m: ValueError(m), depthwise=False)
        return (g["kh"], g["kw"], g["sh"], g["sw"], g["ph"], g["pw"]) == (1, 1, 1, 1, 0, 0) and (
            g["oc"] <= g["ic"] and (g["oh"], g["ow"]) == (g["ih"], g["iw"])
        )

    def variants(self, node, graph, target):
        """int8: "im2col_s16" first on targets with the Arm DSP extension, "dot4" first
        elsewhere (its SSE2 path suits x86 hosts); float32 has one kernel."""
        if graph.t(node.inputs[0]).dtype != "int8":
            return ()
        if getattr(target, "dsp", False):
            return (VARIANT_S16, VARIANT_DOT4)
        return (VARIANT_DOT4, VARIANT_S16)

    def scratch_bytes(self, node, graph):
        """im2col_s16: two pixels of int16 depth (4 bytes per depth value, padded to four).
        dot4 needs a kh*kw*in_c patch buffer unless the filter is 1x1 without padding
        (and the convolution does not run in place); float32 with a fused max pool one
        convolution output row (the columns the pool uses)."""
        g = conv_geometry(node, graph, lambda m: ValueError(m), depthwise=False)
        if graph.t(node.inputs[0]).dtype != "int8":
            if node.attrs.get("pool") is None:
                return 0
            return (g["ow"] // g["pool_w"]) * g["pool_w"] * g["oc"] * 4
        if node.attrs.get("_variant") == VARIANT_S16:
            return 4 * 4 * s16_blocks(g)
        if g["kh"] == g["kw"] == 1 and g["ph"] == g["pw"] == 0 and not node.attrs.get("_inplace"):
            h_ok = (g["oh"] - 1) * g["sh"] < g["ih"]
            w_ok = (g["ow"] - 1) * g["sw"] < g["iw"]
            if h_ok and w_ok:
                return 0
        return g["kh"] * g["kw"] * g["ic"]

    def lower(self, node, ctx):
        import numpy as np

        g = conv_geometry(node, ctx.graph, ctx.error, depthwise=False)
        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        lo, hi = activation_range(node.attrs.get("activation"), out)
        geo = kernel_geometry_args(g, g["oc"])
        ctx.kernel("conv_2d.h")
        if x.dtype == "int8" and node.attrs.get("_variant") == VARIANT_S16:
            self._lower_s16(node, ctx, g, geo, lo, hi)
        elif x.dtype == "int8":
            bias, mult, shift, pc, rmul = int8_params(node, ctx, (1, 2, 3), g["oc"])
            ctx.call(
                "mt_conv_s8",
                ctx.ptr(node.inputs[0]),
                ctx.const(np.asarray(w.data, np.int8), "filter"),
                bias,
                mult,
                shift,
                pc,
                rmul,
                ctx.ptr(node.outputs[0]),
                ctx.scratch_ptr("int8_t") if self.scratch_bytes(node, ctx.graph) else "(int8_t*)0",
                *geo,
                x.zero_point,
                out.zero_point,
                lo,
                hi,
            )
        else:
            b = node.inputs[2] if len(node.inputs) > 2 else None
            bias_c = ctx.const(np.asarray(ctx.t(b).data, np.float32), "bias") if b else "(const float*)0"
            filt = ctx.const(
                np.ascontiguousarray(np.asarray(w.data, np.float32).transpose(1, 2, 3, 0)), "filter_hwio"
            )
            pool = node.attrs.get("pool")
            if pool is None:
                ctx.call("mt_conv_f32", ctx.ptr(node.inputs[0]), filt, bias_c, ctx.ptr(node.outputs[0]), *geo,
                         c_float(lo), c_float(hi))
                return
            # a fused MAX_POOL_2D (passes.fuse_conv_max_pool): its activation clamps last
            plo, phi = activation_range(pool.get("activation"), out)
            ctx.call(
                "mt_conv_maxpool_f32",
                ctx.ptr(node.inputs[0]),
                filt,
                bias_c,
                ctx.ptr(node.outputs[0]),
                ctx.scratch_ptr("float"),
                *geo[:4],
                g["ow"],
                *geo[6:],
                c_float(lo),
                c_float(hi),
                g["pool_h"],
                g["pool_w"],
                g["oh"] // g["pool_h"],
                g["ow"] // g["pool_w"],
                c_float(plo),
                c_float(phi),
            )

    def _lower_s16(self, node, ctx, g: dict[str, int], geo: list[int], lo: int, hi: int) -> None:
        """The im2col_s16 call: reordered filter, and the rounding table of the fast
        requantisation where every channel allows it (and every multiplier is >= 0)."""
        import numpy as np

        x, w, out = ctx.t(node.inputs[0]), ctx.t(node.inputs[1]), ctx.t(node.outputs[0])
        ctx.kernel("conv_s8_dsp.h")
        bias, mult, shift, pc, _ = int8_params(node, ctx, (1, 2, 3), g["oc"])
        mults, shifts = conv_multipliers(x, w, out, g["oc"])
        rnd = s16_round_table(shifts)
        if rnd is not None and min(mults) < 0:
            rnd = None
        if rnd is not None and not pc:
            rnd = rnd[:1]
        nblk = s16_blocks(g)
        ctx.call(
            "mt_conv_s8_s16",
            ctx.ptr(node.inputs[0]),
            ctx.const(pack_filter_s16(w.data, nblk), "filter s16 order"),
            bias,
            mult,
            shift,
            "(const int32_t*)0" if rnd is None else ctx.const(rnd, "rounding"),
            pc,
            ctx.ptr(node.outputs[0]),
            ctx.scratch_ptr("uint32_t"),
            *geo,
            x.zero_point,
            out.zero_point,
            lo,
            hi,
        )
