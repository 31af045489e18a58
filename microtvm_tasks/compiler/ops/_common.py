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
