"""Static memory planning: one arena, offsets from tensor lifetimes.

Why: a microcontroller has no heap to spare; every intermediate tensor gets a fixed
offset in one static arena, and two tensors may share bytes when their lifetimes (from
the node that writes them to the last node that reads them) do not overlap.

- Constants live in flash (lib0.c) and model inputs/outputs are the caller's buffers
  (TVM's C interface), so neither takes arena space.
- Alias nodes (RESHAPE, SQUEEZE: `OpSpec.alias`) make their output the same storage as
  their input; an alias between two caller buffers (e.g. an input reshaped straight into
  an output) cannot share and becomes a copy (`node.attrs["_copy"]`).
- In-place operators (`OpSpec.inplace`, e.g. a 1x1 convolution or a stride-1 depthwise
  convolution with a small line buffer) write their output over their input when nothing
  reads the input afterwards; the plan is made with and without them and the smaller kept.
- Placement is greedy first-fit into the lowest gap (as TFLite Micro's greedy planner),
  tried with several orderings; the smallest arena wins (ties: the first ordering, so
  the result is deterministic). Every offset and size is 16-byte aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph
from .ops import spec

ALIGN = 16


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Storage:
    kind: str  # "arena" | "input" | "output" | "const"
    ref: str  # arena: group root; input/output: graph tensor name; const: tensor name
    offset: int = 0  # arena byte offset


@dataclass
class Plan:
    storage: dict[str, Storage] = field(default_factory=dict)
    arena_size: int = 0
    strategy: str = ""
    scratch: dict[int, int] = field(default_factory=dict)  # node index -> arena offset
    # group root -> [(first node, last node, aligned bytes)] of each tensor in the group
    segments: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    # group root -> (first node, last node, aligned bytes), for reports and tests
    lifetimes: dict[str, tuple[int, int, int]] = field(default_factory=dict)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # keep the lexicographically stable root: the earlier-seen (input side) one
            self.parent[rb] = ra


def plan_memory(graph: Graph) -> Plan:
    """The smaller of the plans with and without in-place operators (ties: not in place).

    Sets node.attrs["_inplace"] / ["_copy"] to match the plan returned."""
    without = _plan(graph, inplace=False)
    if not any(spec(n.kind).inplace(n, graph) for n in graph.nodes):
        return without
    with_inplace = _plan(graph, inplace=True)
    if with_inplace.arena_size < without.arena_size:
        return with_inplace
    return _plan(graph, inplace=False)


def _plan(graph: Graph, inplace: bool) -> Plan:
    uf = _UnionFind()
    pinned: dict[str, tuple[str, str]] = {}  # root -> (kind, ref) for caller buffers / consts

    def pin_of(name: str) -> tuple[str, str] | None:
        t = graph.t(name)
        if name in graph.inputs:
            return ("input", name)
        if name in graph.outputs:
            return ("output", name)
        if t.is_const:
            return ("const", name)
        return None

    for name in graph.tensors:
        p = pin_of(name)
        if p is not None:
            pinned[uf.find(name)] = p
    for node in graph.nodes:
        if not spec(node.kind).alias:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        assert src is not None
        rs, rd = uf.find(src), uf.find(dst)
        ps, pd = pinned.get(rs), pinned.get(rd)
        if ps is not None and pd is not None:
            node.attrs["_copy"] = True
            continue
        node.attrs.pop("_copy", None)
        uf.union(src, dst)
        if ps is not None or pd is not None:
            pinned[uf.find(src)] = ps or pd  # type: ignore[assignment]

    # in-place operators (OpSpec.inplace): output 0 takes input 0's storage when input 0
    # is an arena tensor that nothing reads after this node
    for node in graph.nodes:
        node.attrs.pop("_inplace", None)
    if inplace:
        for i, node in enumerate(graph.nodes):
            sp = spec(node.kind)
            if sp.alias or not node.inputs or node.inputs[0] is None or not node.outputs:
                continue
            src, dst = node.inputs[0], node.outputs[0]
            rs, rd = uf.find(src), uf.find(dst)
            if rs == rd or rs in pinned or rd in pinned or _last_use(graph, uf, rs) != i:
                continue
            if sp.inplace(node, graph):
                uf.union(src, dst)
                node.attrs["_inplace"] = True

    # segments: every tensor of a storage group keeps its own lifetime and size (an in-place
    # output may be smaller than its input: after the node only the output's bytes are live)
    seg_of: dict[str, tuple[int, int]] = {}
    for i, node in enumerate(graph.nodes):
        for name in [*node.inputs, *node.outputs]:
            if name is None:
                continue
            f, la = seg_of.get(name, (i, i))
            seg_of[name] = (min(f, i), max(la, i))
    segments: dict[str, list[tuple[int, int, int]]] = {}
    for name in sorted(seg_of):
        r = uf.find(name)
        if r in pinned:
            continue
        f, la = seg_of[name]
        segments.setdefault(r, []).append((f, la, _align(graph.t(name).nbytes)))
    # per-node scratch buffers (OpSpec.scratch_bytes): live only while their node runs
    for i, node in enumerate(graph.nodes):
        n = spec(node.kind).scratch_bytes(node, graph)
        if n > 0:
            segments[f"\0scratch{i:06d}"] = [(i, i, _align(n))]
    groups = sorted(segments)

    plan = Plan()
    for r in groups:
        segs = segments[r]
        plan.lifetimes[r] = (
            min(f for f, _, _ in segs),
            max(la for _, la, _ in segs),
            max(z for _, _, z in segs),
        )
    plan.segments = segments

    def life(r: str) -> tuple[int, int, int]:
        return plan.lifetimes[r]

    orderings = {
        "size": lambda r: (-life(r)[2], life(r)[0], r),
        "first-use": lambda r: (life(r)[0], -life(r)[2], r),
        "longest-life": lambda r: (life(r)[0] - life(r)[1], -life(r)[2], r),
        "size-x-life": lambda r: (-(life(r)[2] * (life(r)[1] - life(r)[0] + 1)), r),
        "last-use": lambda r: (-life(r)[1], -life(r)[2], r),
    }
    best: tuple[int, str, dict[str, int]] | None = None
    for sname, key in orderings.items():
        for policy in ("first-fit", "under-peak"):
            offsets = _place(sorted(groups, key=key), segments, policy)
            size = max((offsets[r] + life(r)[2] for r in groups), default=0)
            if best is None or size < best[0]:
                best = (size, f"{sname}/{policy}", offsets)
    assert best is not None
    plan.arena_size, plan.strategy, offsets = best

    for i in range(len(graph.nodes)):
        r = f"\0scratch{i:06d}"
        if r in offsets:
            plan.scratch[i] = offsets[r]
    for name in graph.tensors:
        r = uf.find(name)
        if r in pinned:
            kind, ref = pinned[r]
            plan.storage[name] = Storage(kind, ref)
        elif r in offsets:
            plan.storage[name] = Storage("arena", r, offsets[r])
    return plan


def _last_use(graph: Graph, uf: _UnionFind, root: str) -> int:
    """Index of the last node reading or writing any tensor of the storage group `root`."""
    last = -1
    for i, node in enumerate(graph.nodes):
        if any(n is not None and uf.find(n) == root for n in [*node.inputs, *node.outputs]):
            last = i
    return last


def _place(order: list[str], segments: dict[str, list[tuple[int, int, int]]], policy: str) -> dict[str, int]:
    """Place storage groups one by one in `order`. A group's segments (first node, last
    node, bytes) all start at the group's offset; two segments of different groups that are
    alive at the same node must not share bytes. Candidate offsets: 0, the end of each
    conflicting segment, and the offset of every placed group (reusing a dead tensor's slot).

    first-fit: the lowest feasible offset (TFLite Micro's greedy rule).
    under-peak: the highest feasible offset that stays below the current arena top (keeps
    low slots free for what comes later), else the lowest feasible one."""
    placed: list[tuple[int, list[tuple[int, int, int]]]] = []  # (offset, segments)
    offsets: dict[str, int] = {}
    peak = 0
    for r in order:
        mine = segments[r]
        top = max(z for _, _, z in mine)
        # (my bytes, their offset, their bytes) for every pair of segments alive together
        pairs = [
            (z, o, tz)
            for o, theirs in placed
            for f, la, z in mine
            for tf, tl, tz in theirs
            if not (tl < f or la < tf)
        ]
        cands = {0} | {o + tz for _, o, tz in pairs} | {o for o, _ in placed}
        feasible = sorted(c for c in cands if all(c + z <= o or o + tz <= c for z, o, tz in pairs))
        off = feasible[0]
        if policy == "under-peak":
            under = [c for c in feasible if c + top <= peak]
            if under:
                off = under[-1]
        offsets[r] = off
        placed.append((off, mine))
        peak = max(peak, off + top)
    return offsets
