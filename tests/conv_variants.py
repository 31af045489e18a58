"""Force a CONV_2D kernel variant in a compile (tests and bench/conv_variant_cycles.py).

With the lead's variant interface (compile_graph(..., target=, choose=)) the choice goes
through `choose`; before it, the variant is set on every CONV_2D node right after the
passes (as the compiler will), so the same tests run on either side of that change."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any


def has_choose() -> bool:
    """True when compile_graph takes target= and choose= (the variant interface)."""
    from microtvm_tasks.compiler import compile_graph

    return "choose" in inspect.signature(compile_graph).parameters


@contextlib.contextmanager
def forced_variant(variant: str, kind: str = "CONV_2D") -> Iterator[dict[str, Any]]:
    """Within the block every compile gives `kind` nodes that offer `variant` that variant.

    Yields the extra compile options to pass (target/choose with the interface, else {})."""
    if has_choose():
        yield {"target": "cortex-m4",
               "choose": lambda node, names: variant if (node.kind == kind and variant in names)
               else names[0]}
        return
    from microtvm_tasks.compiler import passes

    original = passes.run_passes

    def run_passes(graph: Any, *a: Any, **k: Any) -> Any:
        g = original(graph, *a, **k)
        for node in g.nodes:
            if node.kind == kind and g.t(node.inputs[0]).dtype == "int8":
                node.attrs["_variant"] = variant
        return g

    passes.run_passes = run_passes
    try:
        yield {}
    finally:
        passes.run_passes = original
