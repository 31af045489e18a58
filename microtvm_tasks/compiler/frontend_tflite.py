"""TFLite flatbuffer -> IR graph.

Parsing uses the `tflite` PyPI package (generated flatbuffer accessors), imported lazily
so that loading the compiler package stays cheap. The frontend is generic: tensors,
buffers and quantisation are read here, and each operator is turned into IR nodes by the
OpSpec registered for its builtin name (ops/), which reads its own builtin options.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

from ..errors import CompileError
from .ir import Graph, Node, Quant, Tensor
from .ops import tflite_spec

_TFLITE_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}
_TFLITE_DTYPE_NAMES = {
    0: "FLOAT32",
    1: "FLOAT16",
    2: "INT32",
    3: "UINT8",
    4: "INT64",
    5: "STRING",
    6: "BOOL",
    7: "INT16",
    8: "COMPLEX64",
    9: "INT8",
    10: "FLOAT64",
    17: "INT4",
}
_ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_ACTIVATION_NAMES = {4: "TANH", 5: "SIGN_BIT"}


def _enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


class OpContext:
    """What an OpSpec's `from_tflite` / `tflite_attrs` sees of one TFLite operator."""

    def __init__(
        self,
        graph: Graph,
        opname: str,
        index: int,
        inputs: list[str | None],
        outputs: list[str],
        options: Any,
    ) -> None:
        self.graph = graph
        self.opname = opname
        self.index = index
        self.inputs = inputs
        self.outputs = outputs
        self.options = options
        self.name = outputs[0] if outputs else f"{opname}_{index}"

    def error(self, msg: str) -> CompileError:
        return CompileError(
            f"{self.graph.name}: operator {self.opname} (node #{self.index} {self.name!r}): {msg}"
        )

    def activation(self) -> str | None:
        """The fused activation of the options, as an IR name (None when there is none)."""
        if self.options is None or not hasattr(self.options, "FusedActivationFunction"):
            return None
        code = self.options.FusedActivationFunction()
        if code in _ACTIVATIONS:
            return _ACTIVATIONS[code]
        raise self.error(f"fused activation {_ACTIVATION_NAMES.get(code, code)} is not supported")

    def padding(self) -> str:
        return {0: "SAME", 1: "VALID"}[self.options.Padding()]

    def t(self, name: str) -> Tensor:
        return self.graph.t(name)

    def add_node(
        self,
        kind: str,
        inputs: list[str | None],
        outputs: list[str],
        attrs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> Node:
        node = Node(kind, name or self.name, list(inputs), list(outputs), dict(attrs or {}))
        node.attrs.setdefault("_source", f"{self.opname} #{self.index}")
        self.graph.nodes.append(node)
        return node


def load(path: str | Path, input_layout: str | None = None) -> Graph:
    """Parse a .tflite file into an IR graph (first subgraph, NHWC, constants as arrays).

    TFLite models are NHWC already; `input_layout` may only confirm that.
    """
    if input_layout not in (None, "NHWC"):
        raise CompileError(
            f"{path}: --input-layout {input_layout} is not possible for a TFLite model (always NHWC)"
        )
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise CompileError(f"{path}: empty file (0 bytes); export the model again")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise CompileError(f"{path}: not a valid TFLite model (no 'TFL3' file identifier at bytes 4-7; "
                           f"{len(data)} bytes); is it a .tflite file?")
    try:
        return _parse(path, data)
    except (struct.error, IndexError) as e:  # flatbuffers reading past the end of the buffer
        raise CompileError(f"{path}: {_truncation(e, len(data))}; the file is damaged or incomplete: "
                           "export or copy it again") from None


def _truncation(e: Exception, size: int) -> str:
    """Where a flatbuffer read ran off the end: 'truncated at byte N of M' when the error says."""
    m = re.search(r"at offset (\d+)", str(e))
    if m and int(m.group(1)) >= size - 8:
        return f"truncated: the model refers to byte {m.group(1)}, the file has {size} bytes"
    return f"damaged flatbuffer ({e}; {size} bytes)"


def _variable_user(sub: Any, index: int, op_names: dict[int, str], model: Any) -> str:
    """'operator X (node #j)' of the first operator that reads tensor `index`, for messages."""
    for j in range(sub.OperatorsLength()):
        op = sub.Operators(j)
        if op.InputsLength() and index in [int(i) for i in op.InputsAsNumpy()]:
            oc = model.OperatorCodes(op.OpcodeIndex())
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            return f"operator {op_names.get(code, f'BUILTIN_{code}')} (node #{j})"
    return "an operator"


def _parse(path: Path, data: bytes) -> Graph:
    import numpy as np
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.BuiltinOptions import BuiltinOptions

    gname = path.name
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        nsub = model.SubgraphsLength()
    except (struct.error, IndexError):
        raise
    except Exception as e:  # flatbuffers raises assorted errors on garbage
        raise CompileError(f"{path}: not a valid TFLite model ({e})") from None
    if nsub < 1:
        raise CompileError(f"{path}: the model has no subgraph")
    if nsub > 1:
        raise CompileError(f"{path}: models with {nsub} subgraphs (control flow) are not supported")
    sub = model.Subgraphs(0)
    graph = Graph(name=gname)
    op_names = _enum_names(BuiltinOperator)
    opt_names = _enum_names(BuiltinOptions)

    names: list[str] = []
    used: set[str] = set()
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        base = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{i}"
        name = base if base not in used else f"{base}_{i}"
        used.add(name)
        names.append(name)
        tcode = t.Type()
        dtype = _TFLITE_DTYPES.get(tcode)
        if t.Sparsity() is not None:
            raise CompileError(f"{path}: tensor {name!r} is sparse; sparse tensors are not supported")
        if t.IsVariable():
            raise CompileError(
                f"{path}: {_variable_user(sub, i, op_names, model)} keeps state between invocations in the "
                f"variable tensor {name!r}; stateful operators are not supported by the built-in compiler"
            )
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(d < 0 for d in shape) or (
            t.ShapeSignatureLength() and any(int(d) < 0 for d in t.ShapeSignatureAsNumpy()[1:])
        ):
            raise CompileError(
                f"{path}: tensor {name!r} has a dynamic shape {list(shape)}; only static shapes are supported"
            )
        quant = None
        q = t.Quantization()
        if q is not None and q.ScaleLength() > 0:
            scales = [float(s) for s in q.ScaleAsNumpy()]
            zps = [int(z) for z in q.ZeroPointAsNumpy()] if q.ZeroPointLength() else [0] * len(scales)
            if len(zps) == 1 and len(scales) > 1:
                zps = zps * len(scales)
            quant = Quant(scales, zps, int(q.QuantizedDimension()) if len(scales) > 1 else None)
        arr = None
        buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        if buf is not None:
            raw = None
            if buf.Offset() > 1:
                raw = data[buf.Offset() : buf.Offset() + buf.Size()]
            elif buf.DataLength() > 0:
                raw = buf.DataAsNumpy().tobytes()
            if raw is not None:
                if dtype is None:
                    raise CompileError(
                        f"{path}: constant tensor {name!r} has unsupported type "
                        f"{_TFLITE_DTYPE_NAMES.get(tcode, tcode)}"
                    )
                arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
                if arr.size != int(np.prod(shape, dtype=np.int64)):
                    raise CompileError(
                        f"{path}: constant tensor {name!r} holds {arr.size} values, shape {list(shape)}"
                    )
                arr = arr.reshape(shape)
        if dtype is None:
            dtype = "unsupported:" + _TFLITE_DTYPE_NAMES.get(tcode, str(tcode))
        graph.add_tensor(Tensor(name, shape, dtype, quant, arr))

    graph.inputs = [names[int(i)] for i in sub.InputsAsNumpy()] if sub.InputsLength() else []
    graph.outputs = [names[int(i)] for i in sub.OutputsAsNumpy()] if sub.OutputsLength() else []
    for io in graph.inputs + graph.outputs:
        if graph.t(io).dtype.startswith("unsupported:"):
            raise CompileError(
                f"{path}: model input/output {io!r} has unsupported type {graph.t(io).dtype[12:]}"
            )

    for j in range(sub.OperatorsLength()):
        op = sub.Operators(j)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        opname = op_names.get(code, f"BUILTIN_{code}")
        if opname == "CUSTOM":
            opname = f"CUSTOM({(oc.CustomCode() or b'').decode()})"
        ins = (
            [names[int(i)] if int(i) >= 0 else None for i in op.InputsAsNumpy()] if op.InputsLength() else []
        )
        outs = [names[int(i)] for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        options = None
        otype = op.BuiltinOptionsType()
        if otype:
            cls = getattr(tflite, opt_names.get(otype, ""), None)
            table = op.BuiltinOptions()
            if cls is not None and table is not None:
                options = cls()
                options.Init(table.Bytes, table.Pos)
        ctx = OpContext(graph, opname, j, ins, outs, options)
        spec = tflite_spec(opname)
        if spec is None:
            raise ctx.error("operator is not supported by the built-in compiler")
        for name in ins + outs:
            if name is not None and graph.t(name).dtype.startswith("unsupported:"):
                raise ctx.error(f"tensor {name!r} has unsupported type {graph.t(name).dtype[12:]}")
        spec.from_tflite(ctx)
    return graph
