"""CONV_2D int8 kernel variants (ops/conv_2d.py): every variant bit-exact with TFLite Micro.

The im2col_s16 variant (kernels/conv_s8_dsp.h) is the Cortex-M4/M7 kernel; its portable C
meaning (mt_dsp.h) runs on the host here, across the shapes its code paths split on: 1x1
unpadded (the direct expansion, in place or not), 3x3 padded (taps in the padding), whole
filter rows (in_c * kw a multiple of 4) and single taps, depth not a multiple of 4 (in_c 1 /
3), odd pixel counts and odd output channels, strides 1 and 2, dilation, per-channel and
per-tensor weights, fused RELU / RELU6, and both requantisations (one SMLAL, or mt_mbqm for
right shifts below 2). The Arm builds are checked warning-free at every optimisation level,
with and without MT_NO_DSP, and the keyword-spotting model runs bit-exact under QEMU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import model_builders as mb
import numpy as np
import pytest
from compiler_harness import CompiledModel, arm_compile
from conftest import device_session
from conv_variants import forced_variant

from microtvm_tasks.compiler import compile_to_members
from microtvm_tasks.compiler.emit_c import kernel_source
from microtvm_tasks.compiler.ops.conv_2d import (
    VARIANT_DOT4,
    VARIANT_S16,
    VARIANT_TAPS,
    pack_filter_s16,
    s16_params,
    s16_round_table,
)

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [VARIANT_S16, VARIANT_DOT4, VARIANT_TAPS]

SHAPES = {
    # name: conv2d builder arguments
    "1x1_c64_relu": dict(input_shape=(1, 5, 5, 64), out_channels=64, kernel=(1, 1), activation="RELU"),
    "1x1_c8_to_16": dict(input_shape=(1, 6, 7, 8), out_channels=16, kernel=(1, 1)),
    "1x1_c16_oc7_inplace_size": dict(input_shape=(1, 3, 5, 16), out_channels=7, kernel=(1, 1)),
    "1x1_c3": dict(input_shape=(1, 4, 5, 3), out_channels=6, kernel=(1, 1)),
    "1x1_s2_c32": dict(input_shape=(1, 9, 8, 32), out_channels=12, kernel=(1, 1), stride=(2, 2)),
    "1x1_s2_valid_wider": dict(input_shape=(1, 7, 7, 4), out_channels=5, kernel=(1, 1), stride=(2, 2),
                               padding="VALID"),
    "1x1_explicit_bottom_right_pad": dict(input_shape=(1, 5, 5, 4), out_channels=6, kernel=(1, 1),
                                          stride=(2, 2), padding="VALID", pre_pad=((0, 2), (0, 1))),
    "pre_pad_3x3_c4": dict(input_shape=(1, 6, 7, 4), out_channels=5, pre_pad=((2, 0), (0, 1))),
    "3x3_c3_same": dict(input_shape=(1, 9, 9, 3), out_channels=4),
    "3x3_c3_s2_oc8": dict(input_shape=(1, 10, 9, 3), out_channels=8, stride=(2, 2), activation="RELU"),
    "3x3_c8_per_tensor_relu6": dict(input_shape=(1, 7, 6, 8), out_channels=5, per_channel=False,
                                    activation="RELU6"),
    "3x3_c16_s2": dict(input_shape=(1, 8, 8, 16), out_channels=9, stride=(2, 2)),
    "3x3_c64_oc3": dict(input_shape=(1, 4, 4, 64), out_channels=3),
    "3x3_c1_valid": dict(input_shape=(1, 8, 7, 1), out_channels=5, padding="VALID"),
    "10x4_c1_s2_kws_first": dict(input_shape=(1, 49, 10, 1), out_channels=7, kernel=(10, 4),
                                 stride=(2, 2), activation="RELU"),
    "5x3_c2": dict(input_shape=(1, 8, 7, 2), out_channels=4, kernel=(5, 3)),
    "3x3_dilation2_c4": dict(input_shape=(1, 9, 9, 4), out_channels=6, dilation=(2, 2)),
    "3x3_batch2_c4": dict(input_shape=(2, 5, 5, 4), out_channels=3),
    "2x2_no_bias": dict(input_shape=(1, 5, 6, 4), out_channels=2, kernel=(2, 2), bias=False),
    "1x1_single_pixel_oc1": dict(input_shape=(1, 1, 1, 12), out_channels=1, kernel=(1, 1)),
}


def _compile(model: bytes, workdir: Path, variant: str, flags: list[str] | None = None) -> CompiledModel:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "model.tflite"
    path.write_bytes(model)
    with forced_variant(variant) as opts:
        members = compile_to_members(path, module_name="model", **opts)
    lib1 = members["codegen/host/src/model_lib1.c"].decode()
    want = {VARIANT_S16: "mt_conv_s8_s16(", VARIANT_TAPS: "mt_conv_s8_taps("}.get(variant, "mt_conv_s8(")
    assert f"  {want}" in lib1, f"variant {variant} was not used"
    cm = CompiledModel(members, workdir / "build", extra_flags=flags)
    cm.ir_text = members["src/model.ir.txt"].decode()  # type: ignore[attr-defined]
    return cm


def _check(model: bytes, cm: CompiledModel, n_inputs: int = 3) -> int:
    """Bit-exact against TFLite Micro on random inputs; the number of distinct outputs seen."""
    tflm = mb.TFLMRunner(model)
    seen: set[int] = set()
    for k in range(n_inputs):
        xs = mb.random_inputs(model, k)
        (ours,) = cm.run(xs)
        (ref,) = tflm(xs)
        np.testing.assert_array_equal(ours.reshape(-1), ref.reshape(-1), err_msg=f"input #{k}")
        seen.update(ref.reshape(-1).tolist())
    return len(seen)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_conv_variant_matches_tflite_micro(shape, variant, tmp_path):
    model = mb.conv2d(**SHAPES[shape], seed=len(shape))
    cm = _compile(model, tmp_path, variant)
    distinct = _check(model, cm)
    assert distinct >= 3, "the reference outputs hardly vary: the comparison would prove little"


@pytest.mark.parametrize("shape", ["3x3_c3_s2_oc8", "1x1_c16_oc7_inplace_size", "10x4_c1_s2_kws_first"])
def test_im2col_s16_portable_c_without_sse2(shape, tmp_path):
    """The same bits with the host's SSE2 paths compiled out (plain C everywhere)."""
    model = mb.conv2d(**SHAPES[shape], seed=3)
    _check(model, _compile(model, tmp_path, VARIANT_S16, ["-U__SSE2__", "-DMT_NO_DSP"]))


def test_im2col_s16_in_place_chain(tmp_path):
    """1x1 convolutions 8 -> 16 -> 6 -> 4 channels: the narrowing middle one runs over its
    input (out_c <= in_c, the planner's in-place choice); the pair-of-pixels kernel must
    expand both pixels before writing either output."""
    b = mb.TFLiteBuilder()
    rng = np.random.default_rng(5)
    chans = [8, 16, 6, 4]
    qs = [mb.QParams(0.05, -3), mb.QParams(0.2, -10), mb.QParams(0.3, 4), mb.QParams(0.4, -1)]
    ts = [b.tensor(f"t{i}", [1, 5, 3, c], "int8", scale=q.scale, zero_point=q.zero_point)
          for i, (c, q) in enumerate(zip(chans, qs, strict=True))]
    for i in range(3):
        cin, cout = chans[i], chans[i + 1]
        wq, ws = mb.quantize_symmetric(rng.uniform(-1, 1, (cout, 1, 1, cin)).astype(np.float32), 0)
        wt = b.tensor(f"w{i}", [cout, 1, 1, cin], "int8", wq, scale=ws, zero_point=0, quantized_dimension=0)
        bt = b.tensor(f"b{i}", [cout], "int32", rng.integers(-300, 300, cout).astype(np.int32),
                      scale=(qs[i].scale * ws).astype(np.float64), zero_point=0)
        b.op("CONV_2D", [ts[i], wt, bt], [ts[i + 1]], padding="SAME", stride_w=1, stride_h=1,
             dilation_w_factor=1, dilation_h_factor=1, fused_activation_function="NONE")
    model = b.build([ts[0]], [ts[3]])
    cm = _compile(model, tmp_path, VARIANT_S16)
    assert "in place" in cm.ir_text  # type: ignore[attr-defined]
    assert _check(model, cm, n_inputs=4) >= 3


def test_pack_filter_s16_layout():
    """Channel pairs interleaved per block of four, zero depth padding, odd channel last."""
    w = np.arange(3 * 6, dtype=np.int8).reshape(3, 1, 1, 6)  # 3 channels, depth 6 -> 2 blocks
    words = pack_filter_s16(w, 2)
    got = words.view(np.int8).reshape(-1, 4).tolist()
    assert got == [[0, 1, 2, 3], [6, 7, 8, 9], [4, 5, 0, 0], [10, 11, 0, 0], [12, 13, 14, 15], [16, 17, 0, 0]]
    assert words.dtype == np.uint32


def test_round_table_only_for_right_shifts_of_two_or_more():
    assert s16_round_table([-2, -5, -31]).tolist() == [1, 8, 1 << 29]
    assert s16_round_table([-1, -5]) is None
    assert s16_round_table([0]) is None
    assert s16_round_table([1, -4]) is None


def test_s16_params_table_order_and_fast_choice():
    """bias, mult, rnd, sh per channel pair (then the odd channel), one pointer's walk."""
    qp, fast = s16_params([10, 11, 12], [1 << 30, 1 << 30, 3 << 29], [-3, -4, -2])
    assert fast
    assert qp.tolist() == [10, 11, 1 << 30, 1 << 30, 2, 4, 2, 3, 12, 3 << 29, 1, 1]
    qp, fast = s16_params([10, 11], [1 << 30, 1 << 30], [-1, -4])  # a right shift of 1: mt_mbqm
    assert not fast and qp.tolist() == [10, 11, 1 << 30, 1 << 30, 0, 0, -1, -4]


_REQUANT_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#define MT_KERNEL static inline
%(common)s
%(dsp)s
%(conv)s
int main(void) {
  /* x, m, shift triples on stdin; prints fast and mt_mbqm results */
  long long x, m, s;
  while (scanf("%%lld %%lld %%lld", &x, &m, &s) == 3) {
    const int32_t r = (int32_t)1 << (-(int32_t)s - 2);
    printf("%%d %%d\n", (int)mt_cs16_requant((int32_t)x, (int32_t)m, -(int32_t)s - 1, r, 1, 0, -128, 127),
           (int)mt_clamp_i32(mt_mbqm((int32_t)x, (int32_t)m, (int32_t)s), -128, 127));
  }
  return 0;
}
"""


def _tflite_mbqm(x: int, m: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier for a right shift (Python integers)."""
    ab = x * m
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    hi = abs(v) // (1 << 31) * (1 if v >= 0 else -1)  # C division truncates toward zero
    e = -shift
    mask = (1 << e) - 1
    rem = hi & mask
    thr = (mask >> 1) + (1 if hi < 0 else 0)
    return (hi >> e) + (1 if rem > thr else 0)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_one_smlal_requantisation_equals_tflite(tmp_path):
    """conv_s8_dsp.h's requantisation against TFLite's double rounding on edge and random
    accumulators (ties of both roundings, signs, extremes), for every right shift 2..31."""
    rng = np.random.default_rng(0)
    cases = []
    for s in range(-31, -1):
        for m in (1 << 30, (1 << 31) - 1, 1518500250, int(rng.integers(1 << 30, 1 << 31))):
            xs = [0, 1, -1, 2**31 - 1, -(2**31), 2**30, -(2**30)]
            # accumulators whose high product sits at / next to a rounding tie
            for t in (1 << (-s - 1), 3 << (-s - 1), 1, -(1 << (-s - 1))):
                base = (t << 31) // m
                xs += [base + d for d in (-2, -1, 0, 1, 2)] + [-base + d for d in (-2, -1, 0, 1, 2)]
            xs += rng.integers(-(2**31), 2**31, 40).tolist()
            xs += rng.integers(-(1 << 20), 1 << 20, 40).tolist()
            cases += [(int(np.clip(x, -(2**31), 2**31 - 1)), m, s) for x in xs]
    src = tmp_path / "rq.c"
    src.write_text(_REQUANT_C % {"common": kernel_source("mt_common.h"), "dsp": kernel_source("mt_dsp.h"),
                                 "conv": kernel_source("conv_s8_dsp.h")})
    exe = tmp_path / "rq"
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], input="\n".join(f"{x} {m} {s}" for x, m, s in cases),
                         capture_output=True, text=True, check=True).stdout.split("\n")
    for (x, m, s), line in zip(cases, out, strict=False):
        fast, ref_c = (int(v) for v in line.split())
        want = max(-128, min(127, _tflite_mbqm(x, m, s)))
        assert fast == ref_c == want, (x, m, s, fast, ref_c, want)
    assert len(out) >= len(cases)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_im2col_s16_builds_warning_free_for_cortex_m(tmp_path):
    """-Wall -Wextra -Werror for Cortex-M3 / M4F / M7 at -O0..-O3 and -Os, DSP and MT_NO_DSP;
    and the M4 -O2 build really uses SMLAD and SMLAL (the DSP path is taken)."""
    model = mb.conv2d(**SHAPES["3x3_c3_s2_oc8"], seed=1)
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    with forced_variant(VARIANT_S16) as opts:
        members = compile_to_members(path, module_name="model", **opts)
    cpus = {
        "m3": ["-mcpu=cortex-m3"],
        "m4": ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
        "m7": ["-mcpu=cortex-m7"],
    }
    base = ["-mthumb", "-std=c99", "-Wall", "-Wextra", "-Werror"]
    for cpu, cflags in cpus.items():
        for opt in ("-O0", "-O1", "-O2", "-O3", "-Os"):
            for extra in ([], ["-DMT_NO_DSP"]):
                d = tmp_path / f"{cpu}{opt}{len(extra)}"
                arm_compile(members, d, [*cflags, *base, opt, *extra])
    d = tmp_path / "asm"
    d.mkdir()
    src = d / "codegen/host/src/model_lib1.c"
    arm_compile(members, d, [*cpus["m4"], *base, "-O2"])
    asm = subprocess.run(["arm-none-eabi-gcc", *cpus["m4"], *base, "-O2", f"-I{d}/codegen/host/include", "-S",
                          str(src), "-o", "-"], capture_output=True, text=True, check=True).stdout
    assert "smlad" in asm and "smlal" in asm and "sxtb16" in asm


MODELS = REPO / "models"
needs_qemu = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="arm-none-eabi-gcc or qemu-system-arm not installed",
)


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_keyword_spotting_with_im2col_s16_on_the_m4_matches_tflite_micro(tmp_path):
    """kws (every CONV_2D on im2col_s16) on mps2_an386 under QEMU: outputs equal TFLite
    Micro's bit for bit, for inputs drawn from -100..0 (uniform int8 saturates kws: all
    -128 but one) so that some outputs are not saturated."""
    from conftest import generate_project

    from microtvm_tasks.compiler import compile_model
    from microtvm_tasks.project_api.client import instantiate_from_dir

    model = MODELS / "kws.tflite"
    with forced_variant(VARIANT_S16) as opts:
        mlf = compile_model(model, tmp_path / "kws.tar", **opts)
    import tarfile

    with tarfile.open(mlf) as tar:
        lib1 = next(tar.extractfile(m).read().decode() for m in tar.getmembers() if m.name.endswith("lib1.c"))
    assert lib1.count("  mt_conv_s8_s16(") == 5
    from conftest import TEMPLATES_DIR

    project = tmp_path / "proj"
    with instantiate_from_dir(TEMPLATES_DIR / "qemu_arm", timeout=60) as client:
        generate_project(client, mlf, project, {"board": "mps2_an386", "project_type": "host_driven",
                                                 "warning_as_error": True})
    tflm = mb.TFLMRunner(model.read_bytes())
    rng = np.random.default_rng(7)
    unsaturated = 0
    with device_session(project) as (session, desc):
        shape = tuple(desc.inputs[0].shape)
        for _ in range(5):
            x = rng.integers(-100, 0, size=shape, endpoint=True).astype(np.int8)
            session.set_input(0, x)
            session.run(1)
            got = session.get_output(0)
            (want,) = tflm([x])
            np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))
            unsaturated += int(np.sum((want > -128) & (want < 127)))
    # the softmax output is peaked: still, some scores must lie strictly inside the range
    assert unsaturated >= 3, "the outputs are all saturated: the comparison would prove little"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
