"""int8 FULLY_CONNECTED kernel variants (ops/fully_connected.py, kernels/fc_s8_dsp.h).

Every variant must give TFLite Micro's bytes on every target; the DSP variants' helpers
have exact portable C meanings, so the host build checks each variant bit for bit over
the awkward shapes (in_dim 1/3/4/17/640: no packed words, a tail, no tail; out_dim
1/3/4/5/128: a lone row, a lone pair, 4-row blocks and remainders), batch 1 and 3,
per-tensor and per-channel weights, RELU, and both requantisation paths (the one-SMLAL
one and mt_mbqm). The requantisation identity is checked directly in C against mt_mbqm;
the Thumb-2 assembly is checked by building for the Cortex-M cores at every -O level
with -Werror and by running in QEMU against TFLite Micro.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import model_builders as mb  # noqa: E402
from compiler_harness import CompiledModel  # noqa: E402

from microtvm_tasks.compiler import compile_to_members  # noqa: E402
from microtvm_tasks.compiler.ir import Graph, Node, Tensor  # noqa: E402
from microtvm_tasks.compiler.ops import spec  # noqa: E402
from microtvm_tasks.compiler.ops.fully_connected import (  # noqa: E402
    GENERIC,
    PAIRS,
    PAIRS_X16,
    pack_fc_pairs,
)
from microtvm_tasks.targets import Target  # noqa: E402

pytest.importorskip("tflite_micro", reason="TFLite Micro (PyPI tflite-micro) is the int8 reference")

VARIANTS = (GENERIC, PAIRS, PAIRS_X16)
IN_DIMS = (1, 3, 4, 17, 640)
OUT_DIMS = (1, 3, 4, 5, 128)
#: every remainder of packed steps modulo 4 (in_dim // 4 = 1, 2, 3, 5, 6, 4, 160, 0; the
#: assembly does 1, 2, then 4 at a time), tails, lone rows and pairs
QEMU_SHAPES = [(4, 5), (11, 4), (14, 5), (23, 3), (27, 8), (17, 1), (20, 128), (640, 4), (3, 4), (128, 7)]
KERNELS = Path(__file__).resolve().parents[1] / "microtvm_tasks" / "compiler" / "kernels"
HAVE_ARM_GCC = shutil.which("arm-none-eabi-gcc") is not None


def fc_bank(shapes, *, batch: int, per_channel: bool, activation: str, seed: int,
            big_scale: bool = False) -> bytes:
    """A model of independent FULLY_CONNECTED layers, one input and output each.

    Input zero points differ per layer (the compiler folds them into the bias) and each
    output's scale is set from the layer's own spread, so outputs vary rather than
    saturate. big_scale: a scale above 1/2 (a left shift: mt_mbqm, not the fast path)."""
    rng = np.random.default_rng(seed)
    b = mb.TFLiteBuilder()
    ins, outs = [], []
    for n, (in_dim, out_dim) in enumerate(shapes):
        xq = mb.QParams(0.05, int(rng.integers(-20, 20)))
        w = rng.uniform(-1, 1, (out_dim, in_dim)).astype(np.float32)
        wq, ws = mb.quantize_symmetric(w, 0 if per_channel else None)
        bias = rng.uniform(-1, 1, out_dim).astype(np.float32)
        bs = np.broadcast_to((xq.scale * ws).astype(np.float64), (out_dim,))
        spread = 3.0 * 128 * xq.scale * np.sqrt(in_dim / 3.0) / 2.0
        oq = mb.qparams_for_range(-spread, spread)
        if big_scale:
            oq = mb.QParams(float(np.float32(xq.scale * float(np.max(ws)) * 1.5)), 3)
        x = b.tensor(f"x{n}", [batch, in_dim], "int8", scale=xq.scale, zero_point=xq.zero_point)
        wt = b.tensor(f"w{n}", [out_dim, in_dim], "int8", wq, scale=ws, zero_point=0)
        bt = b.tensor(f"b{n}", [out_dim], "int32", np.round(bias / bs).astype(np.int32),
                      scale=xq.scale * ws, zero_point=0)
        y = b.tensor(f"y{n}", [batch, out_dim], "int8", scale=oq.scale, zero_point=oq.zero_point)
        b.op("FULLY_CONNECTED", [x, wt, bt], [y], fused_activation_function=activation)
        ins.append(x)
        outs.append(y)
    return b.build(ins, outs)


def _choose(variant: str):
    return lambda node, names: variant if (node.kind == "FULLY_CONNECTED" and variant in names) else names[0]


def _members(model: bytes, tmp_path: Path, variant: str, name: str = "fcbank") -> dict[str, bytes]:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model)
    members = compile_to_members(path, module_name=name, target="cortex-m4", choose=_choose(variant))
    ir = members[f"src/{name}.ir.txt"].decode()
    assert ir.count(f"[variant {variant}") == ir.count("FULLY_CONNECTED ->") > 0
    return members


def _check_against_tflm(model: bytes, cm: CompiledModel, n_inputs: int, seed: int) -> None:
    tflm = mb.TFLMRunner(model)
    varied = 0
    for k in range(n_inputs):
        xs = mb.random_inputs(model, seed + k)
        ours, refs = cm.run(xs), tflm(xs)
        for i, (o, r) in enumerate(zip(ours, refs, strict=True)):
            o, r = np.asarray(o).reshape(-1), np.asarray(r).reshape(-1)
            bad = np.flatnonzero(o != r)
            assert bad.size == 0, (f"output {i} input #{k}: {bad.size}/{r.size} differ from TFLite Micro; "
                                   f"first at {bad[0]}: ours {o[bad[0]]} vs {r[bad[0]]}")
            varied += int(np.unique(r).size > min(3, r.size - 1) and np.mean(np.abs(r) >= 127) < 0.5)
    assert varied >= n_inputs * len(refs) // 2, "reference outputs are mostly constant or saturated"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("batch", "per_channel", "activation"), [
    (1, False, "NONE"), (1, True, "RELU"), (3, True, "NONE"), (3, False, "RELU"),
])
def test_every_variant_equals_tflite_micro_over_the_shapes(variant, batch, per_channel, activation, tmp_path):
    shapes = [(i, o) for i in IN_DIMS for o in OUT_DIMS]
    model = fc_bank(shapes, batch=batch, per_channel=per_channel, activation=activation,
                    seed=batch * 10 + per_channel)
    cm = CompiledModel(_members(model, tmp_path, variant), tmp_path / "build")
    _check_against_tflm(model, cm, n_inputs=2, seed=batch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_left_shift_scales_take_the_exact_fallback(variant, tmp_path):
    """Scales above 1/2 (left shifts) must not take the one-SMLAL path: mt_mbqm instead."""
    model = fc_bank([(17, 5), (8, 4)], batch=2, per_channel=True, activation="NONE", seed=4, big_scale=True)
    members = _members(model, tmp_path, variant)
    if variant != GENERIC:
        assert "mt_fc_s8_pairs(" in members["codegen/host/src/fcbank_lib1.c"].decode()
    cm = CompiledModel(members, tmp_path / "build")
    tflm = mb.TFLMRunner(model)
    for k in range(3):
        xs = mb.random_inputs(model, k)
        for o, r in zip(cm.run(xs), tflm(xs), strict=True):
            np.testing.assert_array_equal(np.asarray(o).reshape(-1), np.asarray(r).reshape(-1))


def test_pack_fc_pairs_lanes_hold_both_rows_and_the_tables_are_no_larger():
    """Reading each packed lane back as int16 gives 256 * w[b] + w[a] + 128, per the layout."""
    rng = np.random.default_rng(0)
    for out_dim, in_dim in [(1, 5), (2, 4), (3, 9), (4, 8), (7, 13), (8, 640)]:
        w = rng.integers(-128, 128, (out_dim, in_dim)).astype(np.int8)
        bias = rng.integers(-(1 << 20), 1 << 20, out_dim)
        wp, wr, bp = pack_fc_pairs(w, bias)
        assert wp.dtype == np.uint32 and wr.dtype == np.int8 and bp.dtype == np.int32
        assert wp.nbytes + wr.nbytes <= w.nbytes + 0 and bp.size == out_dim
        k4, tail = in_dim // 4, in_dim % 4
        lanes = wp.view(np.int16).astype(np.int64)  # little-endian: lane 0 first
        pos = 0
        rest = 0
        o4, o2 = out_dim & ~3, out_dim & ~1
        for o in range(0, o2, 4):
            pairs = [o] if o + 4 > o4 else [o, o + 2]
            for k in range(k4):
                for a in pairs:
                    for i in (4 * k, 4 * k + 2, 4 * k + 1, 4 * k + 3):
                        assert lanes[pos] == 256 * int(w[a + 1, i]) + int(w[a, i]) + 128
                        pos += 1
            for a in pairs:
                for r in (a, a + 1):
                    assert list(wr[rest:rest + tail]) == list(w[r, 4 * k4:])
                    rest += tail
                packed = int(bias[a]) + 256 * int(bias[a + 1])
                assert int(bp[a]) == (packed + (1 << 31)) % (1 << 32) - (1 << 31)
                assert int(bp[a + 1]) == int(bias[a + 1])
        assert pos == lanes.size
        if out_dim % 2:
            assert list(wr[rest:]) == list(w[-1]) and int(bp[-1]) == int(bias[-1])


def _fc_node(in_dim: int, out_dim: int) -> tuple[Node, Graph]:
    from microtvm_tasks.compiler.ir import Quant

    g = Graph(name="t")
    q = Quant(scale=[0.1], zero_point=[0])
    g.tensors["x"] = Tensor("x", (1, in_dim), "int8", quant=q)
    zeros = np.zeros((out_dim, in_dim), np.int8)
    g.tensors["w"] = Tensor("w", (out_dim, in_dim), "int8", data=zeros, quant=q)
    g.tensors["y"] = Tensor("y", (1, out_dim), "int8", quant=q)
    node = Node(kind="FULLY_CONNECTED", name="fc", inputs=["x", "w"], outputs=["y"], attrs={})
    return node, g


@pytest.mark.parametrize(("in_dim", "out_dim", "default"), [
    (128, 128, PAIRS_X16),   # many 4-row blocks share the widening; 256 B of scratch
    (640, 128, PAIRS),       # 1280 B of scratch would exceed ad01's TFLite Micro arena head
    (4000, 4, PAIRS),        # one block: widening costs more than it saves
    (64, 12, PAIRS_X16),
    (128, 8, PAIRS),
])
def test_defaults_per_target_and_scratch(in_dim, out_dim, default):
    sp = spec("FULLY_CONNECTED")
    node, g = _fc_node(in_dim, out_dim)
    m4 = sp.variants(node, g, Target.parse("cortex-m4"))
    assert m4[0] == default and sorted(m4) == sorted(VARIANTS)
    assert sp.variants(node, g, Target.parse("cortex-m7"))[0] == default
    assert sp.variants(node, g, Target.parse("generic"))[0] == GENERIC
    assert sp.variants(node, g, Target.parse("cortex-m3"))[0] == GENERIC
    for v, want in ((GENERIC, 0), (PAIRS, 0), (PAIRS_X16, 8 * (in_dim // 4))):
        node.attrs["_variant"] = v
        assert sp.scratch_bytes(node, g) == want


_REQUANT_MAIN = r"""
#include <stdio.h>
/* fast requantisation (mt_fc_out) == clamp(mt_mbqm + zp) over random and tie-heavy values */
static uint64_t st = 88172645463325252ull;
static uint32_t rnd32(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (uint32_t)(st >> 11); }
int main(void) {
  long n = 0, bad = 0, mid = 0;
  int r, it;
  for (r = 2; r <= 23; ++r) {
    for (it = 0; it < 60000; ++it) {
      const int32_t zp = (int32_t)(rnd32() % 256) - 128;
      const int32_t m = it % 7 == 0 ? (1 << 30)
                        : (it % 11 == 0 ? 2147483647 : (int32_t)((1u << 30) | (rnd32() >> 2)));
      const int32_t rndc = (1 << (r - 2)) + zp * (1 << (r - 1));
      int32_t x;
      int8_t got;
      int32_t want;
      if (it % 5 == 0) {
        x = (int32_t)rnd32();
      } else if (it % 5 == 1) {
        /* the extremes of int32 and zero */
        x = (int32_t)(rnd32() & 3) - 2;
        x += (it & 1) ? (rnd32() % 2 ? INT32_MIN + 2 : INT32_MAX - 2) : 0;
      } else {
        /* near an output value v, where the roundings decide */
        const int64_t v = (int64_t)(rnd32() % 601) - 300;
        const int64_t base = (v << (31 + r)) / m;
        int64_t xx = base + (int64_t)(rnd32() % (1u << (r < 8 ? r + 3 : 11))) - (1 << (r < 8 ? r + 2 : 10));
        if (m == (1 << 30)) {
          xx = 2 * ((v << r) + (1 << (r - 1))) + (int64_t)(rnd32() % 5) - 2; /* exact ties */
        }
        xx = xx > INT32_MAX ? INT32_MAX : (xx < INT32_MIN ? INT32_MIN : xx);
        x = (int32_t)xx;
      }
      mt_fc_out(&got, x, m, -r, rndc, 1, zp, -128, 127);
      want = mt_clamp_i32(mt_mbqm(x, m, -r) + zp, -128, 127);
      if (want > -128 && want < 127) ++mid;
      if (got != want) {
        if (bad < 5) {
          printf("r=%d x=%ld m=%ld zp=%ld: %d vs %ld\n", r, (long)x, (long)m, (long)zp, got, (long)want);
        }
        ++bad;
      }
      ++n;
    }
  }
  printf("checked %ld (%ld unsaturated), %ld differ\n", n, mid, bad);
  return bad != 0 || mid < n / 4;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed")
def test_one_smlal_requantisation_equals_mbqm(tmp_path):
    src = tmp_path / "requant.c"
    parts = ["mt_common.h", "mt_dsp.h", "fc_s8_dsp.h"]
    text = "".join((KERNELS / p).read_text() for p in parts)
    src.write_text("#include <stdint.h>\n" + text + _REQUANT_MAIN)
    exe = tmp_path / "requant"
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    assert "0 differ" in r.stdout


ARM_CPUS = {
    "cortex-m3": ["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
}
OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os")


@pytest.mark.skipif(not HAVE_ARM_GCC, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("variant", (PAIRS, PAIRS_X16))
def test_dsp_variants_build_warning_free_on_every_core_and_level(variant, tmp_path):
    from compiler_harness import arm_compile

    shapes = [(i, o) for i in IN_DIMS for o in OUT_DIMS] + QEMU_SHAPES
    model = fc_bank(shapes, batch=3, per_channel=True, activation="RELU", seed=7)
    members = _members(model, tmp_path, variant)
    for cpu, flags in ARM_CPUS.items():
        for opt in OPT_LEVELS:
            work = tmp_path / f"{cpu}{opt}"
            objs = arm_compile(members, work, [*flags, opt, "-std=c99", "-Wall", "-Wextra", "-Werror"])
            assert len(objs) == 2
            if cpu != "cortex-m3" and opt != "-O0":
                dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(work / "fcbank_lib1.o")],
                                     capture_output=True, text=True, check=True).stdout
                assert "smlad" in dis and "ldmia" in dis  # the assembly inner loop is in
    for opt in OPT_LEVELS:
        src = tmp_path / "host" / "codegen/host/src"
        from compiler_harness import write_sources

        src, inc = write_sources(members, tmp_path / "host")
        subprocess.run(["gcc", opt, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{inc}", "-c",
                        str(src / "fcbank_lib1.c"), "-o", str(tmp_path / f"host{opt}.o")],
                       check=True, capture_output=True, text=True)


# ---- on the emulated Cortex-M cores (QEMU), against TFLite Micro ----------------------------

HAVE_QEMU = HAVE_ARM_GCC and shutil.which("qemu-system-arm") is not None
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="arm-none-eabi-gcc or qemu-system-arm not installed")


def _qemu_run(tmp_path: Path, mlf: Path, model: Path, board: str, trials: int = 2) -> list[int]:
    """Build and boot the firmware, run `trials` random inputs; every output must equal TFLite
    Micro's. Ticks per run; a repeated run's ticks are not compared (that is not this kernel's
    property: with several model inputs an occasional run counts 4 instructions more, with
    the generic kernel too)."""
    from test_qemu_arm import _generate, _run_against_tflm

    return _run_against_tflm(_generate(tmp_path, mlf, board), model, trials, exact=True, same_ticks=False)


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("variant", "board"), [
    (PAIRS, "mps2_an386"), (PAIRS_X16, "mps2_an386"), (PAIRS_X16, "mps2_an500"), (PAIRS, "mps2_an385"),
])
def test_dsp_variants_in_qemu_equal_tflite_micro(variant, board, tmp_path):
    """The Thumb-2 inner loops (M4, M7) and the portable C (M3) on the real instruction set."""
    from microtvm_tasks.compiler import compile_model

    model = tmp_path / "fcbank.tflite"
    model.write_bytes(fc_bank(QEMU_SHAPES, batch=3, per_channel=True, activation="RELU", seed=11))
    target = {"mps2_an385": "cortex-m3", "mps2_an386": "cortex-m4", "mps2_an500": "cortex-m7"}[board]
    mlf = compile_model(model, tmp_path / "fcbank.tar", target=target, choose=_choose(variant))
    ticks = _qemu_run(tmp_path, mlf, model, board)
    assert all(t > 1000 for t in ticks)


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_ad01_on_the_m4_equals_tflite_micro_with_the_dsp_defaults(tmp_path):
    """MLPerf Tiny's anomaly-detection autoencoder (ten FC layers) with the Cortex-M4 defaults."""
    import tarfile

    from conftest import SHARED_MODELS

    from microtvm_tasks.compiler import compile_model

    model = SHARED_MODELS / "ad01_int8.tflite"
    if not model.exists():
        pytest.skip(f"{model} not present")
    mlf = compile_model(model, tmp_path / "ad01.tar", target="cortex-m4")
    with tarfile.open(mlf) as tar:
        ir = next(tar.extractfile(m).read().decode() for m in tar.getmembers() if m.name.endswith(".ir.txt"))
    assert ir.count("[variant dsp_pairs") == 10
    ticks = _qemu_run(tmp_path, mlf, model, "mps2_an386")
    # TFLite Micro + CMSIS-NN take 582,947 instructions on the same counter
    assert all(t < 400_000 for t in ticks), ticks
