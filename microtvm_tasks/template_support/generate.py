"""Pieces of generate_project every template does the same way.

A generated project is self-contained: it carries its own copy of the server script and
its implementation file (later stages talk to that copy), the options it was generated
with (so build/flash work from the project alone), and anything the user unpacked into it
with TVM's ``extra_files_tar`` option, which is user input and so checked member by member.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from microtvm_tasks.errors import OptionError, TemplateError
from microtvm_tasks.mlf import extract_mlf
from microtvm_tasks.project_api.server import SERVER_PYTHON_FILENAME

PROJECT_CONFIG = "microtvm_project.json"


def copy_files(src_dir: Path, dest_dir: Path, names: Iterable[str]) -> None:
    """Copy `names` from `src_dir` to `dest_dir` (metadata kept: the server stays executable)."""
    for name in names:
        shutil.copy2(src_dir / name, dest_dir / name)


def copy_server(template_dir: Path, project_dir: Path, impl_file: str, *data_files: str) -> None:
    """Put the server script, its implementation file and its data (boards.json...) into the
    project: a project answers the Project API with its own copy of the server."""
    copy_files(template_dir, project_dir, (SERVER_PYTHON_FILENAME, impl_file, *data_files))


def generate_atomically(project_dir: Path, platform: str, fill: Callable[[Path], None]) -> None:
    """Build a project with ``fill(tmp)`` in a temporary directory beside `project_dir` and
    rename it into place, so a failed generate leaves no half-written project.

    `project_dir` must be absent or empty (a TemplateError naming it otherwise).
    """
    if project_dir.exists() and any(project_dir.iterdir()):
        raise TemplateError(f"{platform}: project directory {project_dir} exists and is not empty")
    project_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{project_dir.name}.", dir=project_dir.parent))
    try:
        fill(tmp)
        if project_dir.exists():
            project_dir.rmdir()
        os.replace(tmp, project_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_project_config(project_dir: Path, config: Mapping[str, Any], name: str = PROJECT_CONFIG) -> None:
    """Record the generate-time options (sorted, indented JSON: reproducible, diffable)."""
    (project_dir / name).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")


def read_project_config(project_dir: Path, name: str = PROJECT_CONFIG) -> dict[str, Any]:
    """The options recorded at generate time; {} in the template itself (nothing recorded)."""
    path = project_dir / name
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def recorded_option(
    project_dir: Path, options: Mapping[str, Any] | None, name: str, default: Any = None
) -> Any:
    """An option from this call, else the one recorded at generate time, else `default`:
    build/flash callers need not repeat what generate_project was told."""
    value = options.get(name) if options else None
    if value is None:
        value = read_project_config(project_dir).get(name)
    return default if value is None else value


def compile_definitions(value: Any) -> list[str]:
    """The compile_definitions option as compiler flags, however it was given: TVM passes a
    list of strings, a command line one space-separated string (shell quoting kept). A bare
    NAME[=VALUE] becomes -DNAME[=VALUE]; a word that already is a flag (-DX, -UY) stays."""
    if not value:
        return []
    items = [str(v) for v in value] if isinstance(value, (list, tuple)) else shlex.split(str(value))
    return [item if item.startswith("-") else f"-D{item}" for item in items if item and item != "-D"]


def unpack_extra_files(
    tar_path: Path, project_dir: Path, error: Callable[[str], BaseException] = TemplateError
) -> None:
    """Unpack the extra_files_tar option into the project: regular files and directories only,
    every path inside the project (checked here too, for Pythons whose tarfile has no "data"
    filter). Problems raise ``error(message)``, the template's own error class."""
    if not tar_path.is_file():
        raise error(f"extra_files_tar {tar_path}: no such file")
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            root = project_dir.resolve()
            for m in members:
                target = (root / m.name).resolve()
                if not (m.isfile() or m.isdir()) or (target != root and root not in target.parents):
                    raise error(
                        f"extra_files_tar {tar_path}: member {m.name!r} is not a plain file "
                        "inside the project"
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(project_dir, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                tar.extractall(project_dir, members=members)
    except tarfile.TarError as exc:
        raise error(f"extra_files_tar {tar_path}: not a readable tar archive ({exc})") from None


MODEL_SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp")


@contextlib.contextmanager
def extracted_model(mlf: Path, platform: str) -> Iterator[tuple[Path, list[Path]]]:
    """The MLF archive extracted (and validated) into a temporary directory, with its model
    sources and headers (``codegen/host/**``, sorted); the directory goes away afterwards.

    Templates that lay the model's files out their own way (flat for Arduino, under
    src/model for Zephyr) copy from here and write the runtime glue from the extracted tree.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mlf_dir = Path(tmp)
        extract_mlf(mlf, mlf_dir, replace=True)
        codegen = mlf_dir / "codegen" / "host"
        if not codegen.is_dir():
            raise TemplateError(f"{platform}: {mlf} has no codegen/host directory; is it an MLF archive?")
        sources = [p for p in sorted(codegen.rglob("*")) if p.is_file() and p.suffix in MODEL_SOURCE_SUFFIXES]
        yield mlf_dir, sources


def board_properties(boards: Mapping[str, dict[str, Any]], name: str | None, platform: str) -> dict[str, Any]:
    """A board's entry of boards.json, or an OptionError listing the boards there are."""
    if name not in boards:
        raise OptionError(f"{platform}: unknown board {name!r}; choose one of {', '.join(sorted(boards))}")
    return boards[name]


def standalone_inputs(
    mlf_dir: Path,
    npz_path: str | None,
    *,
    pattern: tuple[int, int, int, float],
    error: Callable[[str], BaseException] = TemplateError,
) -> dict[str, bytes]:
    """The input baked into an aot_standalone_demo program, as raw bytes per input name.

    From `npz_path` (arrays ``input_0``... or named after the model's inputs), else a fixed
    pattern, so the demo's printout is reproducible. ``pattern = (step, modulus, offset,
    divisor)``: byte i is ``(i * step + offset) % 256``, float i is
    ``((i * step) % modulus) / divisor - 1``; each template keeps its own figures so its
    generated demos stay byte for byte what they were.
    """
    from microtvm_tasks.runtime.glue import read_model_info

    info = read_model_info(mlf_dir)
    out: dict[str, bytes] = {}
    if npz_path:
        import numpy as np

        arrays = np.load(npz_path)
        for i, t in enumerate(info.inputs):
            key = f"input_{i}" if f"input_{i}" in arrays else t.name
            if key not in arrays:
                raise error(f"standalone_input {npz_path}: no array input_{i} or {t.name!r}")
            data = np.ascontiguousarray(np.asarray(arrays[key], dtype=t.dtype)).tobytes()
            if len(data) != t.nbytes:
                raise error(
                    f"standalone_input {npz_path}: {key} has {len(data)} bytes, "
                    f"input {t.name!r} needs {t.nbytes}"
                )
            out[t.name] = data
        return out
    step, modulus, offset, divisor = pattern
    for t in info.inputs:
        if t.dtype == "float32":
            import struct

            values = [((i * step) % modulus) / divisor - 1.0 for i in range(t.nbytes // 4)]
            out[t.name] = struct.pack(f"<{len(values)}f", *values)
        else:
            out[t.name] = bytes((i * step + offset) % 256 for i in range(t.nbytes))
    return out
