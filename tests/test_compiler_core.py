"""The compiler's core pieces on their own: fixed-point arithmetic, quantisation parameters,
the arena planner, and the portable (non-SSE2) kernel paths against TFLite Micro."""

from __future__ import annotations

import ctypes
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from compiler_harness import TFLM, CompiledModel, random_inputs  # noqa: E402
from conftest import SHARED_MODELS  # noqa: E402
from model_builders import TFLiteBuilder  # noqa: E402

from microtvm_tasks.compiler import compile_to_members, load_model  # noqa: E402
from microtvm_tasks.compiler.emit_c import kernel_source  # noqa: E402
from microtvm_tasks.compiler.ir import Graph, Node, Quant, Tensor  # noqa: E402
from microtvm_tasks.compiler.memory import ALIGN, plan_memory  # noqa: E402
from microtvm_tasks.compiler.ops import spec  # noqa: E402
from microtvm_tasks.compiler.ops.conv_2d import conv_geometry  # noqa: E402
from microtvm_tasks.compiler.passes import run_passes  # noqa: E402
from microtvm_tasks.compiler.quant import quantize_multiplier, sse2_rmul  # noqa: E402

# ------------------------------------------------------------------------------------------
# fixed point: the C helpers against a Python transcription of TFLite's reference arithmetic
# ------------------------------------------------------------------------------------------


def _srdhm(a: int, b: int) -> int:
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    q = ab + ((1 << 30) if ab >= 0 else (1 - (1 << 30)))
    return abs(q) // (1 << 31) * (1 if q >= 0 else -1)  # C division truncates toward zero


def _rdbypot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def _wrap32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _mbqm(x: int, m: int, s: int) -> int:
    left, right = (s, 0) if s > 0 else (0, -s)
    return _rdbypot(_srdhm(_wrap32(x << left), m), right)


_FIXEDPOINT_C = r"""
#include <stdint.h>
#include <float.h>
#include <math.h>
%(common)s
%(dot)s
void t_mbqm(const int32_t* x, const int32_t* m, const int32_t* s, int32_t* out, int n) {
  int i;
  for (i = 0; i < n; ++i) out[i] = mt_mbqm(x[i], m[i], s[i]);
}
int t_requant4(const int32_t* x, const int32_t* m, const uint32_t* r, int32_t* out, int n) {
#if defined(__SSE2__)
  int i;
  for (i = 0; i + 4 <= n; i += 4) {
    __m128i v = mt_requant4(_mm_loadu_si128((const __m128i*)(const void*)(x + i)),
                            _mm_loadu_si128((const __m128i*)(const void*)(m + i)),
                            _mm_loadu_si128((const __m128i*)(const void*)(r + i)));
    _mm_storeu_si128((__m128i*)(void*)(out + i), v);
  }
  return 1;
#else
  (void)x; (void)m; (void)r; (void)out; (void)n;
  return 0;
#endif
}
"""


@pytest.fixture(scope="module")
def fixedpoint_lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("fixedpoint")
    src = d / "fp.c"
    src.write_text(_FIXEDPOINT_C % {"common": kernel_source("mt_common.h"), "dot": kernel_source("dot_s8.h")})
    lib = d / "libfp.so"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            str(src),
            "-o",
            str(lib),
        ],
        check=True,
        timeout=120,
    )
    return ctypes.CDLL(str(lib))


def _cases(n: int, shifts: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.integers(-(2**31), 2**31, n // 2, dtype=np.int64),
            rng.integers(-70000, 70000, n // 2, dtype=np.int64),
        ]
    )
    x[:8] = [-(2**31), 2**31 - 1, 0, -1, 1, -(2**30), 2**30, -(2**30) - 1]
    m = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    m[:4] = [2**31 - 1, 1 << 30, 0, 1 << 30]
    s = rng.integers(shifts[0], shifts[1] + 1, n, dtype=np.int64)
    return x.astype(np.int32), m.astype(np.int32), s.astype(np.int32)


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def test_mbqm_matches_tflite_reference(fixedpoint_lib):
    x, m, s = _cases(20000, (-31, 7))
    m[1::3] = -m[1::3]  # kernels such as SUB may pass negated multipliers
    out = np.zeros_like(x)
    fixedpoint_lib.t_mbqm(_ptr(x), _ptr(m), _ptr(s), _ptr(out), len(x))
    want = [_mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, m, s, strict=True)]
    assert out.tolist() == want


def test_sse2_requant_matches_tflite_reference(fixedpoint_lib):
    x, m, s = _cases(20000, (-31, -1))
    rmul = sse2_rmul(s.tolist())
    assert rmul is not None
    out = np.zeros_like(x)
    if not fixedpoint_lib.t_requant4(_ptr(x), _ptr(m), _ptr(rmul), _ptr(out), len(x)):
        pytest.skip("host compiler has no SSE2")
    want = [_mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, m, s, strict=True)]
    assert out.tolist() == want
    assert sse2_rmul([0, -3]) is None and sse2_rmul([1]) is None  # those layers stay scalar


def test_quantize_multiplier():
    for real in [1e-9, 0.0003, 0.25, 0.5, 0.7071, 0.99999999999, 1.0, 1.5, 3.9, 1234.5]:
        m, s = quantize_multiplier(real)
        assert (1 << 30) <= m < (1 << 31)
        assert math.isclose(m * 2.0 ** (s - 31), real, rel_tol=1e-9)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # shifts below -31 flush to zero, as in TFLite
    # rounding up to exactly 2^31 renormalises
    m, s = quantize_multiplier(1.0 - 2.0**-40)
    assert (m, s) == (1 << 30, 1)


# ------------------------------------------------------------------------------------------
# memory planning
# ------------------------------------------------------------------------------------------


def _chain_graph(sizes: list[int], alias_at: int | None = None) -> Graph:
    """input -> op0 -> t0 -> op1 -> t1 ... -> output, int8 tensors of the given sizes."""
    g = Graph("chain")
    names = ["in"] + [f"t{i}" for i in range(len(sizes) - 2)] + ["out"]
    for n, size in zip(names, sizes, strict=True):
        g.add_tensor(Tensor(n, (1, size), "int8", Quant([0.1], [0])))
    for i in range(len(names) - 1):
        kind = "RESHAPE" if i == alias_at else "SOFTMAX"
        g.nodes.append(Node(kind, f"op{i}", [names[i]], [names[i + 1]]))
    g.inputs, g.outputs = ["in"], ["out"]
    return g


def test_planner_reuses_memory_and_aligns():
    g = _chain_graph([10, 100, 30, 100, 7])
    plan = plan_memory(g)
    assert plan.storage["in"].kind == "input" and plan.storage["out"].kind == "output"
    offs = {n: plan.storage[n].offset for n in ("t0", "t1", "t2")}
    assert all(o % ALIGN == 0 for o in offs.values())
    # t0 and t2 are never alive together: they share; t1 sits beside them
    assert offs["t0"] == offs["t2"]
    assert plan.arena_size == 112 + 32  # 100 -> 112 (aligned), 30 -> 32


def test_planner_alias_shares_storage_and_copies_between_caller_buffers():
    g = _chain_graph([16, 16, 16], alias_at=1)  # in -> softmax -> t0 -> reshape -> out
    plan = plan_memory(g)
    assert plan.storage["t0"].kind == "output"  # the producer writes straight into the output
    assert plan.arena_size == 0
    g2 = _chain_graph([16, 16], alias_at=0)  # in -> reshape -> out: two caller buffers
    plan_memory(g2)
    assert g2.nodes[0].attrs.get("_copy") is True


def _assert_no_live_overlap(graph: Graph, plan) -> None:
    """Any two arena buffers (tensors of different storage groups, scratch) alive at the same
    node occupy disjoint bytes."""
    spans: dict[str, tuple[int, int]] = {}
    for i, node in enumerate(graph.nodes):
        for n in [*node.inputs, *node.outputs]:
            if n is not None and plan.storage.get(n) is not None and plan.storage[n].kind == "arena":
                f, la = spans.get(n, (i, i))
                spans[n] = (min(f, i), max(la, i))
    bufs = [
        (f, la, plan.storage[n].offset, graph.t(n).nbytes, plan.storage[n].ref)
        for n, (f, la) in spans.items()
    ]
    bufs += [(i, i, off, 1, f"scratch{i}") for i, off in plan.scratch.items()]
    for i, (f1, l1, o1, s1, g1) in enumerate(bufs):
        assert o1 + s1 <= plan.arena_size and o1 % ALIGN == 0
        for f2, l2, o2, s2, g2 in bufs[i + 1 :]:
            if g1 != g2 and not (l1 < f2 or l2 < f1):
                assert o1 + s1 <= o2 or o2 + s2 <= o1, (g1, g2)


def test_planner_beats_tflm_on_kws_and_tvm_on_mnist():
    models = Path(__file__).resolve().parents[1] / "models"
    g = run_passes(load_model(models / "kws.tflite"))
    plan = plan_memory(g)
    assert plan.arena_size < 16000  # TFLite Micro's arena head for this model
    _assert_no_live_overlap(g, plan)
    mnist = SHARED_MODELS / "mnist-8.onnx"
    if mnist.exists():
        g = run_passes(load_model(mnist))
        plan = plan_memory(g)
        assert plan.arena_size < 31360  # TVM 0.18's workspace for this model
        _assert_no_live_overlap(g, plan)


def _live_lower_bound(graph: Graph, plan) -> int:
    """The most bytes alive at any one node for this plan's storage groups (an in-place
    group counts its larger member once, a scratch buffer at its node): no placement of
    these buffers can use a smaller arena."""
    live = [0] * len(graph.nodes)
    for segs in plan.segments.values():
        for i in range(len(graph.nodes)):
            sizes = [z for f, la, z in segs if f <= i <= la]
            if sizes:
                live[i] += max(sizes)
    return max(live, default=0)


def test_planner_reaches_the_live_bytes_bound_on_real_models():
    """After in-place merging (the output over its input, the input's remainder freed after
    the node) placement wastes nothing on the real models: the arena equals the live-bytes
    bound at the busiest node. Pins kws (TFLite Micro's head: 16000) and mnist-8 (TVM: 31360)."""
    repo = Path(__file__).resolve().parents[1] / "models"
    shared = SHARED_MODELS
    paths = [
        repo / "kws.tflite",
        repo / "sine.tflite",
        *sorted(shared.glob("*.tflite")),
        *sorted(shared.glob("*.onnx")),
    ]
    for path in (p for p in paths if p.exists()):
        g = run_passes(load_model(path))
        plan = plan_memory(g)
        _assert_no_live_overlap(g, plan)
        assert plan.arena_size == _live_lower_bound(g, plan), path.name
        if path.name == "kws.tflite":
            assert plan.arena_size <= 8640
        if path.name == "mnist-8.onnx":
            assert plan.arena_size <= 8064  # both max pools run inside their convolutions


# ------------------------------------------------------------------------------------------
# the portable kernel paths (what a microcontroller runs), checked on the host
# ------------------------------------------------------------------------------------------


def _conv_model(path: Path, *, out_scale: float, channels: int, kernel: int, dw: bool) -> None:
    """A conv (or depthwise conv) whose output scale makes the requantisation shifts land
    where the test wants them (a tiny output scale gives multipliers > 1: left shifts)."""
    rng = np.random.default_rng(3)
    b = TFLiteBuilder()
    cin = channels if dw else 3
    x = b.tensor("x", [1, 6, 5, cin], "int8", scale=0.05, zero_point=-7)
    wscale = rng.uniform(0.002, 0.02, channels).astype(np.float32)
    if dw:
        wshape = [1, kernel, kernel, channels]
        axis = 3
    else:
        wshape = [channels, kernel, kernel, cin]
        axis = 0
    w = b.tensor(
        "w",
        wshape,
        "int8",
        data=rng.integers(-127, 128, wshape),
        scale=wscale,
        zero_point=np.zeros(channels, np.int64),
        quantized_dimension=axis,
    )
    bias = b.tensor(
        "b",
        [channels],
        "int32",
        data=rng.integers(-2000, 2000, channels),
        scale=0.05 * wscale,
        zero_point=np.zeros(channels, np.int64),
    )
    y = b.tensor("y", [1, 6, 5, channels], "int8", scale=out_scale, zero_point=4)
    if dw:
        b.op(
            "DEPTHWISE_CONV_2D",
            [x, w, bias],
            [y],
            padding=0,
            stride_w=1,
            stride_h=1,
            depth_multiplier=1,
            dilation_w_factor=1,
            dilation_h_factor=1,
        )
    else:
        b.op(
            "CONV_2D",
            [x, w, bias],
            [y],
            padding=0,
            stride_w=1,
            stride_h=1,
            dilation_w_factor=1,
            dilation_h_factor=1,
        )
    path.write_bytes(b.build([x], [y]))


@pytest.mark.parametrize("dw", [False, True], ids=["conv", "depthwise"])
@pytest.mark.parametrize("out_scale", [0.02, 1e-6], ids=["right-shift", "left-shift"])
@pytest.mark.parametrize("portable", [False, True], ids=["host-simd", "portable"])
def test_conv_requant_paths_bit_exact(tmp_path, dw, out_scale, portable):
    path = tmp_path / "m.tflite"
    _conv_model(path, out_scale=out_scale, channels=70, kernel=3, dw=dw)
    model = CompiledModel(
        compile_to_members(path), tmp_path / "c", extra_flags=["-U__SSE2__"] if portable else None
    )
    ref = TFLM(path)
    rng = np.random.default_rng(5)
    for _ in range(10):
        x = random_inputs(model.inputs, rng)
        assert np.array_equal(model.run(x)[0], ref.run(x)[0].reshape(model.outputs[0]["shape"]))


def test_shared_models_portable_path_bit_exact(tmp_path):
    """The int8 reference models through the portable C (-U__SSE2__), as a Cortex-M runs them."""
    root = Path(__file__).resolve().parents[1] / "models"
    for name in ("sine.tflite", "kws.tflite"):
        model = CompiledModel(compile_to_members(root / name), tmp_path / name, extra_flags=["-U__SSE2__"])
        ref = TFLM(root / name)
        rng = np.random.default_rng(9)
        for _ in range(10):
            x = random_inputs(model.inputs, rng)
            got, want = model.run(x)[0], ref.run(x)[0]
            assert np.array_equal(got.reshape(-1), want.reshape(-1)), name


def _chain_model(path: Path, variant: str = "mixed") -> None:
    """mixed: conv 3x3 -> depthwise 3x3 -> conv 1x1 (fewer channels) -> depthwise 5x5 ->
    depthwise 2x2 (padding only after) -> depthwise 3x3 VALID, batch 2: the in-place
    candidates of every kind, next to ones that must not run in place.
    thin: a 2-row input through conv 3x3 -> depthwise 1x3 -> depthwise 3x1 -> depthwise 3x3
    (kernels taller than the image, one-row filters).
    padded: PAD + VALID depthwise (fused into explicit padding) with 2, 1 and 0 rows of
    padding on top: in-place ring buffers of 3, 2 and 1 rows."""
    rng = np.random.default_rng(11)
    b = TFLiteBuilder()
    shape = {"mixed": [2, 7, 6, 8], "thin": [2, 2, 9, 8], "padded": [2, 6, 7, 8]}[variant]
    x = b.tensor("x", shape, "int8", scale=0.05, zero_point=-3)
    cur, cur_c = x, 8

    def conv(
        out_c: int,
        k,
        dw: bool,
        padding: int = 0,
        out_hw: tuple[int, int] | None = None,
        pre_pad: tuple[tuple[int, int], tuple[int, int]] | None = None,
    ):
        nonlocal cur, cur_c
        if pre_pad is not None:
            (t, bt), (le, ri) = pre_pad
            pads = b.tensor(f"t{len(b.tensors)}", [4, 2], "int32", data=[[0, 0], [t, bt], [le, ri], [0, 0]])
            padded = b.tensor(
                f"t{len(b.tensors)}",
                [2, shape[1] + t + bt, shape[2] + le + ri, cur_c],
                "int8",
                scale=0.05,
                zero_point=-3,
            )
            b.op("PAD", [cur, pads], [padded])
            cur = padded
        kh, kw = (k, k) if isinstance(k, int) else k
        wscale = rng.uniform(0.002, 0.01, out_c).astype(np.float32)
        wshape = [1, kh, kw, out_c] if dw else [out_c, kh, kw, cur_c]
        w = b.tensor(
            f"t{len(b.tensors)}",
            wshape,
            "int8",
            data=rng.integers(-127, 128, wshape),
            scale=wscale,
            zero_point=np.zeros(out_c, np.int64),
            quantized_dimension=3 if dw else 0,
        )
        bias = b.tensor(
            f"t{len(b.tensors)}",
            [out_c],
            "int32",
            data=rng.integers(-500, 500, out_c),
            scale=0.05 * wscale,
            zero_point=np.zeros(out_c, np.int64),
        )
        h, wd = out_hw or (shape[1], shape[2])
        y = b.tensor(f"t{len(b.tensors)}", [2, h, wd, out_c], "int8", scale=0.05, zero_point=-3)
        if dw:
            b.op(
                "DEPTHWISE_CONV_2D",
                [cur, w, bias],
                [y],
                padding=padding,
                stride_w=1,
                stride_h=1,
                depth_multiplier=1,
                dilation_w_factor=1,
                dilation_h_factor=1,
                fused_activation_function=1,
            )
        else:
            b.op(
                "CONV_2D",
                [cur, w, bias],
                [y],
                padding=padding,
                stride_w=1,
                stride_h=1,
                dilation_w_factor=1,
                dilation_h_factor=1,
            )
        cur, cur_c = y, out_c

    if variant == "mixed":
        conv(16, 3, dw=False)
        conv(16, 3, dw=True)
        conv(12, 1, dw=False)
        conv(12, 5, dw=True)
        conv(12, 2, dw=True)
        conv(12, 3, dw=True, padding=1, out_hw=(5, 4))
    elif variant == "thin":
        conv(16, 3, dw=False)
        conv(16, (1, 3), dw=True)
        conv(16, (3, 1), dw=True)
        conv(16, 3, dw=True)
    else:
        conv(16, 3, dw=False)
        conv(16, 3, dw=True, padding=1, pre_pad=((2, 0), (1, 1)))
        conv(16, 3, dw=True, padding=1, pre_pad=((1, 1), (0, 2)))
        conv(16, (2, 3), dw=True, padding=1, pre_pad=((0, 1), (1, 1)))
        conv(8, 1, dw=False)
    path.write_bytes(b.build([x], [cur]))


@pytest.mark.parametrize("variant", ["mixed", "thin", "padded"])
@pytest.mark.parametrize("portable", [False, True], ids=["host-simd", "portable"])
def test_inplace_convolutions_bit_exact_and_smaller(tmp_path, portable, variant):
    path = tmp_path / "chain.tflite"
    _chain_model(path, variant)
    graph = run_passes(load_model(path))
    plan = plan_memory(graph)
    _assert_no_live_overlap(graph, plan)
    inplace = [n.kind for n in graph.nodes if n.attrs.get("_inplace")]
    if variant == "mixed":
        assert inplace == ["DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D"]
        one_activation = 2 * 7 * 6 * 16
    elif variant == "thin":
        assert inplace == ["DEPTHWISE_CONV_2D"] * 2  # the last one writes the caller's output
        one_activation = 2 * 2 * 9 * 16
    else:
        assert "PAD" not in [n.kind for n in graph.nodes]
        assert inplace == ["DEPTHWISE_CONV_2D"] * 3
        one_activation = 2 * 6 * 7 * 16
    # the in-place depthwise ring buffers hold pad_top + 1 input rows (not kh)
    tops = []
    for i, n in enumerate(graph.nodes):
        if n.kind == "DEPTHWISE_CONV_2D" and n.attrs.get("_inplace"):
            g = conv_geometry(n, graph, ValueError, depthwise=True)
            assert spec(n.kind).scratch_bytes(n, graph) == (g["ph"] + 1) * g["iw"] * g["ic"]
            assert i in plan.scratch
            tops.append(g["ph"])
    if variant == "padded":
        assert tops == [2, 1, 0]
    assert plan.arena_size < 2 * one_activation  # out-of-place would need two live activations
    model = CompiledModel(
        compile_to_members(path), tmp_path / "c", extra_flags=["-U__SSE2__"] if portable else None
    )
    assert model.meta["workspace_size_bytes"] == plan.arena_size
    ref = TFLM(path)
    rng = np.random.default_rng(2)
    for _ in range(10):
        x = random_inputs(model.inputs, rng)
        assert np.array_equal(model.run(x)[0], ref.run(x)[0])
