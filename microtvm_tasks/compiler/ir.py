"""The compiler's one small graph IR, shared by every frontend, pass and the C emitter.

Why a separate IR: TFLite and ONNX describe the same computations with different
vocabularies (operator codes vs. op types, NHWC vs. NCHW, fused activations vs. separate
nodes). The frontends translate into this IR once; passes, the memory planner and the
emitter only ever see it. Tensors are identified by name (unique within a graph); an
operator ("node") reads and writes tensors by name, and the graph keeps nodes in
topological order.

Conventions kept by every frontend:
- Activations are NHWC (TFLite's layout); the ONNX frontend inserts layout changes.
- Quantised tensors carry `Quant` with per-tensor (one scale) or per-channel
  (`axis` set, one scale per slice) parameters.
- A constant tensor has `data` (a numpy array of exactly `shape` and `dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..mlf import DTYPES as _DTYPES

#: IR dtype name -> (numpy dtype name, C type, bytes per element), read from mlf.DTYPES (the
#: one dtype table: the archive's metadata, the glue and the run protocol use it too).
DTYPES: dict[str, tuple[str, str, int]] = {d.name: (d.name, d.c_type, d.itemsize) for d in _DTYPES.values()}


def c_type(dtype: str) -> str:
    """The C element type for an IR dtype."""
    return DTYPES[dtype][1]


def itemsize(dtype: str) -> int:
    """Bytes per element of an IR dtype."""
    return DTYPES[dtype][2]


@dataclass
class Quant:
    """Affine quantisation real = scale * (q - zero_point).

    Per-tensor when `axis` is None (one scale, one zero point); per-channel otherwise
    (one scale and zero point per index of dimension `axis`).
    """

    scale: list[float]
    zero_point: list[int]
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and len(self.scale) > 1

    def to_json(self) -> dict[str, Any]:
        """The metadata.json form: scalars per tensor, lists per channel."""
        if self.per_channel:
            return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}
        return {"scale": float(self.scale[0]), "zero_point": int(self.zero_point[0])}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quant | None = None
    data: Any = None  # numpy array for constants

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.size * itemsize(self.dtype)

    @property
    def scale(self) -> float:
        """The per-tensor scale (quantised tensors only)."""
        assert self.quant is not None, self.name
        return float(self.quant.scale[0])

    @property
    def zero_point(self) -> int:
        return int(self.quant.zero_point[0]) if self.quant is not None else 0


@dataclass
class Node:
    """One operator application. `kind` names an entry in the op registry (ops/__init__.py).

    `inputs` may contain None for an absent optional input (e.g. a missing bias).
    `attrs` holds the operator's attributes in IR terms (e.g. "activation": "RELU").
    """

    kind: str
    name: str
    inputs: list[str | None]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    name: str  # the model's file name, for error messages
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def add_tensor(self, t: Tensor) -> Tensor:
        if t.name in self.tensors:
            raise ValueError(f"duplicate tensor name {t.name!r}")
        self.tensors[t.name] = t
        return t

    def unique_name(self, base: str) -> str:
        """A tensor name not used yet, derived from `base` (for tensors passes create)."""
        if base not in self.tensors:
            return base
        i = 1
        while f"{base}_{i}" in self.tensors:
            i += 1
        return f"{base}_{i}"

    def t(self, name: str) -> Tensor:
        return self.tensors[name]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def prune(self) -> None:
        """Drop nodes whose outputs nobody needs and tensors nobody references."""
        needed = set(self.outputs)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in needed for o in n.outputs):
                kept.append(n)
                needed.update(i for i in n.inputs if i is not None)
        self.nodes = list(reversed(kept))
        used = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            used.update(i for i in n.inputs if i is not None)
            used.update(n.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in used}

    def dump(self) -> str:
        """Human-readable text of the graph (written to src/<name>.ir.txt)."""

        def tdesc(name: str | None) -> str:
            if name is None:
                return "-"
            t = self.tensors[name]
            q = ""
            if t.quant is not None:
                if t.quant.per_channel:
                    q = f" q(per-channel axis={t.quant.axis}, {len(t.quant.scale)} scales)"
                else:
                    q = f" q(scale={t.quant.scale[0]!r}, zp={t.quant.zero_point[0]})"
            c = " const" if t.is_const else ""
            return f"%{name}: {t.dtype}{list(t.shape)}{q}{c}"

        lines = [f"graph {self.name}"]
        for i in self.inputs:
            lines.append(f"  input  {tdesc(i)}")
        for o in self.outputs:
            lines.append(f"  output {tdesc(o)}")
        for n in self.nodes:
            attrs = ", ".join(f"{k}={v!r}" for k, v in sorted(n.attrs.items()) if not k.startswith("_"))
            lines.append(f"  {n.kind}({attrs})  # {n.name}")
            for i in n.inputs:
                lines.append(f"    in  {tdesc(i)}")
            for o in n.outputs:
                lines.append(f"    out {tdesc(o)}")
        return "\n".join(lines) + "\n"
