"""Kernel variants: which implementation each operator instance gets, and the tuning log.

An operator spec may offer several kernels for one node (`OpSpec.variants`: names, the
target's default first): an im2col GEMM or a direct loop, SIMD or not, other block sizes.
All compute the same bits on every target; only speed differs, and speed depends on the
CPU and the instance's shapes. `assign_variants` decides, before memory planning (a
variant may need scratch), and records the choice in `node.attrs["_variant"]`.

The tuning log is the one place measurements live: JSON lines, one record per measured
(operator signature, target, compiler version, variant), written by `microtvm tune` /
`tune:<project>` (microtvm_tasks/tune.py) and read here by the compiler:

    {"signature": "CONV_2D int8 in=[1,25,5,64] ...", "target": "cortex-m4",
     "compiler": "0.1.0+k3f2a...", "variant": "dsp_gemm_2x2", "ticks": 123456,
     "board": "mps2_an386", "model": "kws"}

`compiler` includes a hash of the kernel sources, so editing a kernel invalidates what was
measured with the old one (the tuner measures again; compile falls back to the default).
Without a log, or for an instance the log does not cover, the default is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import CompileError
from ..targets import Target
from .ir import Graph, Node

#: (node, variant names with the default first) -> the chosen name
Chooser = Callable[[Node, tuple[str, ...]], str]


def compiler_version() -> str:
    """This compiler's version plus a hash of its kernel sources (keys the tuning log)."""
    h = hashlib.sha256()
    kernels = resources.files("microtvm_tasks.compiler") / "kernels"
    for entry in sorted(kernels.iterdir(), key=lambda p: p.name):
        if entry.name.endswith((".h", ".c")):
            h.update(entry.name.encode())
            h.update(entry.read_bytes())
    return f"{__version__}+k{h.hexdigest()[:12]}"


def signature(node: Node, graph: Graph) -> str:
    """What determines a kernel's speed: kind, dtypes, shapes, attributes (not names, not
    the quantisation values beyond per-channel or not). Equal instances in two models share
    measurements."""
    parts = [node.kind]
    for role, names in (("in", node.inputs), ("out", node.outputs)):
        for name in names:
            if not name:
                parts.append(f"{role}=-")
                continue
            t = graph.t(name)
            pc = "/pc" if t.quant is not None and t.quant.per_channel else ""
            const = "/const" if t.is_const else ""
            parts.append(f"{role}={t.dtype}{list(int(s) for s in t.shape)}{pc}{const}".replace(" ", ""))
    attrs = {k: v for k, v in sorted(node.attrs.items()) if not k.startswith("_")}
    if attrs:
        parts.append(json.dumps(attrs, sort_keys=True, separators=(",", ":"), default=str))
    return " ".join(parts)


def tunable_nodes(graph: Graph, target: Target) -> list[tuple[int, Node, tuple[str, ...]]]:
    """(index, node, variant names) of every node with more than one variant."""
    from .ops import spec

    out = []
    for i, node in enumerate(graph.nodes):
        names = tuple(spec(node.kind).variants(node, graph, target))
        if len(names) > 1:
            out.append((i, node, names))
    return out


def assign_variants(graph: Graph, target: Target, choose: Chooser | None = None) -> None:
    """Set node.attrs["_variant"] on every node whose spec offers variants."""
    from .ops import spec

    for node in graph.nodes:
        names = tuple(spec(node.kind).variants(node, graph, target))
        if not names:
            node.attrs.pop("_variant", None)
            continue
        chosen = choose(node, names) if choose is not None else names[0]
        if chosen not in names:
            raise CompileError(
                f"{graph.name}: operator {node.kind} (node {node.name!r}): variant {chosen!r} "
                f"is not one of {', '.join(names)}"
            )
        node.attrs["_variant"] = chosen


def relieve_arena_peak(graph: Graph, plan: Any, target: Target) -> Any:
    """RAM first: where another variant of a node with scratch needs less of it, take that
    variant if the arena then shrinks (replanned for each candidate; wherever the planner put
    the scratch, only a smaller arena counts).
    A microcontroller's RAM is a hard limit; a kernel that is a little faster is not worth
    a model that no longer fits beside the application. Returns the plan to use."""
    from .memory import plan_memory
    from .ops import spec

    tried = False
    for i, node in enumerate(graph.nodes):
        if i not in plan.scratch:
            continue
        sp = spec(node.kind)
        names = tuple(sp.variants(node, graph, target))
        current = node.attrs.get("_variant")
        if len(names) < 2 or current is None:
            continue
        mine = sp.scratch_bytes(node, graph)
        best = current
        for v in names:  # in the spec's order of preference; the smallest arena wins
            node.attrs["_variant"] = v
            if v == current or sp.scratch_bytes(node, graph) >= mine:
                continue
            trial = plan_memory(graph)
            tried = True
            if trial.arena_size < plan.arena_size:
                plan, best = trial, v
        node.attrs["_variant"] = best
    # a trial plan left its in-place marks on the graph: plan once more for the final choice
    return plan_memory(graph) if tried else plan


@dataclass(frozen=True)
class Record:
    signature: str
    target: str
    compiler: str
    variant: str
    ticks: int


def read_log(path: str | Path) -> list[Record]:
    """Every well-formed record of a tuning log; a damaged line is an error naming it."""
    p = Path(path)
    records: list[Record] = []
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    except OSError as e:
        raise CompileError(f"{p}: cannot read the tuning log: {e}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            records.append(
                Record(str(d["signature"]), str(d["target"]), str(d["compiler"]), str(d["variant"]),
                       int(d["ticks"]))
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CompileError(
                f"{p}:{lineno}: not a tuning record ({e}); each line is a JSON object with signature, "
                "target, compiler, variant, ticks. Delete the line (or the file) and tune again."
            ) from None
    return records


def best_variants(records: Iterable[Record], target: Target, compiler: str | None = None) -> dict[str, str]:
    """signature -> fastest measured variant, for this target and compiler version."""
    compiler = compiler or compiler_version()
    best: dict[str, tuple[int, str]] = {}
    for r in records:
        if r.target != target.name or r.compiler != compiler:
            continue
        cur = best.get(r.signature)
        if cur is None or (r.ticks, r.variant) < cur:
            best[r.signature] = (r.ticks, r.variant)
    return {sig: v for sig, (_, v) in best.items()}


def log_coverage(log: str | Path, target: Target) -> tuple[int, int]:
    """(records in the log, records for this target and compiler version): a log measured
    with another target or an older kernel set chooses nothing, and the user should hear so."""
    records = read_log(log)
    version = compiler_version()
    return len(records), sum(1 for r in records if r.target == target.name and r.compiler == version)


def log_chooser(graph: Graph, target: Target, log: str | Path | Iterable[Record]) -> Chooser:
    """A chooser that picks each instance's best logged variant, else the default."""
    records = read_log(log) if isinstance(log, (str, Path)) else list(log)
    best = best_variants(records, target)

    def choose(node: Node, names: tuple[str, ...]) -> str:
        v = best.get(signature(node, graph))
        return v if v in names else names[0]

    return choose


def forced(choice: Mapping[str, str] | str) -> Chooser:
    """A chooser for tests and tuning batches: one variant name for every node that has it
    (a str), or node name -> variant (a mapping); the default elsewhere."""

    def choose(node: Node, names: tuple[str, ...]) -> str:
        want: Any = choice if isinstance(choice, str) else choice.get(node.name)
        return want if want in names else names[0]

    return choose
