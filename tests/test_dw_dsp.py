"""The int8 DEPTHWISE_CONV_2D kernel variants (ops/depthwise_conv_2d.py): every variant the
compiler offers for a node is built on the host (the DSP variants through mt_dsp.h's
portable meaning) and must equal TFLite Micro bit for bit, across paddings, strides,
dilations, depth multipliers, channel counts, quantisation kinds, activations and the
in-place ring-buffer mode; the DSP code builds warning-free for Cortex-M; and kws, with
its depthwise layers on the DSP variant, runs on the emulated Cortex-M4 bit-exact with
TFLite Micro.
"""

from __future__ import annotations

import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import device_session

sys.path.insert(0, str(Path(__file__).parent))
import model_builders as mb  # noqa: E402
from compiler_harness import TFLM, CompiledModel, arm_compile, random_inputs  # noqa: E402

from microtvm_tasks.compiler import compile_to_members, load_model  # noqa: E402
from microtvm_tasks.compiler.ops import spec  # noqa: E402
from microtvm_tasks.compiler.ops.depthwise_conv_2d import fast_requant, reorder_c1  # noqa: E402
from microtvm_tasks.compiler.passes import run_passes  # noqa: E402
from microtvm_tasks.compiler.variants import forced  # noqa: E402
from microtvm_tasks.targets import Target  # noqa: E402

pytest.importorskip("tflite_micro", reason="TFLite Micro (PyPI tflite-micro) is the int8 reference")
if shutil.which("gcc") is None:
    pytest.skip("gcc is needed to build the generated C", allow_module_level=True)

M4 = Target.parse("cortex-m4")

CASES = {
    "kws_25x5x64_same": lambda: mb.depthwise_conv2d(input_shape=(1, 25, 5, 64)),
    "c8_valid": lambda: mb.depthwise_conv2d(input_shape=(1, 7, 6, 8), padding="VALID"),
    "c8_same_s2": lambda: mb.depthwise_conv2d(input_shape=(1, 9, 10, 8), stride=(2, 2)),
    "c11_same_s2_odd": lambda: mb.depthwise_conv2d(input_shape=(1, 7, 6, 11), stride=(2, 2)),
    "c3_same": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 5, 3)),
    "c1_dm1": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 7, 1)),
    "c6_dilation2": lambda: mb.depthwise_conv2d(input_shape=(1, 9, 9, 6), dilation=(2, 2)),
    "c8_explicit_pad": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 7, 8), padding="VALID",
                                                   pre_pad=((2, 0), (1, 2))),
    "c12_per_tensor": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 6, 12), per_channel=False),
    "c8_relu": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 6, 8), activation="RELU"),
    "c8_relu6_s2": lambda: mb.depthwise_conv2d(input_shape=(1, 8, 7, 8), activation="RELU6", stride=(2, 2)),
    "c8_batch2_5x3": lambda: mb.depthwise_conv2d(input_shape=(2, 6, 6, 8), kernel=(5, 3)),
    "c3_dm2": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 6, 3), depth_multiplier=2),
    "c1_dm2": lambda: mb.depthwise_conv2d(input_shape=(1, 6, 6, 1), depth_multiplier=2),
    "c1_dm8_micro_speech": lambda: mb.depthwise_conv2d(input_shape=(1, 49, 40, 1), depth_multiplier=8,
                                                       kernel=(10, 8), stride=(2, 2)),
    "c1_dm8_valid": lambda: mb.depthwise_conv2d(input_shape=(1, 12, 11, 1), depth_multiplier=8,
                                                kernel=(4, 8), padding="VALID"),
    "c1_dm6_3x7_tail": lambda: mb.depthwise_conv2d(input_shape=(1, 9, 9, 1), depth_multiplier=6,
                                                   kernel=(3, 7)),
    "c1_dm12_narrow": lambda: mb.depthwise_conv2d(input_shape=(1, 5, 3, 1), depth_multiplier=12,
                                                  kernel=(3, 6)),
    "c1_dm4_relu6_per_tensor": lambda: mb.depthwise_conv2d(input_shape=(1, 7, 9, 1), depth_multiplier=4,
                                                           kernel=(3, 5), activation="RELU6",
                                                           per_channel=False, stride=(1, 2)),
    "c1_dm8_dilation_h": lambda: mb.depthwise_conv2d(input_shape=(1, 9, 9, 1), depth_multiplier=8,
                                                     dilation=(2, 1)),
}


def _dw_variants(path: Path, target: Target) -> tuple[str, ...]:
    graph = run_passes(load_model(path))
    (node,) = [n for n in graph.nodes if n.kind == "DEPTHWISE_CONV_2D"]
    return tuple(spec(node.kind).variants(node, graph, target))


def _check(model: bytes, tmp_path: Path, variant: str, seed: int, n_inputs: int = 3) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    members = compile_to_members(path, module_name="m", target=M4, choose=forced(variant))
    ir = members["src/m.ir.txt"].decode()
    assert f"variant {variant}" in ir
    lib1 = members["codegen/host/src/m_lib1.c"].decode()
    if variant != "generic":
        call = {"dsp_c4": "mt_dwconv_s8_c4(", "dsp_c1": "mt_dwconv_s8_c1("}[variant]
        assert call in lib1.split("tvmgen_m_run")[-1]
    cm = CompiledModel(members, tmp_path / variant)
    tflm = mb.TFLMRunner(model)
    for k in range(n_inputs):
        xs = mb.random_inputs(model, seed + k)
        (ours,), (ref,) = cm.run(xs), tflm(xs)
        ref = ref.reshape(-1)
        assert len(np.unique(ref)) > 8, "reference output too saturated to test anything"
        bad = np.flatnonzero(ours.reshape(-1) != ref)
        assert bad.size == 0, f"{variant}: {bad.size}/{ref.size} differ; first at {bad[0]}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_depthwise_variant_matches_tflite_micro(case, tmp_path):
    model = CASES[case]()
    path = tmp_path / "probe.tflite"
    path.write_bytes(model)
    names = _dw_variants(path, M4)
    assert "generic" in names
    for variant in names:
        _check(model, tmp_path, variant, seed=zlib.crc32(case.encode()) % 1000)


def test_variant_lists_and_defaults(tmp_path):
    """The DSP kernels that fit come first on a DSP target, the generic kernel first on the
    generic one; dm > 1 with several input channels has no DSP kernel; float has none."""
    expect = {
        "kws_25x5x64_same": ("dsp_c4",),
        "c1_dm1": ("dsp_c4",),
        "c3_dm2": (),
        "c1_dm8_micro_speech": ("dsp_c1",),
        "c1_dm8_dilation_h": ("dsp_c1",),
    }
    for case, dsp in expect.items():
        path = tmp_path / f"{case}.tflite"
        path.write_bytes(CASES[case]())
        assert _dw_variants(path, M4) == (*dsp, "generic"), case
        assert _dw_variants(path, Target.parse("cortex-m7")) == (*dsp, "generic"), case
        assert _dw_variants(path, Target.parse("generic")) == ("generic", *dsp), case
        assert _dw_variants(path, Target.parse("cortex-m3")) == ("generic", *dsp), case
    path = tmp_path / "f32.tflite"
    path.write_bytes(mb.depthwise_conv2d("float32"))
    assert _dw_variants(path, M4) == ()


def _tflite_mbqm(x: int, m: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier on Python integers (the definition)."""
    left, right = max(shift, 0), max(-shift, 0)
    a = x * (1 << left)
    ab = a * m
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    hi = (abs(v) >> 31) * (1 if v >= 0 else -1)  # C division: truncates toward zero
    mask = (1 << right) - 1
    rem = hi & mask
    threshold = (mask >> 1) + (1 if hi < 0 else 0)
    return (hi >> right) + (1 if rem > threshold else 0)


def test_fast_requantisation_equals_multiply_by_quantized_multiplier():
    """The SMMULR formula the DSP kernels use, evaluated as the C does, equals TFLite's
    arithmetic at and around its rounding ties, and is refused where it would not."""
    from microtvm_tasks.compiler.quant import quantize_multiplier

    rng = np.random.default_rng(5)
    w = np.full((1, 3, 3, 1), 127, np.int64)
    for real in [0.4999, 0.3, 0.0123, 1e-3, 7.7e-5, 2.0 ** -20]:
        m, s = quantize_multiplier(real)
        for zp in (-128, -3, 0, 127):
            rq = fast_requant([m], [s], np.array([1000]), w, zp)
            assert rq is not None
            m_, c1, right = (int(v) for v in rq)
            bound = 1000 + 255 * 9 * 127
            accs = list(rng.integers(-bound, bound, 3000))
            for k in range(-3, 4):  # values whose product lands on a rounding tie
                base = ((1 << (30 + right)) // m) * (1 if k % 2 else -1)
                accs += [base + k, -base + k, k]
            for acc in accs:
                acc = int(acc)
                prod = 2 * acc * m_ + (1 << 31)
                hi = prod >> 32
                fast = (hi + c1 + (-1 if hi < 0 else 0)) >> right
                assert fast == _tflite_mbqm(acc, m, s) + zp, (real, zp, acc)
    for real in (1.5, 0.5, 0.999):  # a left shift, or no right shift: the fast path does not apply
        m, s = quantize_multiplier(real)
        assert fast_requant([m], [s], np.array([0]), w, 0) is None
    m, s = quantize_multiplier(0.01)
    assert fast_requant([m], [s], np.array([1 << 30]), w, 0) is None  # |acc| could reach 2^30


def test_reorder_c1_is_a_permutation():
    w = np.arange(3 * 7 * 10, dtype=np.int64).reshape(1, 3, 7, 10) % 251 - 125
    r = reorder_c1(w.astype(np.int8))
    assert sorted(r.tolist()) == sorted(w.astype(np.int8).reshape(-1).tolist())


@pytest.mark.parametrize("chain", ["mixed", "thin", "padded"])
def test_in_place_ring_buffer_with_the_dsp_variant(tmp_path, chain):
    """The in-place chains of test_compiler_core (ring buffers of 1..3 rows, kernels taller
    than the image, explicit padding) with every depthwise node on dsp_c4: same bits as
    TFLite Micro, same in-place decisions and arena as the generic kernel."""
    from test_compiler_core import _chain_model

    path = tmp_path / "chain.tflite"
    _chain_model(path, chain)
    dsp = compile_to_members(path, module_name="m", target=M4, choose=forced("dsp_c4"))
    gen = compile_to_members(path, module_name="m", target=M4, choose=forced("generic"))
    ir = dsp["src/m.ir.txt"].decode()
    assert "variant dsp_c4" in ir and "in place" in ir
    assert [ln for ln in ir.splitlines() if "in place" in ln] == [
        ln.replace("variant generic", "variant dsp_c4")
        for ln in gen["src/m.ir.txt"].decode().splitlines() if "in place" in ln
    ]
    model = CompiledModel(dsp, tmp_path / "c")
    generic = CompiledModel(gen, tmp_path / "g")
    assert model.meta["workspace_size_bytes"] == generic.meta["workspace_size_bytes"]
    ref = TFLM(path)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = random_inputs(model.inputs, rng)
        assert np.array_equal(model.run(x)[0], ref.run(x)[0])


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m3"])
def test_dsp_variants_build_warning_free_for_cortex_m(tmp_path, cpu):
    fpu = {"cortex-m4": ["-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], "cortex-m7": ["-mfloat-abi=hard",
           "-mfpu=fpv5-d16"], "cortex-m3": ["-mfloat-abi=soft"]}[cpu]
    opts = ["-O0", "-O1", "-O2", "-O3", "-Os"] if cpu == "cortex-m4" else ["-O2", "-Os"]
    for case, variant in [("c11_same_s2_odd", "dsp_c4"), ("c1_dm6_3x7_tail", "dsp_c1")]:
        path = tmp_path / f"{case}.tflite"
        path.write_bytes(CASES[case]())
        members = compile_to_members(path, module_name="m", target=cpu, choose=forced(variant))
        for opt in opts:
            flags = [f"-mcpu={cpu}", "-mthumb", *fpu, opt, "-std=c99", "-Wall", "-Wextra", "-Werror"]
            arm_compile(members, tmp_path / f"{case}{opt}", flags)


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="qemu-system-arm and arm-none-eabi-gcc are needed")
def test_kws_with_dsp_depthwise_on_the_m4_matches_tflite_micro(tmp_path):
    """kws compiled for cortex-m4 (its four depthwise layers on dsp_c4, in place) on QEMU's
    mps2_an386: outputs equal TFLite Micro's for inputs that do not saturate the model."""
    from test_qemu_arm import MODELS, _generate, _tflm_outputs

    from microtvm_tasks.compiler import compile_model

    model = MODELS / "kws.tflite"
    if not model.exists():
        pytest.skip(f"{model} not present")
    mlf = compile_model(model, tmp_path / "kws.tar", target="cortex-m4")
    members = compile_to_members(model, target="cortex-m4")
    ir = members["src/default.ir.txt"].decode()
    assert ir.count("variant dsp_c4") == 4 and "variant dsp_c4, in place" in ir
    project = _generate(tmp_path, mlf, "mps2_an386")
    rng = np.random.default_rng(4)
    with device_session(project) as (session, desc):
        seen = set()
        for _ in range(3):
            xs = [rng.integers(-40, 40, size=t.shape).astype(np.int8) for t in desc.inputs]
            for i, x in enumerate(xs):
                session.set_input(i, x)
            session.run(1)
            (want,) = _tflm_outputs(model, xs, 1)
            got = session.get_output(0)
            np.testing.assert_array_equal(got, want.reshape(got.shape))
            seen.add(tuple(want.reshape(-1).tolist()))
        assert len(seen) > 1 and any(len(set(s)) > 2 for s in seen), "outputs too saturated"
