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
