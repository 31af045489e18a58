"""Graph passes run between a frontend and the memory planner.

Order matters: operators are checked first (so an unsupported operator, attribute or
dtype is a CompileError naming the operator, node and model, never wrong code), then
constants are folded (work done once at compile time instead of on every inference),
then standalone activations are fused into the producing operator's clamp, zero PADs
into the convolution or pool reading them (explicit padding), a tiling float max pool
into the convolution before it, and finally everything no output depends on is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import CompileError
from .ir import Graph, Node
from .ops import REGISTRY, load_all, spec


def node_error(graph: Graph, node: Node) -> Callable[[str], CompileError]:
    def err(msg: str) -> CompileError:
        src = node.attrs.get("_source")
        extra = f", {src}" if src else ""
        return CompileError(f"{graph.name}: operator {node.kind} (node {node.name!r}{extra}): {msg}")

    return err


def check_ops(graph: Graph) -> None:
    load_all()
    for node in graph.nodes:
        if node.kind not in REGISTRY:
            raise node_error(graph, node)("operator is not supported by the built-in compiler")
        for name in [*node.inputs, *node.outputs]:
            if name is not None and graph.t(name).dtype.startswith("unsupported:"):
                raise node_error(graph, node)(
                    f"tensor {name!r} has unsupported type {graph.t(name).dtype[12:]}"
                )
        spec(node.kind).check(node, graph, node_error(graph, node))


def fold_constants(graph: Graph) -> int:
    """Evaluate nodes whose inputs are all constants; their outputs become constants."""
    import numpy as np

    folded = 0
    kept: list[Node] = []
    for node in graph.nodes:
        ins = [graph.t(i) for i in node.inputs if i is not None]
        if ins and all(t.is_const for t in ins) and not any(o in graph.outputs for o in node.outputs):
            values = spec(node.kind).fold(node, graph)
            if values is not None:
                for name, v in zip(node.outputs, values, strict=False):
                    t = graph.t(name)
                    t.data = np.asarray(v).astype(t.dtype).reshape(t.shape)
                folded += 1
                continue
        kept.append(node)
    graph.nodes = kept
    return folded


def fuse_activations(graph: Graph) -> int:
    """Merge a standalone RELU / RELU6 / RELU_N1_TO_1 into the clamp of its producer."""
    fused = 0
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            act = spec(node.kind).activation
            if act is None or node.inputs[0] is None:
                continue
            src = node.inputs[0]
            prod = graph.producer(src)
            if prod is None or not spec(prod.kind).fuses_activation or prod.attrs.get("activation"):
                continue
            if src in graph.outputs or len(graph.consumers(src)) != 1:
                continue
            a, b = graph.t(src), graph.t(node.outputs[0])
            if a.dtype != b.dtype or a.shape != b.shape:
                continue
            if (a.quant is None) != (b.quant is None) or (
                a.quant is not None
                and b.quant is not None
                and (a.quant.scale != b.quant.scale or a.quant.zero_point != b.quant.zero_point)
            ):
                continue
            prod.outputs = [node.outputs[0] if o == src else o for o in prod.outputs]
            prod.attrs["activation"] = act
            graph.nodes.remove(node)
            fused += 1
            changed = True
            break
    return fused


def fuse_pads(graph: Graph) -> int:
    """Merge a spatial zero PAD into the one convolution (or float VALID average pool) that
    reads it, as explicit padding of that operator.

    Why: a PAD before a VALID convolution (how converters express PyTorch-style padding)
    costs a padded copy of the activation in the arena and a pass over it; the kernels
    treat out-of-bounds taps exactly as the padded values (the zero point for int8, 0.0 for
    float), so the result is identical. A float average pool over zero padding divides by
    the whole window: count_include_pad."""
    from .ops._common import window_padding

    fused = 0
    for pad in list(graph.nodes):
        if pad.kind != "PAD" or pad.inputs[0] is None:
            continue
        x, p = pad.inputs[0], pad.outputs[0]
        pads = [tuple(int(v) for v in ab) for ab in pad.attrs["pads"]]
        xt = graph.t(x)
        if len(pads) != 4 or pads[0] != (0, 0) or pads[3] != (0, 0):
            continue
        if xt.dtype == "float32" and float(pad.attrs.get("value", 0.0)) != 0.0:
            continue
        if p in graph.outputs or len(graph.consumers(p)) != 1:
            continue
        (c,) = graph.consumers(p)
        if c.inputs[0] != p or list(c.inputs).count(p) != 1:
            continue
        pt = graph.t(p)
        if xt.dtype == "int8" and (
            xt.quant is None or pt.quant is None or (xt.scale, xt.zero_point) != (pt.scale, pt.zero_point)
        ):
            continue  # the convolution's multipliers must not change by a hair
        attrs = dict(c.attrs)
        err = node_error(graph, c)
        if c.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            k = tuple(int(v) for v in graph.t(c.inputs[1]).shape[1:3])
            stride, dilation = attrs.get("stride", (1, 1)), attrs.get("dilation", (1, 1))
            _, cur = window_padding(attrs, (pt.shape[1], pt.shape[2]), k, stride, dilation, err)
        elif c.kind == "AVERAGE_POOL_2D" and xt.dtype == "float32" and attrs.get("padding") == "VALID":
            kh, kw = attrs["filter"]
            if max(pads[1]) >= kh or max(pads[2]) >= kw:
                continue
            cur = (0, 0, 0, 0)
            attrs["count_include_pad"] = True
        else:
            continue
        attrs["padding"] = "EXPLICIT"
        attrs["pads"] = (cur[0] + pads[1][0], cur[1] + pads[2][0], cur[2] + pads[1][1], cur[3] + pads[2][1])
        old_inputs, old_attrs = list(c.inputs), c.attrs
        c.inputs = [x, *c.inputs[1:]]
        c.attrs = attrs
        try:
            spec(c.kind).check(c, graph, err)
        except CompileError:
            c.inputs, c.attrs = old_inputs, old_attrs
            continue
        graph.nodes.remove(pad)
        fused += 1
    return fused


def fuse_conv_max_pool(graph: Graph) -> int:
    """Merge a MAX_POOL_2D whose windows tile its input (stride = filter, no padding) into
    the float32 CONV_2D that produces that input (attrs["pool"]).

    Why: conv -> max pool is the commonest CNN pattern, and the convolution's output is the
    largest tensor of such models (mnist-8: 25 KB of its 25 KB arena); fused, the kernel
    computes one convolution row at a time into a row of scratch and only the pooled
    output is stored (and rows / columns the pool drops are never computed)."""
    fused = 0
    for pool in list(graph.nodes):
        if pool.kind != "MAX_POOL_2D" or pool.inputs[0] is None:
            continue
        src = pool.inputs[0]
        conv = graph.producer(src)
        if conv is None or conv.kind != "CONV_2D" or conv.attrs.get("pool") is not None:
            continue
        if graph.t(src).dtype != "float32" or src in graph.outputs or len(graph.consumers(src)) != 1:
            continue
        fh, fw = (int(v) for v in pool.attrs["filter"])
        padding = pool.attrs.get("padding", "VALID")
        unpadded = padding == "VALID" or (padding == "EXPLICIT" and not any(pool.attrs.get("pads", ())))
        if tuple(pool.attrs.get("stride", (1, 1))) != (fh, fw) or not unpadded:
            continue
        old_outputs, old_attrs = list(conv.outputs), conv.attrs
        conv.outputs = [pool.outputs[0], *conv.outputs[1:]]
        conv.attrs = {**conv.attrs, "pool": {"filter": (fh, fw), "activation": pool.attrs.get("activation")}}
        try:
            spec(conv.kind).check(conv, graph, node_error(graph, conv))
        except CompileError:
            conv.outputs, conv.attrs = old_outputs, old_attrs
            continue
        graph.nodes.remove(pool)
        fused += 1
    return fused


def run_passes(graph: Graph) -> Graph:
    check_ops(graph)
    fold_constants(graph)
    fuse_activations(graph)
    fuse_pads(graph)
    fuse_conv_max_pool(graph)
    graph.prune()
    if not graph.nodes and graph.outputs:
        raise CompileError(f"{graph.name}: the model computes nothing (no operator reaches an output)")
    return graph
