"""Embedding microtvm-tasks in your own doit build: tasks of yours before and after ours.

Run it from this directory:

    doit list                   # export_model, compile, generate, build, ..., size_report
    doit size_report            # export -> compile -> generate -> build -> size report
    doit size_report            # again: nothing to do
    doit clean -a               # remove everything the tasks made

How the pieces connect:

* Upstream: `export_model` stands in for your training or export step. It declares the
  .tflite as its target; projects.yaml names that file as the model's path, so doit sees
  that `compile:sine` depends on `export_model` (a target of one task is a file_dep of the
  other) and runs it first, and only when its inputs changed.
* Ours: `workspace_tasks()` returns DOIT_CONFIG and the generators of `compile:<model>`,
  `generate:<project>`, `build:<project>`, `flash:<project>` and `run:<project>`.
  Put them in this module's globals and doit finds them as if written here.
* Downstream: `size_report:<project>` depends on `build:<project>` (task_dep) and reads
  what the build made from the project's `.tvmc.json` (`build_record`). It is up to date
  while the build it reported on is still the project's last build, so a rebuild (and
  only a rebuild) redoes the report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from microtvm_tasks.tasks import build_record, workspace_tasks

HERE = Path(__file__).resolve().parent
#: What the export step starts from (a real project would train, or convert a saved model).
SOURCE_MODEL = HERE.parent.parent / "models" / "sine.tflite"
EXPORTED = HERE / "exported" / "sine.tflite"

# Our tasks and configuration: DOIT_CONFIG, task_compile, task_generate, task_build, ...
_ours = workspace_tasks(HERE / "projects.yaml")
globals().update(_ours)
WORKSPACE = _ours["MICROTVM_WORKSPACE"].ws
DOIT_CONFIG["default_tasks"] = ["size_report"]  # noqa: F821 - defined by the update above


def _export(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)  # your exporter writes the .tflite here


def task_export_model():
    """Produce the .tflite that compile:sine consumes (stands in for a training/export step)."""
    return {
        "actions": [(_export, [SOURCE_MODEL, EXPORTED])],
        "file_dep": [SOURCE_MODEL],
        "targets": [EXPORTED],
        "clean": True,
    }


def _size_report(project: str, project_dir: Path, report: Path) -> dict:
    """Sizes of what build:<project> produced: `size` for ELF files, bytes for the rest."""
    record = build_record(project_dir)
    lines = [f"size report of {project} (build {record['id'][:12]})"]
    others = 0
    for rel in record["outputs"]:
        path = project_dir / rel
        if not path.is_file():
            continue
        head = path.read_bytes()[:18]
        # ELF executables and shared objects (e_type 2 or 3), not object files (1)
        if head[:4] == b"\x7fELF" and head[16] in (2, 3):
            if shutil.which("size"):
                out = subprocess.run(["size", str(path)], capture_output=True, text=True, timeout=60)
                lines.append(f"{rel}:\n{out.stdout.rstrip()}")
            else:
                lines.append(f"{rel}: {path.stat().st_size} bytes (install binutils for `size`)")
        else:
            others += path.stat().st_size
    lines.append(f"other build outputs: {others} bytes")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"build_id": record["id"]}  # saved by doit: the build this report describes


def _reported_current_build(task, values, project_dir: Path) -> bool:
    record = build_record(project_dir)
    return record is not None and values.get("build_id") == record["id"]


def task_size_report():
    """Report the size of each project's build (runs after build:<project>)."""
    for name in WORKSPACE.projects:
        project_dir = WORKSPACE.project_dir(name)
        report = WORKSPACE.build_dir / "reports" / f"{name}.size.txt"
        yield {
            "name": name,
            "actions": [(_size_report, [name, project_dir, report])],
            "task_dep": [f"build:{name}"],
            "targets": [report],
            "uptodate": [(_reported_current_build, [project_dir])],
            "clean": True,
            "doc": f"size of the build of {name} -> {report.relative_to(HERE)}",
        }
