"""End to end on the host platform: every int8 and float .tflite model in ../shared/models is
compiled by our compiler, generated into a host project, built, run over the run protocol
through the project's Project API transport, and compared with the TFLite Micro interpreter
(bit-exact for int8) and LiteRT (float: within 1e-4 of the output range)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MODELS

REPO = Path(__file__).resolve().parents[1]
MODELS = sorted(p.name for p in SHARED_MODELS.glob("*.tflite")) if SHARED_MODELS.is_dir() else []

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not MODELS, reason=f"no .tflite models in {SHARED_MODELS}"),
    pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                       reason="make and cc needed"),
]


def _references(model: Path, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    tflm_rt = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    data = model.read_bytes()
    tflm = tflm_rt.Interpreter.from_bytes(data, arena_size=4 << 20)
    for i, x in enumerate(inputs):
        tflm.set_input(x, i)
    tflm.invoke()
    lite = litert.Interpreter(model_content=data)
    lite.allocate_tensors()
    for d, x in zip(lite.get_input_details(), inputs, strict=True):
        lite.set_tensor(d["index"], x)
    lite.invoke()
    n = len(lite.get_output_details())
    return ([np.array(tflm.get_output(i), copy=True) for i in range(n)],
            [np.array(lite.get_tensor(d["index"]), copy=True) for d in lite.get_output_details()])


def _project(tmp_path: Path, model: Path, project_type: str = "host_driven", **options) -> Path:
    from microtvm_tasks.compiler import compile_model
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project import build_project, create_project

    mlf = compile_model(model, tmp_path / f"{model.stem}.tar")
    proj = tmp_path / f"{model.stem}_{project_type}"
    create_project(proj, mlf, find_template("host"),
                   {"project_type": project_type, "warning_as_error": True, **options})
    build_project(proj)
    return proj


@pytest.mark.parametrize("name", MODELS)
def test_model_on_host_matches_tflite_micro(tmp_path, name):
    from microtvm_tasks.session import run_project

    model = SHARED_MODELS / name
    proj = _project(tmp_path, model)
    result = run_project(proj, fill_mode="random", seed=7, repeat=2, number=2)
    assert len(result.timings) == 2 and all(t > 0 for t in result.timings)
    tflm, lite = _references(model, result.inputs)
    assert len(result.outputs) == len(tflm)
    for got, want, lr in zip(result.outputs, tflm, lite, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        if got.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=f"{name}: int outputs differ from TFLite Micro")
        else:
            lr64 = lr.astype(np.float64)
            scale = max(float(lr64.max() - lr64.min()), float(np.abs(lr64).max()), 1e-6)
            np.testing.assert_allclose(got, lr64, rtol=0, atol=1e-4 * scale, err_msg=f"{name} vs LiteRT")


def test_standalone_demo_prints_the_sine(tmp_path):
    name = "hello_world_float.tflite"
    if name not in MODELS:
        pytest.skip(f"{name} not in {SHARED_MODELS}")
    x = np.array([[1.0]], dtype=np.float32)
    np.savez(tmp_path / "x.npz", input_0=x)
    proj = _project(tmp_path, SHARED_MODELS / name, "aot_standalone_demo",
                    standalone_input=str(tmp_path / "x.npz"))
    out = subprocess.run([str(proj / "build" / "main")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    m = re.search(r"mt: output 0 \S+ float32 \[1,1\] = (\S+)", out.stdout)
    assert m, out.stdout
    _, (lr,) = _references(SHARED_MODELS / name, [x])
    assert float(m.group(1)) == pytest.approx(float(lr.reshape(-1)[0]), abs=1e-5)
    assert abs(float(m.group(1)) - np.sin(1.0)) < 0.1  # it is a sine model
