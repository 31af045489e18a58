"""Helpers shared by operator modules: the checks every operator repeats."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..ir import Graph, Node, Tensor


def require_dtypes(node: Node, graph: Graph, err: Callable[[str], Exception], allowed: Sequence[str]) -> str:
    """The dtype of input 0 if it is allowed and the outputs match it; else err."""
    x = graph.t(node.inputs[0])  # type: ignore[arg-type]
    if x.dtype not in allowed:
        raise err(f"input dtype {x.dtype} is not supported (supported: {', '.join(allowed)})")
    for o in node.outputs:
        if graph.t(o).dtype != x.dtype:
            raise err(f"output dtype {graph.t(o).dtype} differs from input dtype {x.dtype}")
    return x.dtype


def require_quant(t: Tensor, err: Callable[[str], Exception], per_channel_ok: bool = False) -> None:
    """A quantised tensor must carry quantisation parameters of the expected kind."""
    if t.quant is None or not t.quant.scale:
        raise err(f"tensor {t.name!r} ({t.dtype}) has no quantisation parameters")
    if t.quant.per_channel and not per_channel_ok:
        raise err(f"tensor {t.name!r} is quantised per channel, which this operator does not support")


def require_symmetric(t: Tensor, err: Callable[[str], Exception]) -> None:
    """Weights must be symmetric (all zero points 0), as TFLite's int8 kernels require."""
    require_quant(t, err, per_channel_ok=True)
    assert t.quant is not None
    if any(int(z) != 0 for z in t.quant.zero_point):
        raise err(
            f"weights {t.name!r} have a non-zero zero point (only symmetric int8 weights are supported)"
        )


def require_const(t: Tensor, err: Callable[[str], Exception], what: str) -> None:
    if not t.is_const:
        raise err(f"{what} {t.name!r} must be a constant")


def out_size(padding: str, in_size: int, k: int, stride: int, dilation: int) -> int:
    """TFLite's ComputeOutSize."""
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size + stride - eff) // stride


def pad_before(in_size: int, k: int, stride: int, dilation: int, out: int) -> int:
    """TFLite's ComputePaddingWithOffset: the padding before (the odd extra goes after)."""
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


def window_padding(
    attrs: dict, in_hw: tuple[int, int], k: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int], err: Callable[[str], Exception],
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """((out_h, out_w), (top, left, bottom, right)) of a windowed operator.

    attrs["padding"] is TFLite's "SAME" / "VALID" (the odd extra pixel after), or
    "EXPLICIT" with attrs["pads"] = (top, left, bottom, right), which the ONNX frontend
    gives for pads TFLite cannot express (e.g. PyTorch's stride-2, pad-1 convolutions), so
    no separate PAD operator and padded copy of the input are needed. Kernels only take
    the pads before: taps past the bottom / right edge fail their bounds check anyway."""
    padding = attrs.get("padding", "VALID")
    out: list[int] = []
    pads: list[int] = []
    if padding == "EXPLICIT":
        p = attrs.get("pads")
        if p is None or len(p) != 4 or any(int(v) < 0 for v in p):
            raise err(f"explicit pads {p!r} must be four non-negative numbers (top, left, bottom, right)")
        top, left, bottom, right = (int(v) for v in p)
        for i, (before, after) in enumerate(((top, bottom), (left, right))):
            eff = (k[i] - 1) * dilation[i] + 1
            out.append((in_hw[i] + before + after - eff) // stride[i] + 1)
        pads = [top, left, bottom, right]
    elif padding in ("SAME", "VALID"):
        after = []
        for i in range(2):
            o = out_size(padding, in_hw[i], k[i], stride[i], dilation[i])
            eff = (k[i] - 1) * dilation[i] + 1
            total = max((o - 1) * stride[i] + eff - in_hw[i], 0) if padding == "SAME" else 0
            out.append(o)
            pads.append(pad_before(in_hw[i], k[i], stride[i], dilation[i], o) if padding == "SAME" else 0)
            after.append(total - pads[-1])
        pads += after
    else:
        raise err(f"padding {padding} is not supported")
    if min(out) < 1:
        raise err(f"the output would be empty (input {list(in_hw)}, window {list(k)}, padding {pads})")
    return (out[0], out[1]), (pads[0], pads[1], pads[2], pads[3])


def nhwc(shape: Sequence[int], err: Callable[[str], Exception], what: str) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise err(f"{what} must be 4-D NHWC, got shape {list(shape)}")
    n, h, w, c = (int(s) for s in shape)
    return n, h, w, c


def window_attrs(ctx: object) -> dict:
    """Padding / stride / dilation / activation common to convolutions (TFLite options)."""
    o = ctx.options  # type: ignore[attr-defined]
    attrs = {
        "padding": ctx.padding(),  # type: ignore[attr-defined]
        "stride": (int(o.StrideH()), int(o.StrideW())),
        "activation": ctx.activation(),  # type: ignore[attr-defined]
    }
    if hasattr(o, "DilationHFactor"):
        attrs["dilation"] = (int(o.DilationHFactor()), int(o.DilationWFactor()))
    else:
        attrs["dilation"] = (1, 1)
    return attrs
