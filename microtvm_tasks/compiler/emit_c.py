"""IR graph + memory plan -> the C99 files of a Model Library Format archive.

- `<name>_lib0.c`: every constant as a `const` array (so it is placed in flash), 16-byte
  aligned where the compiler supports it.
- `<name>_lib1.c`: the fixed-point helpers, only the kernels this model uses, the static
  arena and `tvmgen_<name>_run`, which calls the kernels with constant shapes and fixed
  arena offsets (gcc inlines each call and specialises its loops).
- `tvmgen_<name>.h`: TVM's AOT C interface (input/output structs, size macros, run).

Everything is emitted in a fixed order from the graph, so identical input gives
identical text.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from ..errors import CompileError
from ..mlf import c_ident  # the one rule, shared with the glue and the tasks
from .ir import Graph, Node, Tensor, c_type
from .memory import Plan
from .ops import spec

_REQUIRES = re.compile(r"^//\s*requires:\s*(.+)$", re.MULTILINE)


def _comment(text: str) -> str:
    return text.replace("*/", "* /").replace("\n", " ")


def kernel_source(filename: str) -> str:
    """The text of a kernel file shipped in compiler/kernels/."""
    return (resources.files("microtvm_tasks.compiler") / "kernels" / filename).read_text(encoding="utf-8")


def _format_array(arr: Any) -> str:
    import numpy as np

    flat = np.asarray(arr).reshape(-1)
    if flat.dtype == np.float32:
        items = []
        for v in flat.tolist():
            if v != v:
                items.append("NAN")
            elif v in (float("inf"), float("-inf")):
                items.append("INFINITY" if v > 0 else "-INFINITY")
            else:
                r = f"{v:.9g}"
                items.append(r + ("f" if ("." in r or "e" in r) else ".0f"))
    elif flat.dtype == np.uint32:
        items = [f"{v}u" for v in flat.tolist()]
    elif flat.dtype == np.int32:
        items = [str(v) if v != -(2**31) else "(-2147483647 - 1)" for v in flat.tolist()]
    elif flat.dtype == np.bool_:
        items = [str(int(v)) for v in flat.tolist()]
    else:
        items = [str(v) for v in flat.tolist()]
    per_line = 16
    lines = ["  " + ", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join(lines)


class EmitContext:
    """What an OpSpec's `lower` uses to produce C (see ops/__init__.py)."""

    def __init__(self, graph: Graph, plan: Plan, module_name: str, target: Any = None) -> None:
        from ..targets import Target

        self.graph = graph
        self.target = Target.parse(target)
        self.plan = plan
        self.module_name = module_name
        self.prefix = f"tvmgen_{module_name}"
        # (c name, c type, array, comment, preprocessor guard or "")
        self.consts: list[tuple[str, str, Any, str, str]] = []
        self._const_keys: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self.kernels: list[str] = []
        self.lines: list[str] = []
        self.headers: set[str] = set()
        self.node: Node | None = None
        self.node_index = -1

    # --- queries ---------------------------------------------------------------
    def t(self, name: str) -> Tensor:
        return self.graph.t(name)

    @property
    def variant(self) -> str | None:
        """The kernel variant chosen for the current node (OpSpec.variants), or None."""
        return None if self.node is None else self.node.attrs.get("_variant")

    def error(self, msg: str) -> CompileError:
        n = self.node
        where = f"operator {n.kind} (node {n.name!r})" if n is not None else "code generation"
        return CompileError(f"{self.graph.name}: {where}: {msg}")

    def ptr(self, name: str | None) -> str:
        """A typed C pointer expression to a tensor's storage."""
        if name is None:
            return "0"
        t = self.t(name)
        ct = c_type(t.dtype)
        st = self.plan.storage.get(name)
        if st is None:
            raise self.error(f"tensor {name!r} has no storage")
        if st.kind == "arena":
            return f"(({ct}*)({self.prefix}_arena + {st.offset}))"
        if st.kind == "input":
            return f"(({ct}*)inputs->{c_ident(st.ref)})"
        if st.kind == "output":
            return f"(({ct}*)outputs->{c_ident(st.ref)})"
        return self.const(self.t(st.ref).data, c_ident(st.ref)[:40])

    def scratch_ptr(self, ctype: str = "int8_t") -> str:
        """The current node's scratch slice of the arena (OpSpec.scratch_bytes)."""
        if self.node_index not in self.plan.scratch:
            raise self.error("the kernel asked for scratch memory its OpSpec did not declare")
        return f"(({ctype}*)({self.prefix}_arena + {self.plan.scratch[self.node_index]}))"

    # --- output ------------------------------------------------------------------
    def const(self, array: Any, hint: str = "", *, sse2_only: bool = False) -> str:
        """Add a constant array to lib0.c (deduplicated by content); returns its C name.

        sse2_only: a table only the SSE2 code paths read; it is compiled only where
        __SSE2__ is defined (so it costs no flash on a microcontroller) and the returned
        expression is `MT_IF_SSE2(name)`, a null pointer elsewhere."""
        import numpy as np

        arr = np.ascontiguousarray(array)
        dtype = str(arr.dtype)
        if dtype not in ("int8", "uint8", "int16", "int32", "uint32", "int64", "float32", "bool"):
            raise self.error(f"constant of dtype {dtype} cannot be emitted")
        guard = "__SSE2__" if sse2_only else ""
        key = (dtype, tuple(arr.shape), arr.tobytes(), guard)
        if key in self._const_keys:
            return self._const_keys[key]
        cname = f"{self.prefix}_c{len(self.consts)}"
        ctype = {"bool": "uint8_t", "float32": "float"}.get(dtype, f"{dtype}_t")
        note = f"{hint} {list(arr.shape)}" + (f" for {self.node.name}" if self.node is not None else "")
        self.consts.append((cname, ctype, arr, note, guard))
        expr = f"MT_IF_SSE2({cname})" if guard else cname
        self._const_keys[key] = expr
        return expr

    def kernel(self, filename: str) -> None:
        """Paste a kernel file into lib1.c (once), after the files it requires."""
        if filename in self.kernels:
            return
        text = kernel_source(filename)
        for req in _REQUIRES.findall(text):
            for r in req.replace(",", " ").split():
                self.kernel(r)
        self.kernels.append(filename)

    def include(self, header: str) -> None:
        """A system header lib1.c must include (e.g. <math.h> for expf)."""
        self.headers.add(header)

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def call(self, fn: str, *args: Any) -> None:
        self.emit(f"{fn}({', '.join(str(a) for a in args)});")


def emit(
    graph: Graph, plan: Plan, module_name: str, *, target: Any = None, profile: bool = False
) -> tuple[dict[str, str], int]:
    """({relative MLF path: text} for the header, lib0.c and lib1.c; constant bytes).

    profile: each operator that produces code is bracketed by two mt_platform_ticks()
    readings (the runtime's platform hook) and the difference stored in
    `<prefix>_op_ticks[k]`, k counting those operators in graph order (as
    compiler.profiled_operators lists them); the header declares the table and
    `<PREFIX>_PROFILE_OPS`, which the runtime glue looks for. The readings sit between
    whole operators, so they change no kernel's code."""
    ctx = EmitContext(graph, plan, module_name, target)
    profiled = 0
    idents: dict[str, str] = {}
    for name in [*graph.inputs, *graph.outputs]:
        other = idents.setdefault(c_ident(name), name)
        if other != name:
            raise CompileError(
                f"{graph.name}: model inputs/outputs {other!r} and {name!r} both become the C field "
                f"{c_ident(name)!r}; rename one of them in the model"
            )
    ctx.kernel("mt_common.h")
    for i, node in enumerate(graph.nodes):
        ctx.node = node
        ctx.node_index = i
        ctx.lines.append(f"  /* #{i} {node.kind} {_comment(node.name)} */")
        sp = spec(node.kind)
        if sp.alias and not node.attrs.get("_copy"):
            ctx.lines.append("  /* alias: shares the input's storage, no code */")
            continue
        if profile:
            ctx.lines.append("  mt_t0 = mt_platform_ticks();")
        if sp.alias:
            ctx.include("string.h")
            nbytes = ctx.t(node.outputs[0]).nbytes
            ctx.emit(f"memcpy({ctx.ptr(node.outputs[0])}, {ctx.ptr(node.inputs[0])}, {nbytes});")
        else:
            sp.lower(node, ctx)
        if profile:
            ctx.lines.append(f"  {ctx.prefix}_op_ticks[{profiled}] = mt_platform_ticks() - mt_t0;")
            profiled += 1
    ctx.node = None

    p = ctx.prefix
    upper = p.upper()
    # header
    h = [
        f"/* {p}.h: generated by microtvm-tasks from {_comment(graph.name)}. TVM AOT C interface. */",
        f"#ifndef {upper}_H_",
        f"#define {upper}_H_",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
    ]
    for kind, names in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        for n in names:
            h.append(f"#define {upper}_{c_ident(n).upper()}_SIZE {graph.t(n).nbytes}")
        h.append(f"struct {p}_{kind} {{")
        for n in names:
            h.append(f"  void* {c_ident(n)};")
        h.append("};")
        h.append("")
    if profile:
        h += [
            "/* profiling build: ticks of each operator in the last run (mt_platform_ticks units) */",
            f"#define {upper}_PROFILE_OPS {profiled}",
            f"extern uint32_t {p}_op_ticks[{max(profiled, 1)}];",
            "",
        ]
    h += [
        f"int32_t {p}_run(struct {p}_inputs* inputs, struct {p}_outputs* outputs);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {upper}_H_ */",
        "",
    ]

    align = (
        "#if defined(__GNUC__)\n#define MT_ALIGN16 __attribute__((aligned(16)))\n"
        "#else\n#define MT_ALIGN16\n#endif\n"
    )
    lib0 = [
        f"/* {module_name}_lib0.c: constants of {_comment(graph.name)} (const: kept in flash). */",
        "#include <stdint.h>",
        "#include <math.h>",
        "",
        align,
    ]
    for cname, ctype, arr, note, guard in ctx.consts:
        lib0.append(f"/* {_comment(note)} */")
        if guard:
            lib0.append(f"#if defined({guard})")
        lib0.append(f"const {ctype} {cname}[{max(arr.size, 1)}] MT_ALIGN16 = {{")
        lib0.append(_format_array(arr) if arr.size else "  0")
        lib0.append("};")
        if guard:
            lib0.append("#endif")
        lib0.append("")

    lib1 = [
        f"/* {module_name}_lib1.c: kernels and run function of {_comment(graph.name)}. */",
        "#include <stdint.h>",
        "#include <float.h>",
        "#include <math.h>",
    ]
    for hdr in sorted(ctx.headers - {"stdint.h", "float.h", "math.h"}):
        lib1.append(f"#include <{hdr}>")
    lib1 += [
        f'#include "{p}.h"',
        "",
        align,
        "/* tables only SSE2 code reads exist only where SSE2 does */",
        "#if defined(__SSE2__)\n#define MT_IF_SSE2(x) (x)\n#else\n#define MT_IF_SSE2(x) 0\n#endif\n",
    ]
    for k in ctx.kernels:
        lib1.append(f"/* ---- kernels/{k} ---- */")
        lib1.append(kernel_source(k).rstrip("\n"))
        lib1.append("")
    for cname, ctype, arr, _, guard in ctx.consts:
        decl = f"extern const {ctype} {cname}[{max(arr.size, 1)}];"
        lib1.append(f"#if defined({guard})\n{decl}\n#endif" if guard else decl)
    lib1.append("")
    if plan.arena_size:
        lib1.append(f"static uint8_t {p}_arena[{plan.arena_size}] MT_ALIGN16;")
        lib1.append("")
    if profile:
        lib1.append("uint32_t mt_platform_ticks(void); /* the runtime's platform.h hook */")
        lib1.append(f"uint32_t {p}_op_ticks[{max(profiled, 1)}];")
        lib1.append("")
    lib1.append(f"int32_t {p}_run(struct {p}_inputs* inputs, struct {p}_outputs* outputs) {{")
    if profile:
        lib1.append("  uint32_t mt_t0;")
    lib1.append("  (void)inputs;")
    lib1.append("  (void)outputs;")
    lib1 += ctx.lines
    lib1.append("  return 0;")
    lib1.append("}")
    lib1.append("")
    files = {
        f"codegen/host/include/{p}.h": "\n".join(h),
        f"codegen/host/src/{module_name}_lib0.c": "\n".join(lib0),
        f"codegen/host/src/{module_name}_lib1.c": "\n".join(lib1),
    }
    return files, sum(int(arr.nbytes) for _, _, arr, _, guard in ctx.consts if not guard)
