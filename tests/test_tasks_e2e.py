"""End to end through doit on the real host platform: compile sine, generate, build with cc, run."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_tasks_support import DODO, executed_tasks

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                       reason="needs the host C compiler (cc) and make"),
]


def doit(ws: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=ws, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def host_ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(REPO / "models" / "sine.tflite", ws / "sine.tflite")
    buf = io.BytesIO()
    np.savez(buf, input_0=np.array([[1.5708]], dtype=np.float32))
    (ws / "x.npz").write_bytes(buf.getvalue())
    (ws / "dodo.py").write_text(DODO)
    (ws / "projects.yaml").write_text(textwrap.dedent("""\
        models:
          sine: {path: sine.tflite, compiler: builtin}
        projects:
          sine_host: {model: sine, platform: host}
          sine_host_x: {model: sine, platform: host, inputs: x.npz, options: {cflags: -O1}}
    """))
    return ws


def test_run_sine_on_host_through_doit(host_ws: Path) -> None:
    proc = doit(host_ws, "run:sine_host")
    assert executed_tasks(proc.stdout) == ["compile:sine", "generate:sine_host", "build:sine_host",
                                           "flash:sine_host", "run:sine_host"]
    assert "model sin(x)" in proc.stdout and "true sin(x)" in proc.stdout
    run = host_ws / "build" / "runs" / "sine_host"
    with np.load(run / "inputs.npz") as i, np.load(run / "outputs.npz") as o:
        assert i.files == ["input_0"] and o.files == ["output_0"]
        assert i["input_0"].dtype == np.int8 and o["output_0"].shape == (1, 1)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["project"] == "sine_host" and summary["tick_hz"] > 0
    assert summary["median_seconds_per_inference"] is not None and summary["wall_seconds"] > 0
    log = host_ws / ".tvmc" / "logs" / "build_sine_host.log"
    assert log.exists()

    # nothing changed: nothing runs
    proc = doit(host_ws, "run:sine_host")
    assert executed_tasks(proc.stdout) == [] and "nothing to do" in proc.stdout

    # the other project reuses the compiled model; its inputs file is used and quantised
    proc = doit(host_ws, "run:sine_host_x")
    assert executed_tasks(proc.stdout) == ["generate:sine_host_x", "build:sine_host_x", "flash:sine_host_x",
                                           "run:sine_host_x"]
    summary = json.loads((host_ws / "build" / "runs" / "sine_host_x" / "summary.json").read_text())
    y = np.load(host_ws / "build" / "runs" / "sine_host_x" / "outputs.npz")["output_0"]
    out = summary["description"]["outputs"][0]
    real = (float(y.ravel()[0]) - out["zero_point"]) * out["scale"]
    assert abs(real - 1.0) < 0.1, real  # sin(pi/2)

    # a new inputs file reruns only the run
    buf = io.BytesIO()
    np.savez(buf, input_0=np.array([[0.0]], dtype=np.float32))
    (host_ws / "x.npz").write_bytes(buf.getvalue())
    assert executed_tasks(doit(host_ws, "run:sine_host_x").stdout) == ["run:sine_host_x"]


def test_repository_dodo_lists_every_demo_task() -> None:
    proc = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for task in ("compile:sine", "compile:kws", "generate:sine_host", "build:kws_host", "flash:sine_host",
                 "run:sine_host", "run:sine_qemu_arm", "flash:kws_qemu_arm", "build:sine_zephyr",
                 "run:sine_arduino"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.split()[0] == task)
        assert len(line.split()) > 2, f"{task} has no doc"
