"""The built-in compiler on every reference model in ../shared/models.

int8 models must match the TFLite Micro interpreter bit for bit on 50 random inputs;
float32 models must stay within 1e-4 x the output range of LiteRT. The generated C must
build warning-free with gcc and arm-none-eabi-gcc, contain no malloc and no floating
point in the int8 paths, need no more arena than TFLite Micro's head, and compile to a
byte-identical archive twice.

The models directory is $MICROTVM_SHARED_MODELS or ../shared/models beside the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from compiler_harness import (  # noqa: E402
    ARM_FLAGS,
    TFLM,
    CompiledModel,
    LiteRT,
    arm_compile,
    random_inputs,
    tflm_arena,
)
from conftest import SHARED_MODELS  # noqa: E402
from model_builders import TFLiteBuilder  # noqa: E402

from microtvm_tasks.compiler import compile_model, compile_to_members  # noqa: E402
from microtvm_tasks.errors import CompileError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = SHARED_MODELS
TFLITE_MODELS = sorted(MODELS_DIR.glob("*.tflite")) if MODELS_DIR.is_dir() else []
N_INPUTS = 50

pytestmark = pytest.mark.skipif(not TFLITE_MODELS, reason=f"no reference models in {MODELS_DIR}")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{model name: (archive members, CompiledModel)}, built once for the module."""
    cache: dict[str, tuple[dict[str, bytes], CompiledModel]] = {}

    def get(path: Path):
        if path.name not in cache:
            members = compile_to_members(path)
            model = CompiledModel(members, tmp_path_factory.mktemp(path.stem))
            cache[path.name] = (members, model)
        return cache[path.name]

    return get


def _is_int8(model: CompiledModel) -> bool:
    return all(s["dtype"] == np.int8 for s in model.inputs + model.outputs)


@pytest.mark.parametrize("path", TFLITE_MODELS, ids=lambda p: p.stem)
def test_outputs_match_reference(path, compiled):
    _, model = compiled(path)
    rng = np.random.default_rng(1234)
    batches = [random_inputs(model.inputs, rng) for _ in range(N_INPUTS)]
    ours = [model.run(x) for x in batches]
    if _is_int8(model):
        ref = TFLM(path)
        for x, got in zip(batches, ours, strict=True):
            want = ref.run(x)
            for g, w in zip(got, want, strict=True):
                assert np.array_equal(g.reshape(-1), w.reshape(-1)), f"{path.name}: differs from TFLite Micro"
    else:
        ref = LiteRT(path)
        wants = [ref.run(x) for x in batches]
        for k in range(len(model.outputs)):
            got = np.stack([o[k].reshape(-1) for o in ours]).astype(np.float64)
            want = np.stack([w[k].reshape(-1) for w in wants]).astype(np.float64)
            tol = 1e-4 * max(float(want.max() - want.min()), 1e-12)
            assert np.abs(got - want).max() <= tol, (
                f"{path.name}: output {k} off by {np.abs(got - want).max()}"
            )


@pytest.mark.parametrize("path", TFLITE_MODELS, ids=lambda p: p.stem)
def test_arena_not_above_tflite_micro(path, compiled):
    members, model = compiled(path)
    head = tflm_arena(path)["head"]
    assert model.meta["workspace_size_bytes"] <= head
    assert "warning" not in model.build_log


@pytest.mark.parametrize("path", TFLITE_MODELS, ids=lambda p: p.stem)
def test_arm_build_clean_and_int8_paths_float_free(path, compiled, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    members, model = compiled(path)
    objs = arm_compile(members, tmp_path)  # -Wall -Wextra -Werror: raises on any warning
    lib1 = members[f"codegen/host/src/{model.name}_lib1.c"].decode()
    assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", lib1)
    if _is_int8(model):
        # soft-float build: any float or double arithmetic would call an __aeabi_f*/d* helper
        soft = tmp_path / "soft"
        soft.mkdir()
        flags = [f for f in ARM_FLAGS if f != "-Os"] + ["-O2", "-mfloat-abi=soft"]
        obj = arm_compile(members, soft, flags)
        nm = shutil.which("arm-none-eabi-nm")
        if nm:
            syms = subprocess.run(
                [nm, "-u", *map(str, obj)], capture_output=True, text=True, timeout=60
            ).stdout
            assert not re.search(r"__aeabi_[fd]|\bexpf?\b|__aeabi_[ui]2[fd]", syms), syms
        # and textually: no float in the bodies of the int8 kernels the model uses
        for m in re.finditer(r"MT_KERNEL \w+ (mt_\w+_s8)\(", lib1):
            body = lib1[m.end() : lib1.find("\n}\n", m.end())]
            assert not re.search(r"\b(float|double)\b", body), m.group(1)
    assert objs


def test_deterministic_and_fast(tmp_path):
    import time

    kws = MODELS_DIR / "kws_ref_model.tflite"
    if not kws.exists():
        pytest.skip("kws_ref_model.tflite missing")
    t0 = time.perf_counter()
    a = compile_model(kws, tmp_path / "a.tar").read_bytes()
    elapsed = time.perf_counter() - t0
    b = compile_model(kws, tmp_path / "b.tar").read_bytes()
    assert a == b
    assert elapsed < 2.0


def test_unsupported_operator_names_operator_node_and_model(tmp_path):
    b = TFLiteBuilder()
    x = b.tensor("x", [1, 4], "float32")
    y = b.tensor("cosine_out", [1, 4], "float32")
    b.op("COS", [x], [y])
    path = tmp_path / "cosine_model.tflite"
    path.write_bytes(b.build([x], [y]))
    with pytest.raises(CompileError) as e:
        compile_model(path, tmp_path / "o.tar")
    msg = str(e.value)
    assert "COS" in msg and "cosine_out" in msg and "cosine_model.tflite" in msg


def test_unsupported_dtype_is_an_error(tmp_path):
    b = TFLiteBuilder()
    x = b.tensor("x", [1, 4], "int16", scale=0.1, zero_point=0)
    w = b.tensor("w", [2, 4], "int8", data=np.ones((2, 4)), scale=0.1, zero_point=0)
    y = b.tensor("fc_out", [1, 2], "int16", scale=0.1, zero_point=0)
    b.op("FULLY_CONNECTED", [x, w, -1], [y])
    path = tmp_path / "int16_model.tflite"
    path.write_bytes(b.build([x], [y]))
    with pytest.raises(CompileError, match=r"int16_model.tflite.*FULLY_CONNECTED.*fc_out.*int16"):
        compile_model(path, tmp_path / "o.tar")
