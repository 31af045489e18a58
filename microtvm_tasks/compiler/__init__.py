"""The built-in ahead-of-time compiler: TFLite / ONNX -> Model Library Format (C99).

Pipeline (one module per step):

    frontend_<fmt>.load(path) -> ir.Graph          (frontend_tflite.py, frontend_onnx.py)
    passes.run_passes(graph)                         (check ops, fold constants, fuse activations)
    memory.plan_memory(graph) -> Plan                (static arena from lifetimes)
    emit_c.emit(graph, plan, name) -> C sources      (header, lib0.c constants, lib1.c kernels + run)
    mlf.write_archive(out, members)                  (reproducible tar)

Adding an operator or a frontend: read `ops/__init__.py` (one module per operator in
`ops/`, its C kernel in `kernels/`, registered by a decorator and discovered
automatically; a frontend is a module with `load(path, **options) -> Graph` listed in
`FRONTENDS` below).

Same input and options give a byte-identical archive.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import CompileError, MLFError

#: file suffix -> frontend module (in this package) with load(path, **options) -> ir.Graph
FRONTENDS: dict[str, str] = {".tflite": "frontend_tflite", ".onnx": "frontend_onnx"}

#: options compile_model forwards to the frontend
KNOWN_OPTIONS = ("input_layout",)

#: the "generator" entry of the archives the compiler writes
GENERATOR = {"name": "microtvm-tasks", "version": __version__}


def _is_mlf_tar(path: Path) -> dict[str, Any]:
    """The metadata of an existing MLF archive, or CompileError saying why it is not one.

    Read with mlf.py's checked reader, so the compiler passes through exactly the archives
    the templates can read (every member safe, metadata of a supported version and valid).
    """
    from ..mlf import read_mlf

    try:
        return read_mlf(path).metadata
    except MLFError as e:
        raise CompileError(str(e)) from None


def _tensor_meta(t: Any) -> dict[str, Any]:
    from ..mlf import tensor_metadata

    return tensor_metadata(t.nbytes, t.dtype, list(t.shape), None if t.quant is None else t.quant.to_json())


def compile_graph(
    graph: Any,
    module_name: str = "default",
    *,
    target: Any = None,
    choose: Any = None,
    tuning_log: str | Path | None = None,
    profile: bool = False,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Passes, variant choice, planning and emission for a loaded graph: (archive members,
    metadata).

    target: a Target or CPU name (default generic): picks each operator's default kernel
    variant. tuning_log: a tuning log (variants.py) whose fastest measured variant per
    operator instance wins over the default. choose: a variants.Chooser instead (tests,
    tuning batches). profile: the run function also records the ticks each operator takes
    (`<prefix>_op_ticks`, read with the run protocol's PROFILE command), and the archive
    gets src/<name>.profile.json naming the operators in that order."""
    from ..mlf import build_metadata, metadata_bytes
    from ..targets import Target
    from .emit_c import emit
    from .memory import plan_memory
    from .passes import run_passes
    from .variants import assign_variants, log_chooser, relieve_arena_peak

    tgt = Target.parse(target)
    target_string = "c -keys=cpu" if tgt.name == "generic" else f"c -keys=arm_cpu,cpu -mcpu={tgt.name}"
    graph = run_passes(graph)
    forced = choose is not None
    if choose is None and tuning_log is not None:
        choose = log_chooser(graph, tgt, tuning_log)
    assign_variants(graph, tgt, choose)
    plan = plan_memory(graph)
    if not forced:  # a caller's explicit choice is kept even where it costs RAM
        plan = relieve_arena_peak(graph, plan, tgt)
    files, const_bytes = emit(graph, plan, module_name, target=tgt, profile=profile)
    io_bytes = sum(graph.t(n).nbytes for n in graph.inputs + graph.outputs)
    meta = build_metadata(
        module_name,
        workspace_bytes=plan.arena_size,
        constants_bytes=const_bytes,
        io_bytes=io_bytes,
        inputs={n: _tensor_meta(graph.t(n)) for n in graph.inputs},
        outputs={n: _tensor_meta(graph.t(n)) for n in graph.outputs},
        target=target_string,
        generator=GENERATOR,
    )
    members = {k: v.encode("utf-8") for k, v in files.items()}
    members["metadata.json"] = metadata_bytes(meta)
    members[f"src/{module_name}.ir.txt"] = (graph.dump() + _plan_text(graph, plan)).encode("utf-8")
    if profile:
        members[f"src/{module_name}.profile.json"] = (
            json.dumps({"target": tgt.name, "operators": profiled_operators(graph)}, indent=1) + "\n"
        ).encode("utf-8")
    return members, meta


def profiled_operators(graph: Any) -> list[dict[str, Any]]:
    """The operators a profiling build times, in the order of its tick table: every node
    that produces code (aliases do not), with what the tuner needs to file a measurement."""
    from .ops import spec
    from .variants import signature

    ops = []
    for i, node in enumerate(graph.nodes):
        if spec(node.kind).alias and not node.attrs.get("_copy"):
            continue
        ops.append({"node": i, "kind": node.kind, "name": node.name, "signature": signature(node, graph),
                    "variant": node.attrs.get("_variant")})
    return ops


def _plan_text(graph: Any, plan: Any) -> str:
    """The memory plan as text, appended to the IR dump: where every tensor lives."""
    lines = [f"memory plan: arena {plan.arena_size} bytes ({plan.strategy})"]
    for i, node in enumerate(graph.nodes):
        notes = []
        if node.attrs.get("_variant"):
            notes.append(f"variant {node.attrs['_variant']}")
        if node.attrs.get("_inplace"):
            notes.append("in place")
        if node.attrs.get("_copy"):
            notes.append("copy")
        if i in plan.scratch:
            notes.append(f"scratch at arena+{plan.scratch[i]}")
        for name in node.outputs:
            st = plan.storage.get(name)
            where = (
                "-" if st is None else (f"arena+{st.offset}" if st.kind == "arena" else f"{st.kind} {st.ref}")
            )
            extra = f"  [{', '.join(notes)}]" if notes else ""
            lines.append(f"  #{i} {node.kind} -> %{name}: {where} ({graph.t(name).nbytes} B){extra}")
    return "\n".join(lines) + "\n"


def load_model(path: str | Path, **options: Any) -> Any:
    """Parse a model file into the IR with the frontend its suffix names."""
    path = Path(path)
    mod_name = FRONTENDS.get(path.suffix.lower())
    if mod_name is None:
        raise CompileError(
            f"{path}: unknown model format {path.suffix!r}; expected one of "
            f"{', '.join(sorted(FRONTENDS))} or an MLF .tar"
        )
    try:
        frontend = importlib.import_module(f"{__name__}.{mod_name}")
    except ModuleNotFoundError as e:
        raise CompileError(f"{path}: the {path.suffix} frontend is not available ({e})") from None
    given = {k: v for k, v in options.items() if v is not None}
    return frontend.load(path, **given) if given else frontend.load(path)


def compile_model(
    path: str | Path,
    out: str | Path,
    *,
    module_name: str = "default",
    target: Any = None,
    choose: Any = None,
    tuning_log: str | Path | None = None,
    profile: bool = False,
    **options: Any,
) -> Path:
    """Compile a .tflite / .onnx model (or pass an MLF .tar through) to an MLF archive at `out`.

    target, choose, tuning_log, profile: as compile_graph; options go to the frontend.

    Raises CompileError for anything the user can fix: unknown format, unsupported
    operator (naming operator, node and model), bad module name or option.
    """
    from ..mlf import write_archive

    path = Path(path)
    if not path.is_file():
        raise CompileError(f"{path}: model file not found")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module_name):
        raise CompileError(f"module name {module_name!r} is not a C identifier (letters, digits, _)")
    unknown = sorted(set(options) - set(KNOWN_OPTIONS))
    if unknown:
        raise CompileError(
            f"unknown compile option(s) {', '.join(unknown)}; known: {', '.join(KNOWN_OPTIONS)}"
        )
    out = Path(out)
    if path.suffix.lower() == ".tar":
        _is_mlf_tar(path)
        data = path.read_bytes()
        out.parent.mkdir(parents=True, exist_ok=True)
        from ..fsutil import atomic_write_bytes

        atomic_write_bytes(out, data)
        return out
    graph = load_model(path, **options)
    members, _ = compile_graph(graph, module_name, target=target, choose=choose, tuning_log=tuning_log,
                               profile=profile)
    return write_archive(out, members)


def compile_to_members(
    path: str | Path,
    *,
    module_name: str = "default",
    target: Any = None,
    choose: Any = None,
    tuning_log: str | Path | None = None,
    profile: bool = False,
    **options: Any,
) -> dict[str, bytes]:
    """The archive members compile_model would write (for tests and benchmarks)."""
    graph = load_model(path, **options)
    return compile_graph(graph, module_name, target=target, choose=choose, tuning_log=tuning_log,
                         profile=profile)[0]


__all__ = ["compile_model", "compile_graph", "compile_to_members", "load_model", "FRONTENDS"]
