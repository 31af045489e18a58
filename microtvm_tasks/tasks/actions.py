"""The actions of the doit tasks: what compile, generate, build, flash, run and clean do.

Each is a plain function of strings and dicts (doit pickles them for `-n N` workers);
heavy imports (the compiler, numpy, the session) happen inside them, never at load.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MicrotvmError, StateError, ToolNotFoundError
from ..state import try_load_state
from .locks import device_lock, project_lock


def _pid_alive(pid: int) -> bool:
    """Is process `pid` running (a temporary file named after it may still be written)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _project_lock(project_dir: str, lock_dir: str | None) -> Any:
    """The project's lock (one stage of a project directory at a time), or nothing without a lock dir."""
    import contextlib

    if lock_dir is None:
        return contextlib.nullcontext()
    return project_lock(lock_dir, os.path.basename(os.path.normpath(project_dir)))


def _which(tool: str) -> str | None:
    return shutil.which(tool)


def tvmc_argv(tvmc: str, model: str, out: str, module_name: str, options: Mapping[str, Any]) -> list[str]:
    """`tvmc compile MODEL --output-format mlf -o OUT --module-name N --<opt> <value>...`."""
    argv = [tvmc, "compile", model, "--output-format", "mlf", "-o", out, "--module-name", module_name]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is True:
                argv.append(flag)
            elif v is False or v is None:
                continue
            else:
                argv += [flag, str(v)]
    return argv


def compile_action(model_path: str, compiler: str, options: dict[str, Any], module_name: str,
                   out: str, target: str | None = None, tuning_log: str | None = None) -> None:
    """compile:<model>[@<target or project>]: write build/mlf/<key>.tar atomically (temp file +
    rename); the builtin compiler tunes for `target` and picks variants from `tuning_log`."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_path.parent.glob(f".{out_path.stem}.*.tmp{out_path.suffix}"):
        pid = stale.name[len(out_path.stem) + 2:].split(".", 1)[0]
        if not (pid.isdigit() and _pid_alive(int(pid))):
            stale.unlink(missing_ok=True)  # left by a killed compile (not one still running elsewhere)
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp{out_path.suffix}")  # tvmc wants .tar
    try:
        if compiler == "builtin":
            from ..compiler import compile_model

            compile_model(model_path, tmp, module_name=module_name, target=target, tuning_log=tuning_log,
                          **options)
        elif compiler == "tvmc":
            import subprocess

            tvmc = _which("tvmc")
            if tvmc is None:
                raise ToolNotFoundError(
                    f"model {model_path} uses `compiler: tvmc`, but `tvmc` is not on PATH; "
                    "install TVM <= 0.18 (pip install apache-tvm==0.18.*) or use `compiler: builtin`"
                )
            argv = tvmc_argv(tvmc, model_path, str(tmp), module_name, options)
            print("$ " + " ".join(argv), flush=True)
            try:
                rc = subprocess.run(argv, timeout=3600, check=False).returncode
            except subprocess.TimeoutExpired:
                raise MicrotvmError(f"tvmc compile of {model_path} did not finish within an hour") from None
            if rc != 0:
                from ..errors import CompileError

                raise CompileError(
                    f"tvmc compile {model_path} failed (exit status {rc}); see its output above")
            if tmp.is_file():
                from ..mlf import read_mlf

                read_mlf(tmp)  # what tvmc wrote must be a valid archive before it is taken as done
        elif compiler == "mlf":
            from ..mlf import read_mlf

            read_mlf(model_path)  # validates, or raises MLFError saying what is wrong
            shutil.copyfile(model_path, tmp)
        else:  # the schema allows nothing else
            raise ConfigError(f"unknown compiler {compiler!r}")
        if not tmp.is_file():
            raise MicrotvmError(f"compiling {model_path} produced no archive")
        os.replace(tmp, out_path)
        print(f"wrote {out_path}")
    finally:
        if tmp.exists():
            tmp.unlink()


def _force_requested(spec_force: bool) -> bool:
    if spec_force:
        return True
    try:
        from doit import get_var

        value = get_var("force", None)
    except Exception:  # pragma: no cover - outside doit
        value = None
    if value is None:
        value = os.environ.get("MICROTVM_FORCE")
    return str(value).strip().lower() in ("1", "true", "yes", "on") if value is not None else False


def generate_action(project_dir: str, mlf: str, template: str, options: dict[str, Any], platform: str | None,
                    spec_force: bool, cache_dir: str, where: str, force: bool = False,
                    lock_dir: str | None = None) -> None:
    """generate:<project>: Project API generate_project into a temp dir, renamed into place
    (under the project's lock when `lock_dir` is given)."""
    from ..errors import HandEditError
    from ..project import create_project

    try:
        with _project_lock(project_dir, lock_dir):
            create_project(project_dir, mlf, template, options, force=force or _force_requested(spec_force),
                           platform=platform, cache_dir=cache_dir, where=where)
    except HandEditError as e:
        name = os.path.basename(os.path.normpath(project_dir))
        raise HandEditError(f"{e}\nHere: doit generate:{name} force=1") from None
    print(f"generated {project_dir}")


def build_action(project_dir: str, options: dict[str, Any], lock_dir: str | None = None) -> None:
    """build:<project>: the project's own server builds it; the build is recorded in .tvmc.json.
    Under the project's lock (given `lock_dir`): never two builds in one project directory."""
    from ..project import build_project

    with _project_lock(project_dir, lock_dir):
        build_project(project_dir, options)
    print(f"built {project_dir}")


def flash_action(project_dir: str, options: dict[str, Any], lock_dir: str, key: str) -> None:
    """flash:<project>: under the project's lock, then the device's."""
    from ..project import flash_project

    with _project_lock(project_dir, lock_dir), device_lock(lock_dir, key):
        flash_project(project_dir, options)
    print(f"flashed {project_dir}")


def fail_with(message: str) -> Any:
    """The action of a task whose project is misconfigured: fail with the load-time message."""
    from doit.exceptions import TaskFailed

    return TaskFailed(message)


def tune_action(model_path: str, template: str, options: dict[str, Any], log: str, work_dir: str,
                target: str, compile_options: dict[str, Any], module_name: str, cache_dir: str,
                lock_dir: str, key: str) -> str:
    """tune:<project>: measure the kernel variants the log lacks, on the project's device
    (under its lock: tuning flashes it), and rewrite the log; the table is the task's output."""
    from ..tune import tune_model

    with device_lock(lock_dir, key):
        try:
            result = tune_model(model_path, template, options, log, work_dir=work_dir, target=target,
                                module_name=module_name, compile_options=compile_options,
                                cache_dir=cache_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    return result.table()


def run_action(project_dir: str, options: dict[str, Any], lock_dir: str, key: str, run_dir: str,
               inputs: str | None) -> str:
    """run:<project>: one inference on the device, results in build/runs/<project>/.

    Returns the results text, which run_logged shows even when output goes to the log only.
    """
    with _project_lock(project_dir, lock_dir), device_lock(lock_dir, key):
        return run_and_record(project_dir, options, run_dir, inputs)


def _npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def run_and_record(project_dir: str, options: Mapping[str, Any], run_dir: str, inputs: str | None) -> str:
    """Run once through `session.run_project`; write inputs.npz, outputs.npz, summary.json.

    Returns the results as text (also printed).

    summary.json is written last and names the flash it ran on: it is what makes
    `ran_current_flash` true, so an interrupted run is redone.
    """
    import numpy as np

    from ..fsutil import atomic_write_bytes, atomic_write_json, sha256_file
    from ..project import record_outputs, stat_tree
    from ..session import run_project
    from ..state import load_state

    state = load_state(project_dir)
    if not state.last_flash:
        raise StateError(f"{project_dir}: not flashed yet; run `doit flash:<project>` first")
    given = None
    if inputs:
        with np.load(inputs) as data:
            given = {k: data[k] for k in data.files}
    before = stat_tree(project_dir)
    t0 = time.perf_counter()
    result = run_project(project_dir, given, options=dict(options))
    wall = time.perf_counter() - t0
    record_outputs(project_dir, "run", before)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(os.path.join(run_dir, "inputs.npz"),
                       _npz_bytes({f"input_{i}": np.asarray(a) for i, a in enumerate(result.inputs)}))
    atomic_write_bytes(os.path.join(run_dir, "outputs.npz"),
                       _npz_bytes({f"output_{i}": np.asarray(a) for i, a in enumerate(result.outputs)}))
    summary = dict(result.summary())
    summary.update({
        "project": os.path.basename(os.path.normpath(project_dir)),
        "platform": state.platform,
        "flash_id": state.last_flash.get("id"),
        "build_id": state.last_flash.get("build_id"),
        "mlf_hash": state.mlf_hash,
        "inputs_file": inputs,
        "inputs_sha256": sha256_file(inputs) if inputs else None,
        "wall_seconds": wall,
        "time": time.time(),
    })
    atomic_write_json(os.path.join(run_dir, "summary.json"), summary)
    text = f"{format_results(result)}\nresults in {run_dir}/ (inputs.npz, outputs.npz, summary.json)"
    print(text)
    return text


def _real(t: Any, a: Any) -> Any:
    import numpy as np

    return t.dequantize(a) if getattr(t, "quantized", False) else np.asarray(a, dtype=np.float64)


def format_results(result: Any) -> str:
    """The outputs as text; a one-number-in, one-number-out model (the sine demo) as x, f(x), sin(x).

    Quantised tensors are shown dequantised (real values).
    """
    import math

    import numpy as np

    desc = result.description
    ins = [_real(t, a) for t, a in zip(desc.inputs, result.inputs, strict=False)]
    outs = [_real(t, a) for t, a in zip(desc.outputs, result.outputs, strict=False)]
    med = result.summary().get("median_seconds_per_inference")
    timing = f"{med * 1e6:.1f} us per inference" if med else "no timing"
    if len(ins) == 1 == len(outs) and np.size(ins[0]) == 1 == np.size(outs[0]):
        x = float(np.ravel(ins[0])[0])
        y = float(np.ravel(outs[0])[0])
        if "sin" in desc.name.lower():
            return (f"x = {x:.4f}   model sin(x) = {y:+.4f}   true sin(x) = {math.sin(x):+.4f}   "
                    f"error = {y - math.sin(x):+.4f}   ({timing})")
        return f"input = {x:.4f}   output = {y:+.4f}   ({timing})"
    lines = []
    for i, (t, a) in enumerate(zip(desc.outputs, outs, strict=False)):
        flat = np.ravel(a)
        shown = ", ".join(f"{v:.4g}" for v in flat[:10]) + (", ..." if flat.size > 10 else "")
        top = f"  argmax {int(np.argmax(flat))}" if flat.size > 1 else ""
        lines.append(f"output_{i} {t.name} {list(t.shape)}: [{shown}]{top}")
    lines.append(f"({timing})")
    return "\n".join(lines)


def clean_project(project_dir: str, run_dir: str) -> None:
    """`doit clean` of generate:<p>: remove the project, unless it holds hand edits (then back it up)."""
    from ..project import check_existing_project

    p = Path(project_dir)
    if p.exists():
        backup = check_existing_project(p, force=True)
        if backup is None:
            shutil.rmtree(p)
            print(f"removed {p}")
    if Path(run_dir).exists():
        shutil.rmtree(run_dir)
        print(f"removed {run_dir}")


def clean_build_outputs(project_dir: str) -> None:
    """`doit clean build:<p>`: remove the files the last build wrote and forget the build."""
    from ..state import save_state

    state = try_load_state(project_dir, corrupt_ok=True)
    if state is None:
        return
    for rel in state.artefacts.get("build", {}).get("outputs", []):
        try:
            os.unlink(os.path.join(project_dir, rel))
        except OSError:
            pass
    state.artefacts.pop("build", None)
    save_state(project_dir, state)
    print(f"removed the build outputs of {project_dir}")


def clean_dir(path: str) -> None:
    if Path(path).exists():
        shutil.rmtree(path)
        print(f"removed {path}")
