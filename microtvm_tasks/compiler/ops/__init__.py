"""The operator registry: one module per operator, found automatically.

How to add an operator (no central file needs editing):

1. Create `microtvm_tasks/compiler/ops/<op>.py` with a subclass of `OpSpec` decorated with
   `@register`::

       from . import OpSpec, register

       @register
       class MaxPool2D(OpSpec):
           kind = "MAX_POOL_2D"                 # the IR node kind (unique)
           tflite_ops = ("MAX_POOL_2D",)        # TFLite builtin operator names it handles
           onnx_ops = ("MaxPool",)              # ONNX op types it handles (frontend_onnx)
           fuses_activation = True              # accepts attrs["activation"] (RELU, RELU6, ...)

           def tflite_attrs(self, ctx):         # builtin options -> IR attrs
               o = ctx.options                  # the tflite.<X>Options object (or None)
               return {"stride": (o.StrideH(), o.StrideW()), "activation": ctx.activation()}

           def from_onnx(self, ctx):            # optional: see frontend_onnx.py
               ...

           def check(self, node, graph, err):   # reject what you do not support
               if graph.t(node.inputs[0]).dtype not in ("int8", "float32"):
                   raise err("dtype ... not supported")

           def fold(self, node, graph):         # optional: numpy outputs when all inputs const
               return None

           def lower(self, node, ctx):          # emit C (see emit_c.EmitContext)
               ctx.kernel("max_pool_2d.h")      # pasted once into lib1.c
               ctx.call("mt_max_pool_s8", ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]), 4, 4)

2. Put its C kernel in `microtvm_tasks/compiler/kernels/<op>.h`: `static` functions (mark
   them `MT_KERNEL` so gcc inlines them at each call site and specialises the constant
   shapes), C99, no malloc, no float in integer kernels. `mt_common.h` (always pasted
   first) has the fixed-point helpers: mt_mbqm (MultiplyByQuantizedMultiplier),
   mt_srdhm (SaturatingRoundingDoublingHighMul), mt_rdbypot (RoundingDivideByPOT),
   mt_clamp_i32. A kernel file may start with a line `// requires: other.h` to pull in
   another kernel file first.

3. Compile-time numbers (multipliers, shifts, activation clamps) come from `..quant`
   (quantize_multiplier, conv_multipliers, activation_range, quantize_value), computed
   in Python exactly as TFLite does, so the C only sees integers.

The EmitContext given to `lower` (emit_c.py) offers: `ptr(tensor_name)` (a typed C
pointer expression: arena slice, caller input/output buffer or constant),
`const(array, hint, sse2_only=False) -> C expression` (a `const` array in lib0.c,
deduplicated; sse2_only tables exist only where __SSE2__ does),
`include(header)` (a system header for lib1.c),
`kernel(filename)`, `call(fn, *args)` / `emit(line)`, `t(name)` (the Tensor),
`scratch_ptr(c_type)` (the node's scratch arena slice, sized by `OpSpec.scratch_bytes`),
`error(msg)` (a CompileError naming operator, node and model).

How to add a frontend: write `microtvm_tasks/compiler/frontend_<fmt>.py` with
`load(path) -> ir.Graph` (NHWC activations, constants as numpy arrays, nodes of
registered kinds in topological order) and add its file suffix to `FRONTENDS` in
`compiler/__init__.py` (the one line the new frontend needs there). For ONNX the specs
are found with `onnx_spec(op_type)`; each spec's `from_onnx(ctx)` decides how an ONNX
node becomes IR nodes.

Variants: a spec may offer several kernels for one node (`variants(node, graph, target)`,
the target's default first); the compiler records the chosen one in node.attrs["_variant"]
(default, tuning log, or a test's choice; compiler/variants.py) before planning, and
scratch_bytes / lower read it. `ctx.target` is the microtvm_tasks.targets.Target.

Aliases: a spec with `alias = True` (RESHAPE, SQUEEZE) produces no code; its output
shares the input's storage (the memory planner merges them). In place: a spec whose
`inplace(node, graph)` returns True may get node.attrs["_inplace"] (output over input 0);
the planner decides before it asks `scratch_bytes`, and keeps in-place only where it
makes the arena smaller. Kernels that may run in place take `in`/`out` without restrict.

Host speed: kernels may add `#if defined(__SSE2__)` (x86 hosts) or
`#if defined(__ARM_FEATURE_DSP)` (Cortex-M4/M7) paths beside the portable C, as
dot_s8.h does; tests/test_compiler_core.py builds with -U__SSE2__ to check the portable
path against TFLite Micro too.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from ..ir import Graph, Node

REGISTRY: dict[str, OpSpec] = {}
_TFLITE: dict[str, OpSpec] = {}
_ONNX: dict[str, OpSpec] = {}
_loaded = False


class OpSpec:
    """Base class: what the compiler needs to know about one IR operator kind."""

    kind: str = ""
    tflite_ops: tuple[str, ...] = ()
    onnx_ops: tuple[str, ...] = ()
    alias: bool = False  # output shares the input's storage, no code
    fuses_activation: bool = False  # accepts attrs["activation"]
    activation: str | None = None  # a standalone activation op that can be fused ("RELU", "RELU6")

    # --- frontends -------------------------------------------------------------
    def tflite_attrs(self, ctx: Any) -> dict[str, Any]:
        """IR attributes from the TFLite operator (ctx: frontend_tflite.OpContext)."""
        return {}

    def from_tflite(self, ctx: Any) -> None:
        """Add IR node(s) for one TFLite operator; default: one node of this kind."""
        ctx.add_node(self.kind, ctx.inputs, ctx.outputs, self.tflite_attrs(ctx))

    def from_onnx(self, ctx: Any) -> None:
        raise ctx.error(f"ONNX import of {self.kind} is not implemented")

    # --- passes ----------------------------------------------------------------
    def check(self, node: Node, graph: Graph, err: Callable[[str], Exception]) -> None:
        """Raise err(message) for a dtype, attribute or shape this operator does not support."""

    def fold(self, node: Node, graph: Graph) -> list[Any] | None:
        """Outputs as numpy arrays if this node can be evaluated at compile time."""
        return None

    def inplace(self, node: Node, graph: Graph) -> bool:
        """True if the kernel can write output 0 over input 0 (same arena offset).

        The planner only uses it when input 0 is an arena tensor nothing reads later, and
        then sets node.attrs["_inplace"] = True before asking scratch_bytes and lowering;
        the kernel must then be correct with the two pointers equal (no `restrict` on them)."""
        return False

    def variants(self, node: Node, graph: Graph, target: Any) -> tuple[str, ...]:
        """Names of the kernels that can implement this node on `target` (a
        microtvm_tasks.targets.Target), the target's default first; () when there is one kernel.

        Every variant must compute the same bits on every target (SIMD paths have portable C
        beside them); only speed may differ. The chosen name is in node.attrs["_variant"]
        before scratch_bytes and lower are asked (compiler/variants.py)."""
        return ()

    def scratch_bytes(self, node: Node, graph: Graph) -> int:
        """Bytes of temporary arena space the kernel needs while it runs (ctx.scratch_ptr())."""
        return 0

    # --- code generation -------------------------------------------------------
    def lower(self, node: Node, ctx: Any) -> None:
        raise ctx.error(f"no code generation for {self.kind}")


def register(cls: type[OpSpec]) -> type[OpSpec]:
    """Class decorator: add an OpSpec subclass to the registry (one instance per kind)."""
    spec = cls()
    if not spec.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    if spec.kind in REGISTRY and type(REGISTRY[spec.kind]) is not cls:
        raise ValueError(f"operator kind {spec.kind} registered twice")
    REGISTRY[spec.kind] = spec
    for name in spec.tflite_ops:
        _TFLITE[name] = spec
    for name in spec.onnx_ops:
        _ONNX[name] = spec
    return cls


def load_all() -> None:
    """Import every module of this package once (each registers its operators)."""
    global _loaded
    if _loaded:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def spec(kind: str) -> OpSpec:
    load_all()
    return REGISTRY[kind]


def tflite_spec(builtin_name: str) -> OpSpec | None:
    load_all()
    return _TFLITE.get(builtin_name)


def onnx_spec(op_type: str) -> OpSpec | None:
    load_all()
    return _ONNX.get(op_type)
