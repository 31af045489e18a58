"""examples/embedding: a user's dodo.py with a task upstream of compile: and one downstream of build:."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_tasks_support import executed_tasks

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                       reason="needs the host C compiler (cc) and make"),
]


def doit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_embedding_example(tmp_path: Path) -> None:
    example = tmp_path / "examples" / "embedding"
    shutil.copytree(REPO / "examples" / "embedding", example,
                    ignore=shutil.ignore_patterns("build", "exported", ".tvmc", "__pycache__"))
    (tmp_path / "models").mkdir()
    source = tmp_path / "models" / "sine.tflite"
    shutil.copy(REPO / "models" / "sine.tflite", source)

    listing = doit(example, "list").stdout
    assert "export_model" in listing and "size_report" in listing and "compile" in listing

    ran = executed_tasks(doit(example).stdout)  # default task: size_report
    assert ran == ["export_model", "compile:sine", "generate:sine_host", "build:sine_host",
                   "size_report:sine_host"]
    report = (example / "build" / "reports" / "sine_host.size.txt").read_text()
    assert "build/main" in report
    if shutil.which("size"):
        assert "text" in report and "data" in report and "bss" in report

    assert executed_tasks(doit(example).stdout) == []

    # The upstream source changes: everything downstream reruns, in order.
    shutil.copy(REPO / "models" / "sine_float.tflite", source)
    assert executed_tasks(doit(example).stdout) == ran

    # A hand edit of the generated project: rebuild, then a new size report; nothing upstream.
    main_c = next((example / "build" / "projects" / "sine_host" / "src").glob("main.c"))
    main_c.write_text(main_c.read_text() + "\n/* tweak */\n")
    assert executed_tasks(doit(example).stdout) == ["build:sine_host", "size_report:sine_host"]

    doit(example, "clean", "-a")
    assert not (example / "exported" / "sine.tflite").exists()
    assert not (example / "build" / "projects" / "sine_host").exists()
