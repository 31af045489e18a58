"""ONNX (float32) -> IR graph.

Layout. ONNX activations are NCHW, the IR's are NHWC (the kernels are TFLite's). Every
4-D activation is therefore kept in the IR as the NHWC permutation of its ONNX value;
the frontend remembers, per ONNX value, whether the IR tensor is "nhwc" (permuted) or
"onnx" (same shape and order as ONNX) and converts between the two only where an
operator needs the other form. Model inputs and outputs keep their ONNX shapes by
default: a 4-D input is transposed NCHW -> NHWC by the first operator that reads it and
a 4-D output NHWC -> NCHW by the last (a permutation that only moves size-1 dimensions,
e.g. MNIST's [1, 1, 28, 28] input, costs nothing: it is an alias). With
``input_layout="NHWC"`` the caller supplies 4-D inputs already in NHWC order (the MLF
then declares the NHWC shape) and the input transposes disappear.

Folding. Constants (initializers and Constant nodes) stay numpy arrays until an operator
needs them; operators whose inputs are all constant (Transpose, Reshape, Shape, ...) are
evaluated here. BatchNormalization after a Conv, and an Add of a per-channel constant
after a Conv / Gemm / MatMul, are folded into that operator's weights and bias.

Anything not supported (operator, attribute value, dtype, dynamic shape) raises a
CompileError naming the operator, the node and the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CompileError
from .ir import Graph, Node, Tensor
from .ops import onnx_spec

NHWC = "nhwc"
ONNX = "onnx"
_TO_NHWC = (0, 2, 3, 1)
_TO_NCHW = (0, 3, 1, 2)

_ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 3: "int8", 2: "uint8"}


class Value:
    """Where an ONNX value lives in the IR: a tensor name and its layout."""

    def __init__(self, name: str, layout: str, onnx_shape: tuple[int, ...]) -> None:
        self.name = name
        self.layout = layout
        self.onnx_shape = onnx_shape


class Converter:
    """State of one ONNX -> IR conversion, and the context each op converter gets."""

    def __init__(self, model: Any, graph: Graph, path: Path, input_layout: str) -> None:
        self.model = model
        self.graph = graph
        self.path = path
        self.input_layout = input_layout
        self.consts: dict[str, Any] = {}  # ONNX name -> numpy array (not yet in the IR)
        self.values: dict[str, Value] = {}  # ONNX name -> IR tensor
        self.views: dict[tuple[str, str], str] = {}  # (IR name, layout) -> converted IR name
        self.producer: dict[str, Node] = {}  # IR tensor name -> node writing it
        self.uses: dict[str, int] = {}  # ONNX value -> number of reading nodes
        self.readers: dict[str, list[tuple[Any, int]]] = {}  # ONNX value -> [(node, input index)]
        self.flat_perm: dict[str, Any] = {}  # ONNX value -> NHWC-flat -> NCHW-flat index map
        self.outputs: set[str] = set()
        # the node being converted
        self.node: Any = None
        self.op_type = ""
        self.inputs: list[str] = []
        self.outputs_: list[str] = []
        self.attrs: dict[str, Any] = {}

    # --- errors --------------------------------------------------------------------
    def error(self, msg: str) -> CompileError:
        if self.node is None:
            return CompileError(f"{self.path.name}: {msg}")
        name = self.node.name or (self.node.output[0] if self.node.output else "?")
        return CompileError(f"{self.path.name}: ONNX operator {self.op_type} (node {name!r}): {msg}")

    # --- constants -----------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str, what: str = "input") -> Any:
        if name not in self.consts:
            raise self.error(f"{what} {name!r} must be a constant (initializer)")
        return self.consts[name]

    def set_const(self, name: str, array: Any) -> None:
        self.consts[name] = array

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    # --- IR tensors ----------------------------------------------------------------
    def onnx_shape(self, name: str) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(int(d) for d in self.consts[name].shape)
        if name in self.values:
            return self.values[name].onnx_shape
        raise self.error(f"input {name!r} is not produced by any earlier node")

    def _new_ir_name(self, base: str) -> str:
        return self.graph.unique_name(base)

    def _add_tensor(self, name: str, shape: tuple[int, ...], dtype: str = "float32", data: Any = None) -> str:
        name = self._new_ir_name(name)
        self.graph.add_tensor(Tensor(name, tuple(int(d) for d in shape), dtype, None, data))
        return name

    def ir_const(self, array: Any, base: str) -> str:
        """Materialise a numpy array as an IR constant; returns its IR name."""
        import numpy as np

        arr = np.ascontiguousarray(array)
        return self._add_tensor(base, arr.shape, str(arr.dtype), arr)

    def add_node(
        self, kind: str, inputs: list[str | None], outputs: list[str], attrs: dict[str, Any] | None = None
    ) -> Node:
        name = self.node.name if self.node is not None and self.node.name else outputs[0]
        node = Node(kind, name, list(inputs), list(outputs), dict(attrs or {}))
        node.attrs.setdefault("_source", f"ONNX {self.op_type}" if self.node is not None else "ONNX layout")
        self.graph.nodes.append(node)
        for o in outputs:
            self.producer[o] = node
        return node

    def value(self, name: str, layout: str | None = None) -> str:
        """The IR tensor holding ONNX value `name`, in `layout` (converted if needed);
        a constant is materialised in the requested layout."""
        import numpy as np

        if name in self.consts:
            arr = np.asarray(self.consts[name])
            if layout == NHWC and arr.ndim == 4:
                arr = np.transpose(arr, _TO_NHWC)
            key = ("const:" + name, layout or ONNX)
            if key not in self.views:
                self.views[key] = self.ir_const(np.ascontiguousarray(arr), name)
            return self.views[key]
        v = self.values.get(name)
        if v is None:
            raise self.error(f"input {name!r} is not produced by any earlier node")
        if layout is None or v.layout == layout or len(v.onnx_shape) != 4:
            return v.name
        key = (v.name, layout)
        if key in self.views:
            return self.views[key]
        perm = _TO_NHWC if layout == NHWC else _TO_NCHW
        src_shape = self.graph.t(v.name).shape
        dst_shape = tuple(src_shape[p] for p in perm)
        out = self._add_tensor(f"{v.name}_{layout}", dst_shape)
        self._transpose(v.name, out, perm)
        self.views[key] = out
        return out

    def _transpose(self, src: str, dst: str, perm: tuple[int, ...]) -> None:
        from .ops.transpose import is_trivial_permutation

        shape = self.graph.t(src).shape
        saved, self.node = self.node, None
        if is_trivial_permutation(shape, perm):
            self.add_node("RESHAPE", [src], [dst], {"shape": list(self.graph.t(dst).shape)})
        else:
            self.add_node("TRANSPOSE", [src], [dst], {"perm": tuple(perm)})
        self.node = saved

    def output(
        self, onnx_name: str, onnx_shape: tuple[int, ...], layout: str = ONNX, dtype: str = "float32"
    ) -> str:
        """Create the IR tensor for an ONNX output value of this node (4-D values may be
        kept NHWC; a model output kept NHWC gets a derived name, its ONNX name goes to the
        final NCHW copy)."""
        lay = layout if len(onnx_shape) == 4 else ONNX
        shape = tuple(onnx_shape[p] for p in _TO_NHWC) if lay == NHWC else tuple(onnx_shape)
        base = f"{onnx_name}_nhwc" if lay == NHWC and onnx_name in self.outputs else onnx_name
        name = self._add_tensor(base, shape, dtype)
        self.values[onnx_name] = Value(name, lay, tuple(int(d) for d in onnx_shape))
        return name

    def single_use(self, ir_name: str) -> bool:
        """True if the ONNX value stored in `ir_name` is read by exactly one node and is no model output."""
        for oname, v in self.values.items():
            if v.name == ir_name:
                return self.uses.get(oname, 0) == 1 and oname not in self.outputs
        return False

    # --- shared converters for specs' from_onnx -------------------------------------
    def pool(self, kind: str) -> None:
        """MaxPool / AveragePool -> a 2-D pooling node over NHWC."""
        x = self.inputs[0]
        shape = self.onnx_shape(x)
        if len(shape) != 4:
            raise self.error(f"only 2-D pooling of 4-D inputs is supported (input {list(shape)})")
        k = [int(v) for v in self.attr("kernel_shape", [])]
        if len(k) != 2:
            raise self.error(f"kernel_shape {k} is not 2-D")
        strides = [int(v) for v in self.attr("strides", [1, 1])]
        if int(self.attr("ceil_mode", 0)) != 0:
            raise self.error("ceil_mode=1 is not supported")
        if any(int(d) != 1 for d in self.attr("dilations", [1, 1])):
            raise self.error("dilated pooling is not supported")
        if len(self.outputs_) > 1 and self.outputs_[1]:
            raise self.error("the Indices output of MaxPool is not supported")
        pads, (oh, ow) = self.spatial_pads(shape[2:], k, strides, [1, 1])
        padding = tflite_padding_name(shape[2:], k, strides, [1, 1], pads)
        if max(pads[0], pads[2]) >= k[0] or max(pads[1], pads[3]) >= k[1]:
            raise self.error(f"pads {list(pads)} as large as the kernel {k} are not supported")
        attrs = pool_attrs(k, strides, pads, padding)
        if kind == "AVERAGE_POOL_2D" and int(self.attr("count_include_pad", 0)) and any(pads):
            # padded positions count as zeros in the divisor (TFLite never does this)
            attrs["count_include_pad"] = True
        out_shape = (shape[0], shape[1], oh, ow)
        y = self.output(self.outputs_[0], out_shape, NHWC)
        self.add_node(kind, [self.value(x, NHWC)], [y], attrs)

    def global_pool(self, kind: str) -> None:
        """GlobalAveragePool -> MEAN over H, W (keep dims)."""
        x = self.inputs[0]
        shape = self.onnx_shape(x)
        if len(shape) != 4:
            raise self.error(f"only 4-D inputs are supported (input {list(shape)})")
        y = self.output(self.outputs_[0], (shape[0], shape[1], 1, 1), NHWC)
        self.add_node(kind, [self.value(x, NHWC)], [y], {"axes": (1, 2), "keep_dims": True})

    def spatial_pads(
        self, in_hw: tuple[int, ...], k: list[int], strides: list[int], dilations: list[int]
    ) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """ONNX auto_pad / pads -> ((top, left, bottom, right), (out_h, out_w))."""
        auto = self.attr("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        eff = [(k[i] - 1) * dilations[i] + 1 for i in range(2)]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = [(in_hw[i] + strides[i] - 1) // strides[i] for i in range(2)]
            total = [max((out[i] - 1) * strides[i] + eff[i] - in_hw[i], 0) for i in range(2)]
            if auto == "SAME_UPPER":
                before = [t // 2 for t in total]
            else:
                before = [t - t // 2 for t in total]
            after = [total[i] - before[i] for i in range(2)]
        elif auto == "VALID":
            before, after = [0, 0], [0, 0]
            out = [(in_hw[i] - eff[i]) // strides[i] + 1 for i in range(2)]
        elif auto == "NOTSET":
            p = [int(v) for v in self.attr("pads", [0, 0, 0, 0])]
            if len(p) != 4:
                raise self.error(f"pads {p} are not 2-D")
            before, after = p[:2], p[2:]
            out = [(in_hw[i] + before[i] + after[i] - eff[i]) // strides[i] + 1 for i in range(2)]
        else:
            raise self.error(f"auto_pad={auto!r} is not supported")
        if any(o <= 0 for o in out):
            raise self.error(f"the output would be empty (input {list(in_hw)}, kernel {k})")
        return (before[0], before[1], after[0], after[1]), (out[0], out[1])


# ---------------------------------------------------------------------------------------
# IR attribute conventions of the operator kinds this frontend targets
# ---------------------------------------------------------------------------------------


def tflite_padding_name(
    in_hw: tuple[int, ...],
    k: list[int],
    strides: list[int],
    dilations: list[int],
    pads: tuple[int, int, int, int],
) -> str | None:
    """ "VALID" or "SAME" if explicit pads equal what TFLite's padding of that name gives
    (TFLite puts an odd extra pixel after), else None."""
    from .ops._common import out_size, pad_before

    if not any(pads):
        return "VALID"
    for i in range(2):
        eff = (k[i] - 1) * dilations[i] + 1
        out = out_size("SAME", in_hw[i], k[i], strides[i], dilations[i])
        before = pad_before(in_hw[i], k[i], strides[i], dilations[i], out)
        total = max((out - 1) * strides[i] + eff - in_hw[i], 0)
        if (pads[i], pads[i + 2]) != (before, total - before):
            return None
    return "SAME"


def pool_attrs(
    k: list[int], strides: list[int], pads: tuple[int, int, int, int], padding: str | None
) -> dict[str, Any]:
    """Attributes of MAX_POOL_2D / AVERAGE_POOL_2D nodes; padding None = explicit pads."""
    a: dict[str, Any] = {
        "filter": (k[0], k[1]),
        "stride": (strides[0], strides[1]),
        "padding": padding or "EXPLICIT",
        "activation": None,
    }
    if padding is None:
        a["pads"] = tuple(pads)
    return a


def conv_attrs(
    strides: list[int],
    dilations: list[int],
    padding: str | None,
    depth_multiplier: int | None = None,
    *,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> dict[str, Any]:
    """Attributes of CONV_2D / DEPTHWISE_CONV_2D nodes: TFLite's SAME / VALID where the
    pads are one of those, else "EXPLICIT" with pads (top, left, bottom, right), which the
    kernels take directly (no PAD operator, no padded copy of the input in the arena)."""
    a: dict[str, Any] = {
        "stride": (strides[0], strides[1]),
        "dilation": (dilations[0], dilations[1]),
        "padding": padding or "EXPLICIT",
        "activation": None,
    }
    if padding is None:
        a["pads"] = tuple(pads)
    if depth_multiplier is not None:
        a["depth_multiplier"] = depth_multiplier
    return a


# ---------------------------------------------------------------------------------------
# Converters for ONNX operators (those whose IR kind is not an ONNX-aware spec)
# ---------------------------------------------------------------------------------------


def _conv(c: Converter) -> None:
    import numpy as np

    x = c.inputs[0]
    shape = c.onnx_shape(x)
    if len(shape) != 4:
        raise c.error(f"only 2-D convolution of 4-D inputs is supported (input {list(shape)})")
    w = np.asarray(c.const(c.inputs[1], "weights"), np.float32)
    if w.ndim != 4:
        raise c.error(f"weights of shape {list(w.shape)} are not 4-D")
    m, cin_g, kh, kw = (int(d) for d in w.shape)
    group = int(c.attr("group", 1))
    strides = [int(v) for v in c.attr("strides", [1, 1])]
    dilations = [int(v) for v in c.attr("dilations", [1, 1])]
    ks = c.attr("kernel_shape")
    if ks is not None and [int(v) for v in ks] != [kh, kw]:
        raise c.error(f"kernel_shape {list(ks)} differs from the weights' {[kh, kw]}")
    bias = None
    if len(c.inputs) > 2 and c.inputs[2]:
        bias = np.asarray(c.const(c.inputs[2], "bias"), np.float32).reshape(-1)
    pads, (oh, ow) = c.spatial_pads(shape[2:], [kh, kw], strides, dilations)
    cin = shape[1]
    if bias is None:
        bias = np.zeros(m, np.float32)
    y = c.output(c.outputs_[0], (shape[0], m, oh, ow), NHWC)
    xin = c.value(x, NHWC)
    padding = tflite_padding_name(shape[2:], [kh, kw], strides, dilations, pads)
    if group == 1:
        if cin_g != cin:
            raise c.error(f"weights expect {cin_g} input channels, the input has {cin}")
        wt = np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)))  # OIHW -> OHWI
        c.add_node(
            "CONV_2D",
            [xin, c.ir_const(wt, c.inputs[1]), c.ir_const(bias, f"{y}_bias")],
            [y],
            conv_attrs(strides, dilations, padding, pads=pads),
        )
    elif group == cin and cin_g == 1 and m % cin == 0:
        wt = np.ascontiguousarray(np.transpose(w.reshape(m, kh, kw), (1, 2, 0))[None])  # [1,KH,KW,M]
        c.add_node(
            "DEPTHWISE_CONV_2D",
            [xin, c.ir_const(wt, c.inputs[1]), c.ir_const(bias, f"{y}_bias")],
            [y],
            conv_attrs(strides, dilations, padding, m // cin, pads=pads),
        )
    else:
        raise c.error(f"grouped convolution with group={group} (neither 1 nor depthwise) is not supported")


def _batchnorm(c: Converter) -> None:
    import numpy as np

    x = c.inputs[0]
    if len(c.outputs_) > 1 and any(c.outputs_[1:]):
        raise c.error("training-mode outputs (running mean / variance) are not supported")
    if int(c.attr("training_mode", 0)) != 0:
        raise c.error("training_mode=1 is not supported")
    gamma, beta, mean, var = (
        np.asarray(c.const(n, "parameter"), np.float64).reshape(-1) for n in c.inputs[1:5]
    )
    eps = float(c.attr("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    shape = c.onnx_shape(x)
    v = c.values.get(x)
    prod = c.producer.get(v.name) if v is not None else None
    if (
        prod is not None
        and prod.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")
        and c.single_use(v.name)
        and not prod.attrs.get("activation")
    ):
        # fold into the convolution: scale its output channels, adjust its bias
        wname, bname = prod.inputs[1], prod.inputs[2]
        wt = c.graph.t(wname)
        w = np.asarray(wt.data, np.float64)
        if prod.kind == "CONV_2D":
            w = w * scale.reshape(-1, 1, 1, 1)
        else:
            w = w * scale.reshape(1, 1, 1, -1)
        b = np.asarray(c.graph.t(bname).data, np.float64) * scale + shift
        prod.inputs[1] = c.ir_const(w.astype(np.float32), f"{wname}_bn")
        prod.inputs[2] = c.ir_const(b.astype(np.float32), f"{bname}_bn")
        c.values[c.outputs_[0]] = v
        return
    # otherwise: y = x * scale + shift per channel (axis 1)
    if len(shape) < 2:
        raise c.error(f"input of shape {list(shape)} has no channel axis")
    bshape = [1] * len(shape)
    bshape[1] = shape[1]
    layout = NHWC if len(shape) == 4 else ONNX
    xs = c.value(x, layout)
    sc, sh = scale.astype(np.float32).reshape(bshape), shift.astype(np.float32).reshape(bshape)
    if layout == NHWC:
        sc, sh = np.transpose(sc, _TO_NHWC), np.transpose(sh, _TO_NHWC)
    tmp = c._add_tensor(f"{c.outputs_[0]}_scaled", c.graph.t(xs).shape)
    c.add_node("MUL", [xs, c.ir_const(sc, f"{c.outputs_[0]}_bn_scale")], [tmp], {"activation": None})
    y = c.output(c.outputs_[0], shape, layout)
    c.add_node("ADD", [tmp, c.ir_const(sh, f"{c.outputs_[0]}_bn_shift")], [y], {"activation": None})


def _fc(c: Converter, x: str, w_kn: Any, bias: Any, out_name: str) -> None:
    """y[M, N] = x[M, K] @ w_kn[K, N] + bias as FULLY_CONNECTED (weights [N, K])."""
    import numpy as np

    xshape = c.onnx_shape(x)
    if len(xshape) < 2 or (c.op_type == "Gemm" and len(xshape) != 2):
        raise c.error(f"input of shape {list(xshape)} is not supported (2-D, or N-D for MatMul)")
    k, n = (int(d) for d in w_kn.shape)
    if xshape[-1] != k:
        raise c.error(f"input {list(xshape)} does not match weights [{k}, {n}]")
    if bias is None:
        bias = np.zeros(n, np.float32)
    # leading dimensions are batches: FULLY_CONNECTED over the innermost axis
    y = c.output(out_name, (*xshape[:-1], n), ONNX)
    if x in c.flat_perm:  # the input is flattened NHWC data: reorder the weights to match
        w_kn = np.asarray(w_kn)[c.flat_perm[x], :]
    wt = np.ascontiguousarray(np.asarray(w_kn, np.float32).T)
    c.add_node(
        "FULLY_CONNECTED",
        [
            c.value(x, ONNX),
            c.ir_const(wt, f"{y}_weights"),
            c.ir_const(np.asarray(bias, np.float32).reshape(n), f"{y}_bias"),
        ],
        [y],
        {"activation": None},
    )


def _matmul(c: Converter) -> None:
    import numpy as np

    a, b = c.inputs[:2]
    if not c.is_const(b):
        raise c.error("MatMul of two activations is not supported (the second input must be a constant)")
    w = np.asarray(c.const(b), np.float32)
    if w.ndim != 2:
        raise c.error(f"weights of shape {list(w.shape)} are not 2-D")
    _fc(c, a, w, None, c.outputs_[0])


def _gemm(c: Converter) -> None:
    import numpy as np

    a, b = c.inputs[:2]
    if int(c.attr("transA", 0)):
        raise c.error("transA=1 is not supported")
    alpha, beta = float(c.attr("alpha", 1.0)), float(c.attr("beta", 1.0))
    w = np.asarray(c.const(b, "B"), np.float32)
    if int(c.attr("transB", 0)):
        w = w.T
    w = (w * np.float32(alpha)).astype(np.float32) if alpha != 1.0 else w
    bias = None
    if len(c.inputs) > 2 and c.inputs[2]:
        cb = np.asarray(c.const(c.inputs[2], "C"), np.float32)
        n = w.shape[1]
        if cb.size == 1:
            cb = np.full(n, cb.reshape(-1)[0], np.float32)
        elif cb.size != n or (cb.ndim == 2 and cb.shape[0] != 1):
            raise c.error(f"bias C of shape {list(cb.shape)} is not a per-output vector")
        bias = (cb.reshape(n) * np.float32(beta)).astype(np.float32)
    _fc(c, a, w, bias, c.outputs_[0])


_BIAS_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _binary(c: Converter) -> None:
    import numpy as np

    kind = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}[c.op_type]
    a, b = c.inputs[:2]
    if int(c.attr("broadcast", 1)) == 0 and c.onnx_shape(a) != c.onnx_shape(b):
        raise c.error("shapes differ without broadcast")
    if c.attr("axis") is not None:
        raise c.error("legacy broadcast with an axis attribute is not supported")
    sa, sb = c.onnx_shape(a), c.onnx_shape(b)
    try:
        out_shape = tuple(int(d) for d in np.broadcast_shapes(sa, sb))
    except ValueError:
        raise c.error(f"shapes {list(sa)} and {list(sb)} do not broadcast") from None
    if c.is_const(a) and c.is_const(b):
        x, y = np.asarray(c.const(a), np.float32), np.asarray(c.const(b), np.float32)
        c.set_const(c.outputs_[0], {"ADD": x + y, "SUB": x - y, "MUL": x * y}[kind])
        return
    # Add of a per-channel constant right after a conv / FC: fold into its bias.
    if kind in ("ADD", "SUB") and c.is_const(b) and not c.is_const(a):
        v = c.values[a]
        prod = c.producer.get(v.name)
        cb = np.asarray(c.const(b), np.float32)
        if (
            prod is not None
            and prod.kind in _BIAS_OPS
            and c.single_use(v.name)
            and not prod.attrs.get("activation")
        ):
            ch = sa[1] if len(sa) >= 2 else sa[-1]
            per_channel = _per_channel_vector(cb, sa, 1 if prod.kind != "FULLY_CONNECTED" else len(sa) - 1)
            if per_channel is not None and out_shape == tuple(sa) and per_channel.size == ch:
                bt = c.graph.t(prod.inputs[2])
                delta = per_channel if kind == "ADD" else -per_channel
                prod.inputs[2] = c.ir_const(
                    (np.asarray(bt.data, np.float32) + delta).astype(np.float32), f"{prod.inputs[2]}_plus"
                )
                c.values[c.outputs_[0]] = v
                return
    layout = NHWC if len(out_shape) == 4 else ONNX
    ins = []
    for name, s in ((a, sa), (b, sb)):
        if c.is_const(name):
            arr = np.asarray(c.const(name), np.float32)
            if layout == NHWC:
                arr = np.transpose(arr.reshape((1,) * (4 - arr.ndim) + arr.shape), _TO_NHWC)
            ins.append(c.ir_const(np.ascontiguousarray(arr), name))
        elif len(s) == 4 or layout == ONNX:
            ins.append(c.value(name, layout))
        else:
            # a lower-rank activation broadcast against a 4-D one: work in ONNX layout
            layout = ONNX
            ins = [c.value(n, ONNX) if not c.is_const(n) else c.value(n) for n in (a, b)]
            break
    if layout == ONNX and len(out_shape) == 4:
        ins = [c.value(n, ONNX) for n in (a, b)]
    y = c.output(c.outputs_[0], out_shape, layout)
    c.add_node(kind, ins, [y], {"activation": None})


def _per_channel_vector(cb: Any, xshape: tuple[int, ...], axis: int) -> Any:
    """The values of a constant that varies only along `axis` of xshape, else None."""
    import numpy as np

    shape = (1,) * (len(xshape) - cb.ndim) + tuple(cb.shape)
    if len(shape) != len(xshape):
        return None
    if any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    v = cb.reshape(-1)
    if v.size == 1:
        return np.full(xshape[axis], v[0], np.float32)
    return v


def _clip(c: Converter) -> None:
    import numpy as np

    lo, hi = c.attr("min"), c.attr("max")
    if len(c.inputs) > 1 and c.inputs[1]:
        lo = float(np.asarray(c.const(c.inputs[1], "min")).reshape(-1)[0])
    if len(c.inputs) > 2 and c.inputs[2]:
        hi = float(np.asarray(c.const(c.inputs[2], "max")).reshape(-1)[0])
    lo = -3.4028234663852886e38 if lo is None else float(lo)
    hi = 3.4028234663852886e38 if hi is None else float(hi)
    x = c.inputs[0]
    shape = c.onnx_shape(x)
    layout = NHWC if len(shape) == 4 else ONNX
    if c.values.get(x) is not None and len(shape) == 4:
        layout = c.values[x].layout
    xin = c.value(x, layout)
    y = c.output(c.outputs_[0], shape, layout)
    named = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, 3.4028234663852886e38): "RELU"}
    kind = named.get((lo, hi))
    if kind is not None:
        c.add_node(kind, [xin], [y])
    else:
        c.add_node("CLIP", [xin], [y], {"min": lo, "max": hi})


def _elementwise_same_layout(kind: str) -> Callable[[Converter], None]:
    """A unary element-wise op: works in whatever layout its input already has."""

    def conv(c: Converter) -> None:
        x = c.inputs[0]
        shape = c.onnx_shape(x)
        layout = c.values[x].layout if x in c.values else ONNX
        xin = c.value(x, layout)
        y = c.output(c.outputs_[0], shape, layout)
        c.add_node(kind, [xin], [y])

    return conv


def _reshape_to(c: Converter, x: str, new_shape: tuple[int, ...]) -> None:
    import numpy as np

    if c.is_const(x):
        c.set_const(c.outputs_[0], np.asarray(c.const(x)).reshape(new_shape))
        return
    shape = c.onnx_shape(x)
    if int(np.prod(shape)) != int(np.prod(new_shape)):
        raise c.error(f"cannot reshape {list(shape)} to {list(new_shape)}")
    v = c.values.get(x)
    if (v is not None and v.layout == NHWC and len(new_shape) == 2 and new_shape[0] == shape[0]
            and shape[1] > 1 and shape[2] * shape[3] > 1 and _only_fc_readers(c, c.outputs_[0])):
        # Flatten of NHWC data feeding only fully connected layers: keep the NHWC order
        # and permute the weights' rows instead of transposing the activations.
        import numpy as np

        _, ch, h, w = shape
        y = c.output(c.outputs_[0], new_shape, ONNX)
        c.add_node("RESHAPE", [v.name], [y], {"shape": list(new_shape)})
        c.flat_perm[c.outputs_[0]] = np.arange(ch * h * w).reshape(ch, h, w).transpose(1, 2, 0).reshape(-1)
        return
    xin = c.value(x, ONNX)  # data in ONNX order (a transpose if it was NHWC with C>1)
    y = c.output(c.outputs_[0], new_shape, ONNX)
    c.add_node("RESHAPE", [xin], [y], {"shape": list(c.graph.t(y).shape)})


def _only_fc_readers(c: Converter, name: str) -> bool:
    """True if every reader of ONNX value `name` is a MatMul / Gemm taking it as the
    (untransposed) first input with constant weights, and it is no model output."""
    readers = c.readers.get(name, [])
    if not readers or name in c.outputs:
        return False
    for node, idx in readers:
        if node.op_type not in ("MatMul", "Gemm") or idx != 0 or len(node.input) < 2:
            return False
        if node.input[1] not in c.consts:
            return False
        if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
            return False
    return True


def _reshape(c: Converter) -> None:
    import numpy as np

    x = c.inputs[0]
    if len(c.inputs) > 1:
        target = [int(v) for v in np.asarray(c.const(c.inputs[1], "shape")).reshape(-1)]
    else:
        target = [int(v) for v in c.attr("shape", [])]
    shape = c.onnx_shape(x)
    allowzero = int(c.attr("allowzero", 0))
    out = []
    for i, d in enumerate(target):
        out.append(shape[i] if d == 0 and not allowzero else d)
    if out.count(-1) > 1:
        raise c.error(f"shape {target} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // max(known, 1)
    _reshape_to(c, x, tuple(out))


def _flatten(c: Converter) -> None:
    import numpy as np

    x = c.inputs[0]
    shape = c.onnx_shape(x)
    axis = int(c.attr("axis", 1)) % (len(shape) + 1) if shape else 0
    _reshape_to(c, x, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))


def _identity(c: Converter) -> None:
    x = c.inputs[0]
    if c.is_const(x):
        c.set_const(c.outputs_[0], c.const(x))
    else:
        c.values[c.outputs_[0]] = c.values[x]
        if c.outputs_[0] in c.outputs:
            _reshape_to(c, x, c.onnx_shape(x))


def _dropout(c: Converter) -> None:
    if len(c.outputs_) > 1 and c.outputs_[1]:
        raise c.error("the mask output of Dropout is not supported")
    _identity(c)


def _transpose(c: Converter) -> None:
    import numpy as np

    x = c.inputs[0]
    shape = c.onnx_shape(x)
    perm = tuple(int(p) for p in c.attr("perm", list(range(len(shape)))[::-1]))
    if c.is_const(x):
        c.set_const(c.outputs_[0], np.transpose(np.asarray(c.const(x)), perm))
        return
    out_shape = tuple(shape[p] for p in perm)
    xin = c.value(x, ONNX)
    y = c.output(c.outputs_[0], out_shape, ONNX)
    c._transpose(xin, y, perm)


def _softmax(c: Converter) -> None:
    import numpy as np

    x = c.inputs[0]
    shape = c.onnx_shape(x)
    opset = c.opset
    axis = int(c.attr("axis", -1 if opset >= 13 else 1)) % len(shape)
    layout = ONNX
    if opset < 13:
        # coerced to 2-D [prod(:axis), prod(axis:)]: a softmax over the trailing block
        inner = int(np.prod(shape[axis:]))
        if inner != shape[-1] and not (len(shape) == 4 and axis == 1 and shape[2] * shape[3] == 1):
            raise c.error(
                f"softmax over the flattened axes {list(range(axis, len(shape)))} of "
                f"{list(shape)} is not supported"
            )
        if len(shape) == 4 and axis == 1 and shape[2] * shape[3] == 1:
            layout = NHWC
    else:
        if axis == len(shape) - 1:
            layout = ONNX
        elif len(shape) == 4 and axis == 1:
            layout = NHWC  # channels are the innermost axis in NHWC
        else:
            raise c.error(f"softmax over axis {axis} of {list(shape)} is not supported (only the last axis)")
    xin = c.value(x, layout)
    y = c.output(c.outputs_[0], shape, layout)
    c.add_node("SOFTMAX", [xin], [y], {"beta": 1.0})


def _constant(c: Converter) -> None:
    import numpy as np
    from onnx import numpy_helper

    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in c.attrs:
            v = c.attrs[key]
            arr = numpy_helper.to_array(v) if hasattr(v, "dims") else np.asarray(v)
            if key.endswith("float") or key.endswith("floats"):
                arr = arr.astype(np.float32)
            c.set_const(c.outputs_[0], arr)
            return
    raise c.error("Constant without a supported value attribute")


def _shape(c: Converter) -> None:
    import numpy as np

    c.set_const(c.outputs_[0], np.asarray(c.onnx_shape(c.inputs[0]), np.int64))


def _const_only(fn: Callable[..., Any]) -> Callable[[Converter], None]:
    """Shape-arithmetic ops evaluated at compile time when all inputs are constants."""

    def conv(c: Converter) -> None:
        if not all(c.is_const(n) for n in c.inputs if n):
            raise c.error("only supported on constant inputs (it is folded at compile time)")
        c.set_const(c.outputs_[0], fn(c, *[c.const(n) if n else None for n in c.inputs]))

    return conv


def _unsqueeze(c: Converter, x: Any, axes: Any = None) -> Any:
    import numpy as np

    axes = [int(a) for a in (np.asarray(axes).reshape(-1) if axes is not None else c.attr("axes", []))]
    out = np.asarray(x)
    rank = out.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze(c: Converter, x: Any, axes: Any = None) -> Any:
    import numpy as np

    axes = axes if axes is not None else c.attr("axes")
    arr = np.asarray(x)
    if axes is None:
        return np.squeeze(arr)
    return np.squeeze(arr, axis=tuple(int(a) % arr.ndim for a in np.asarray(axes).reshape(-1)))


def _squeeze_like(c: Converter, fn: Callable[..., Any]) -> None:
    """Squeeze / Unsqueeze: folded on constants, an alias (RESHAPE) on activations."""
    import numpy as np

    axes = c.const(c.inputs[1], "axes") if len(c.inputs) > 1 and c.inputs[1] else None
    x = c.inputs[0]
    if c.is_const(x):
        c.set_const(c.outputs_[0], fn(c, c.const(x), axes))
        return
    new_shape = fn(c, np.zeros(c.onnx_shape(x), np.uint8), axes).shape
    _reshape_to(c, x, tuple(int(d) for d in new_shape))


def _div(c: Converter) -> None:
    """Div by a constant: a multiplication by its reciprocal (within float tolerance)."""
    import numpy as np

    a, b = c.inputs[:2]
    if c.is_const(a) and c.is_const(b):
        c.set_const(c.outputs_[0], np.asarray(c.const(a), np.float32) / np.asarray(c.const(b), np.float32))
        return
    if not c.is_const(b):
        raise c.error("division by a non-constant is not supported")
    divisor = np.asarray(c.const(b), np.float32)
    if np.any(divisor == 0):
        raise c.error("division by a constant containing zero")
    recip = f"{b}__reciprocal"
    c.set_const(recip, (np.float32(1.0) / divisor).astype(np.float32))
    c.inputs = [a, recip]
    c.op_type = "Mul"
    _binary(c)
    c.op_type = "Div"


def _gather(c: Converter, x: Any, idx: Any) -> Any:
    import numpy as np

    return np.take(np.asarray(x), np.asarray(idx), axis=int(c.attr("axis", 0)))


def _concat_const(c: Converter, *xs: Any) -> Any:
    import numpy as np

    return np.concatenate([np.asarray(x) for x in xs], axis=int(c.attr("axis", 0)))


def _cast(c: Converter, x: Any) -> Any:
    import numpy as np

    to = _ONNX_DTYPES.get(int(c.attr("to", 1)))
    if to is None:
        raise c.error(f"Cast to ONNX type {c.attr('to')} is not supported")
    return np.asarray(x).astype(to)


def _concat(c: Converter) -> None:
    import numpy as np

    ins = [n for n in c.inputs if n]
    if all(c.is_const(n) for n in ins):
        c.set_const(c.outputs_[0], _concat_const(c, *[c.const(n) for n in ins]))
        return
    shapes = [c.onnx_shape(n) for n in ins]
    rank = len(shapes[0])
    axis = int(c.attr("axis", 1)) % rank
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    layout = NHWC if rank == 4 else ONNX
    ir_axis = _TO_NHWC.index(axis) if layout == NHWC else axis
    xs = []
    for n in ins:
        if c.is_const(n):
            arr = np.asarray(c.const(n), np.float32)
            arr = np.transpose(arr, _TO_NHWC) if layout == NHWC else arr
            xs.append(c.ir_const(np.ascontiguousarray(arr), n))
        else:
            xs.append(c.value(n, layout))
    y = c.output(c.outputs_[0], tuple(out_shape), layout)
    c.add_node("CONCATENATION", xs, [y], {"axis": ir_axis})


CONVERTERS: dict[str, Callable[[Converter], None]] = {
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Clip": _clip,
    "Relu": _elementwise_same_layout("RELU"),
    "Sigmoid": _elementwise_same_layout("LOGISTIC"),
    "Tanh": _elementwise_same_layout("TANH"),
    "MaxPool": lambda c: c.pool("MAX_POOL_2D"),
    "AveragePool": lambda c: c.pool("AVERAGE_POOL_2D"),
    "GlobalAveragePool": lambda c: c.global_pool("MEAN"),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Softmax": _softmax,
    "Transpose": _transpose,
    "Identity": _identity,
    "Dropout": _dropout,
    "Concat": _concat,
    "Constant": _constant,
    "Shape": _shape,
    "Unsqueeze": lambda c: _squeeze_like(c, _unsqueeze),
    "Squeeze": lambda c: _squeeze_like(c, _squeeze),
    "Div": _div,
    "Gather": _const_only(_gather),
    "Cast": _const_only(_cast),
}


def load(path: str | Path, input_layout: str = "NCHW") -> Graph:
    """Parse an ONNX model into an IR graph (float32; NHWC inside, see module doc)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - onnx is a declared dependency
        raise CompileError(f"{path}: reading ONNX models needs the 'onnx' package ({e})") from None

    path = Path(path)
    layout = (input_layout or "NCHW").upper()
    if layout not in ("NCHW", "NHWC"):
        raise CompileError(f"{path}: --input-layout must be NCHW or NHWC, not {input_layout!r}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises assorted errors on garbage
        raise CompileError(f"{path}: not a valid ONNX model ({e})") from None
    g = model.graph
    opset = 1
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    graph = Graph(name=path.name)
    c = Converter(model, graph, path, layout)
    c.opset = opset  # type: ignore[attr-defined]
    for init in g.initializer:
        c.consts[init.name] = numpy_helper.to_array(init)
    for node in g.node:
        for k, i in enumerate(node.input):
            if i:
                c.uses[i] = c.uses.get(i, 0) + 1
                c.readers.setdefault(i, []).append((node, k))
    c.outputs = {o.name for o in g.output}
    for o in g.output:
        c.uses[o.name] = c.uses.get(o.name, 0) + 1

    for inp in g.input:
        if inp.name in c.consts:
            continue  # IR v3 lists initializers as inputs too
        tt = inp.type.tensor_type
        dtype = _ONNX_DTYPES.get(tt.elem_type)
        if dtype != "float32":
            raise CompileError(
                f"{path}: input {inp.name!r} has element type "
                f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; "
                "only float32 models are supported"
            )
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif i == 0:
                dims.append(1)  # a symbolic batch dimension: compiled for batch 1
            else:
                raise CompileError(
                    f"{path}: input {inp.name!r} has a dynamic dimension {i} "
                    f"({d.dim_param or '?'}); only static shapes are supported"
                )
        shape = tuple(dims)
        if len(shape) == 4 and layout == "NHWC":
            graph.add_tensor(Tensor(inp.name, tuple(shape[p] for p in _TO_NHWC), "float32"))
            c.values[inp.name] = Value(inp.name, NHWC, shape)
        else:
            graph.add_tensor(Tensor(inp.name, shape, "float32"))
            c.values[inp.name] = Value(inp.name, ONNX, shape)
        graph.inputs.append(inp.name)

    for node in g.node:
        c.node, c.op_type = node, node.op_type
        c.inputs, c.outputs_ = list(node.input), list(node.output)
        c.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.domain not in ("", "ai.onnx"):
            raise c.error(f"operators of domain {node.domain!r} are not supported")
        conv = CONVERTERS.get(node.op_type)
        if conv is None:
            spec = onnx_spec(node.op_type)
            if spec is None:
                raise c.error("operator is not supported by the built-in compiler")
            spec.from_onnx(c)
        else:
            conv(c)
        for o in node.output:
            if o and o not in c.values and o not in c.consts:
                raise c.error(f"output {o!r} was not produced (internal error)")
            if o in c.values and graph.t(c.values[o].name).dtype != "float32":
                raise c.error(f"output {o!r} is {graph.t(c.values[o].name).dtype}; only float32 is supported")
    c.node = None

    for o in g.output:
        if o.name in c.consts:
            raise CompileError(f"{path}: output {o.name!r} is a constant; nothing to compute")
        v = c.values[o.name]
        if v.layout == NHWC and len(v.onnx_shape) == 4:
            if v.name == o.name:  # pragma: no cover - output() names NHWC outputs apart
                raise CompileError(f"{path}: internal error: output {o.name!r} kept in NHWC")
            dst = o.name if o.name not in graph.tensors else graph.unique_name(o.name)
            graph.add_tensor(Tensor(dst, v.onnx_shape, "float32"))
            c._transpose(v.name, dst, _TO_NCHW)
            graph.outputs.append(dst)
        elif v.name != o.name or v.name in graph.inputs:
            # the value lives under another IR name (folded op, identity): give the output its name
            dst = o.name if o.name not in graph.tensors else graph.unique_name(o.name)
            graph.add_tensor(Tensor(dst, graph.t(v.name).shape, "float32"))
            c.add_node(
                "RESHAPE",
                [v.name],
                [dst],
                {"shape": list(graph.t(v.name).shape), "_copy": v.name in graph.inputs},
            )
            graph.outputs.append(dst)
        else:
            graph.outputs.append(v.name)
    return graph
