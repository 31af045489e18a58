"""doit task generators: compile, generate, build, flash and run, from projects.yaml.

`dodo.py` is three lines::

    from microtvm_tasks.tasks import workspace_tasks
    globals().update(workspace_tasks("projects.yaml"))

which gives `doit` the tasks `compile:<model>`, `generate:<project>`, `build:<project>`,
`flash:<project>`, `run:<project>` (and the groups `compile`, `generate`, ...), its
configuration (state in `.tvmc/doit.db`, a progress reporter, `build` as the default).

Up-to-date rules
================

Each rule is one small function or class below, named for what it checks; doit calls
them before a task and reruns the task when any says False. None starts a Project API
server: server info comes from `server_info.py`'s cache and everything else from the
project's `.tvmc.json`.

=========================  ===============================================================
task                       up to date when
=========================  ===============================================================
compile:<m>                the model's bytes are unchanged (doit's MD5 `file_dep`: a touch
                           is not a change), the archive exists, `options_unchanged`
generate:<p>               the MLF archive's bytes are unchanged (`file_dep`; an identical
                           recompile does not cascade), `.tvmc.json` exists,
                           `generated_from_current_template`, `options_unchanged`
                           (options whose earliest stage is generate_project)
build:<p>                  `built_from_current_generation`, `project_files_unchanged`
                           (hand edits rebuild), `options_unchanged` (build options)
flash:<p>                  `flashed_current_build`, `options_unchanged` (flash options)
run:<p>                    `ran_current_flash` (and inputs unchanged), `options_unchanged`
                           (open_transport options)
=========================  ===============================================================

Each stage records its result atomically only once it has finished (archive renamed
into place, project renamed into place, build record written after the build), so an
interrupted stage is never taken as done. Regenerating over hand edits stops with a
HandEditError unless `doit generate:<p> force=1` or `regenerate: force` in projects.yaml.

Output
======

Each task's output (ours, the Project API server's stdout, build tools) goes to
`.tvmc/logs/<task>.log`; it is also streamed live when doit runs one task at a time
(the default), and its tail is shown when a task fails in a parallel run (`doit -n 2`).
Device stages (flash, run) take a lock in `.tvmc/locks/` per board or port, so two
never talk to the same device at once. A MicrotvmError fails the task with its message
and no traceback.

This module is imported on every `doit` invocation: it imports nothing heavy (no numpy,
no compiler) at load time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .config import ModelSpec, ProjectSpec, Workspace, c_identifier, load_workspace, project_location
from .errors import ConfigError, MicrotvmError, OptionError, StateError, ToolNotFoundError
from .state import STATE_FILE, ProjectState, try_load_state

#: Lines of a failed task's log shown with its error (when the log was not streamed).
LOG_TAIL_LINES = 30

#: Longest wait for a device lock (a flash or run of another task on the same device).
LOCK_TIMEOUT_SEC = 3600.0

#: Project API methods -> our stage names (the task whose options_unchanged holds them).
STAGE_OF_METHOD = {"generate_project": "generate", "build": "build", "flash": "flash",
                   "open_transport": "run"}

#: Options that name a physical device: flash/run on the same value never overlap.
DEVICE_OPTIONS = ("serial_port", "port", "serial_number", "device", "usb_serial")


# =================================================================== up-to-date rules


class options_unchanged:  # noqa: N801 - named like doit's own `config_changed`
    """Up to date while this stage's options hash the same as at its last success.

    Like doit's `config_changed`, but with a key per stage so a task can hold several,
    and the digest saved only when the task succeeds. `doit forget` drops it (rerun).
    """

    def __init__(self, stage: str, options: Mapping[str, Any]) -> None:
        self.key = f"options:{stage}"
        self.options = dict(options)
        self.digest = json.dumps(self.options, sort_keys=True, default=str)

    def configure_task(self, task: Any) -> None:
        task.value_savers.append(lambda: {self.key: self.digest})

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        return values.get(self.key) == self.digest

    def __repr__(self) -> str:
        return f"options_unchanged({self.key!r}, {self.options!r})"


class _StateReader:
    """`.tvmc.json` parsed once per (path, mtime, size): several rules read the same file."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int], ProjectState | None]] = {}

    def __call__(self, project_dir: str | os.PathLike[str]) -> ProjectState | None:
        path = os.path.join(project_dir, STATE_FILE)
        try:
            st = os.stat(path)
        except OSError:
            return None
        sig = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        state = try_load_state(project_dir, corrupt_ok=True)
        self._cache[path] = (sig, state)
        return state


read_state = _StateReader()


def generated_from_current_template(project_dir: str, template_dir: str, hasher: Any) -> bool:
    """The project exists, its generate finished, and the template's content is unchanged."""
    state = read_state(project_dir)
    if state is None or not state.artefacts.get("generate", {}).get("complete"):
        return False
    try:
        return state.template_hash == hasher.tree_hash(template_dir)
    except MicrotvmError:
        return False


def built_from_current_generation(project_dir: str) -> bool:
    """The last build finished and was made from the project as it was last generated."""
    state = read_state(project_dir)
    if state is None:
        return False
    build = state.artefacts.get("build", {})
    return bool(build.get("complete")) and build.get("generation") == \
        state.artefacts.get("generate", {}).get("id")


def project_files_unchanged(project_dir: str) -> bool:
    """No file the build read was edited, deleted or added since, and its outputs still exist.

    Files written by build/flash/run are not inputs. A file whose (mtime, size) is as
    recorded is taken as unchanged; otherwise its content hash decides (a touch is not
    an edit).
    """
    from .fsutil import sha256_file
    from .project import stage_outputs

    state = read_state(project_dir)
    if state is None:
        return False
    build = state.artefacts.get("build", {})
    inputs: dict[str, list[Any]] = build.get("inputs") or {}
    outputs = stage_outputs(state)
    seen = 0
    for rel, path in _walk_files(project_dir):
        if rel == STATE_FILE or rel in outputs:
            continue
        sig = inputs.get(rel)
        if sig is None:
            return False  # a new file: someone added a source
        seen += 1
        st = os.stat(path)
        if (st.st_mtime_ns, st.st_size) != (sig[0], sig[1]):
            if st.st_size != sig[1] or sha256_file(path) != sig[2]:
                return False
    if seen != sum(1 for rel in inputs if rel not in outputs):
        return False  # an input was deleted
    return all(os.path.exists(os.path.join(project_dir, rel)) for rel in build.get("outputs", []))


def _walk_files(root: str) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, path) of every file under root, as fsutil.iter_tree names them.

    Plain os.walk and string slicing: this runs on every no-op `doit` for every project.
    """
    from .fsutil import IGNORED_NAMES

    root = os.fspath(root).rstrip("/")
    cut = len(root) + 1
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_NAMES]
        rel_dir = dirpath[cut:]
        for name in filenames:
            if name in IGNORED_NAMES or name.endswith(".pyc"):
                continue
            yield (f"{rel_dir}/{name}" if rel_dir else name), f"{dirpath}/{name}"


def flashed_current_build(project_dir: str) -> bool:
    """The device holds the project's last finished build."""
    state = read_state(project_dir)
    if state is None or not state.last_flash:
        return False
    build = state.artefacts.get("build", {})
    return bool(build.get("complete")) and state.last_flash.get("build_id") == build.get("id")


def ran_current_flash(project_dir: str, run_dir: str) -> bool:
    """The last run's summary was made on the image now on the device."""
    state = read_state(project_dir)
    if state is None or not state.last_flash:
        return False
    try:
        with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return False
    return summary.get("flash_id") == state.last_flash.get("id")


def build_record(project_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The project's last finished build (`id`, `outputs`, `inputs`, `options`...), or None.

    For a user's own tasks downstream of build:<project> (see examples/embedding/dodo.py).
    """
    state = read_state(project_dir)
    build = state.artefacts.get("build", {}) if state is not None else {}
    return dict(build) if build.get("complete") else None


# =================================================================== logs and locks


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _streaming() -> bool:
    """True when doit runs tasks in this process one at a time (not `-n N` workers)."""
    import multiprocessing

    return multiprocessing.current_process().name == "MainProcess" and \
        threading.current_thread() is threading.main_thread()


class _Tee(threading.Thread):
    def __init__(self, read_fd: int, log: Any, console_fd: int) -> None:
        super().__init__(daemon=True, name="task-log-tee")
        self.read_fd, self.log, self.console_fd = read_fd, log, console_fd

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.log.write(data)
            self.log.flush()
            try:
                os.write(self.console_fd, data)
            except OSError:
                pass


def run_logged(task_name: str, log_dir: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one task's work with fds 1 and 2 going to `.tvmc/logs/<task>.log` (+ the console).

    Redirecting the file descriptors (not just sys.stdout) also catches the Project API
    server and the build tools it runs. A MicrotvmError becomes a TaskFailed carrying its
    message (and the log's tail when the output was not shown live): no traceback.
    A string returned by `func` (a run's results) is printed even when the output was not
    shown live.
    """
    from doit.exceptions import TaskFailed

    log_path = Path(log_dir) / (re.sub(r"[^A-Za-z0-9_.+-]", "_", task_name) + ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stream = _streaming()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    tee: _Tee | None = None
    with open(log_path, "wb") as log:
        if stream:
            read_fd, write_fd = os.pipe()
            tee = _Tee(read_fd, log, saved[0])
            tee.start()
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
        else:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        failure: str | None = None
        full_text = ""
        # Python-level writes go to fds 1/2 too, whatever sys.stdout was (doit's, pytest's).
        old_streams = sys.stdout, sys.stderr
        sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")  # noqa: SIM115
        result: Any = None
        try:
            result = func(*args, **kwargs)
        except MicrotvmError as e:
            failure, full_text = _short_message(e), str(e)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout.close()
            sys.stderr.close()
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            if tee is not None:
                tee.join(timeout=5.0)  # EOF once every writer (a lingering child too) is gone
                if not tee.is_alive():
                    os.close(tee.read_fd)
            os.close(saved[0])
            os.close(saved[1])
            tail = ""
            if failure is not None:
                log.flush()
                if not stream:  # the task's own output, before our error text
                    tail = _log_tail(log_path)
                if full_text != failure:  # the server-side traceback: in the log, not on screen
                    log.write(f"{full_text}\n".encode())
                log.write(f"error: {failure}\n".encode())
    if failure is None:
        if isinstance(result, str) and not stream:  # a result worth seeing: not only in the log
            print(f"{task_name}: {result}", flush=True)
        return None
    msg = f"{task_name}: {failure}\n(full output: {log_path})"
    if tail:
        msg += f"\n--- last lines of {log_path.name} ---\n{tail}"
    return TaskFailed(msg)


def _short_message(e: BaseException) -> str:
    """The error as a person wants it: a template's own message without the server-side traceback.

    A template raising (say) ToolNotFoundError reaches us as a JSON-RPC error whose text
    holds the message, then the remote traceback; the traceback goes to the log only.
    The server's stderr tail (compiler errors) is kept.
    """
    text = str(e)
    data = getattr(e, "data", None)
    if not (isinstance(data, dict) and data.get("traceback")):
        return text
    cut = text.find("JSON-RPC error #")
    head = text[:cut].rsplit("\n", 1)[0].strip() if cut > 0 else ""
    if not head:
        return text
    marker = "The server's stderr during the call:"
    if marker in text:
        head += "\n" + text[text.index(marker):]
    return head


class device_lock:  # noqa: N801 - used like a function in a with statement
    """An exclusive fcntl lock on `.tvmc/locks/<key>.lock` for a flash or run.

    Held locks are released by the kernel when the process dies, so a crash never leaves
    a device locked. Waits (polling) at most `timeout` seconds.
    """

    def __init__(self, lock_dir: str, key: str, timeout: float = LOCK_TIMEOUT_SEC) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", key)
        self.path = Path(lock_dir) / f"{safe}.lock"
        self.key = key
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> device_lock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise MicrotvmError(
                        f"device {self.key!r} stayed busy for {self.timeout:.0f} s (lock {self.path}); "
                        "is another flash or run stuck?"
                    ) from None
                if not told:
                    print(f"waiting for device {self.key!r} (another task is using it)", flush=True)
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def device_key(spec: ProjectSpec, options: Mapping[str, Any]) -> str:
    """Which device a project's flash/run talks to: its port or serial, else platform+board."""
    for name in DEVICE_OPTIONS:
        if options.get(name):
            return f"{name}-{options[name]}"
    platform = spec.platform or (spec.template.name if spec.template else "device")
    board = options.get("board")
    return f"{platform}-{board}" if board else platform


# =================================================================== actions


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
                   out: str) -> None:
    """compile:<model>: write build/mlf/<model>.tar atomically (temp file + rename)."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_path.parent.glob(f".{out_path.stem}.*.tmp{out_path.suffix}"):
        stale.unlink(missing_ok=True)  # left by a killed compile
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp{out_path.suffix}")  # tvmc wants .tar
    try:
        if compiler == "builtin":
            from .compiler import compile_model

            compile_model(model_path, tmp, module_name=module_name, **options)
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
                from .errors import CompileError

                raise CompileError(
                    f"tvmc compile {model_path} failed (exit status {rc}); see its output above")
            if tmp.is_file():
                from .mlf import read_mlf

                read_mlf(tmp)  # what tvmc wrote must be a valid archive before it is taken as done
        elif compiler == "mlf":
            from .mlf import read_mlf

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
                    spec_force: bool, cache_dir: str, where: str, force: bool = False) -> None:
    """generate:<project>: Project API generate_project into a temp dir, renamed into place."""
    from .errors import HandEditError
    from .project import create_project

    try:
        create_project(project_dir, mlf, template, options, force=force or _force_requested(spec_force),
                       platform=platform, cache_dir=cache_dir, where=where)
    except HandEditError as e:
        name = os.path.basename(os.path.normpath(project_dir))
        raise HandEditError(f"{e}\nHere: doit generate:{name} force=1") from None
    print(f"generated {project_dir}")


def build_action(project_dir: str, options: dict[str, Any]) -> None:
    """build:<project>: the project's own server builds it; the build is recorded in .tvmc.json."""
    from .project import build_project

    build_project(project_dir, options)
    print(f"built {project_dir}")


def flash_action(project_dir: str, options: dict[str, Any], lock_dir: str, key: str) -> None:
    """flash:<project>: under the device's lock."""
    from .project import flash_project

    with device_lock(lock_dir, key):
        flash_project(project_dir, options)
    print(f"flashed {project_dir}")


def run_action(project_dir: str, options: dict[str, Any], lock_dir: str, key: str, run_dir: str,
               inputs: str | None) -> str:
    """run:<project>: one inference on the device, results in build/runs/<project>/.

    Returns the results text, which run_logged shows even when output goes to the log only.
    """
    with device_lock(lock_dir, key):
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

    from .fsutil import atomic_write_bytes, atomic_write_json, sha256_file
    from .project import record_outputs, stat_tree
    from .session import run_project
    from .state import load_state

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
    from .project import check_existing_project

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
    from .state import save_state

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


# =================================================================== task generation


class _Project:
    """Everything the five tasks of one project need, computed once at load."""

    def __init__(self, ws: Workspace, spec: ProjectSpec, info: Mapping[str, Any]) -> None:
        from . import options as opts

        self.spec = spec
        self.dir = str(ws.project_dir(spec.name))
        self.run_dir = str(ws.run_dir(spec.name))
        po = info.get("project_options", [])
        typed: dict[str, Any] = {}
        for key, value in spec.options.items():  # one by one, to point at the bad one's line
            try:
                typed.update(opts.coerce_options({key: value}, po, where=f"project '{spec.name}'"))
            except OptionError as e:
                loc = project_location(ws, spec.name, "options", key)
                raise ConfigError(f"{loc}: {e}") from None
        self.options = typed
        self.by_stage: dict[str, dict[str, Any]] = {s: {} for s in STAGE_OF_METHOD.values()}
        for name, value in typed.items():
            self.by_stage[STAGE_OF_METHOD.get(opts.earliest_stage(name, po), "generate")][name] = value
        self.device = device_key(spec, typed)


class WorkspaceTasks:
    """The doit task generators of one projects.yaml (also usable from a user's dodo.py)."""

    def __init__(self, config: str | os.PathLike[str] = "projects.yaml") -> None:
        from .server_info import hasher_for

        self.ws = load_workspace(config)
        self.state_dir = self.ws.state_dir
        self.cache_dir = str(self.state_dir / "server_info")
        self.log_dir = str(self.state_dir / "logs")
        self.lock_dir = str(self.state_dir / "locks")
        self.hasher = hasher_for(self.cache_dir)
        self._projects: dict[str, _Project] | None = None

    # Projects are resolved (server info, option typing) lazily, once, on first use.
    @property
    def projects(self) -> dict[str, _Project]:
        if self._projects is None:
            from .server_info import get_server_info

            infos: dict[str, Mapping[str, Any]] = {}
            out: dict[str, _Project] = {}
            for name, spec in self.ws.projects.items():
                assert spec.template is not None
                key = str(spec.template)
                if key not in infos:
                    try:
                        infos[key] = get_server_info(spec.template, self.cache_dir, memo=True)
                    except MicrotvmError as e:
                        loc = project_location(self.ws, name)
                        raise ConfigError(f"{loc}: project '{name}': {e}") from None
                out[name] = _Project(self.ws, spec, infos[key])
            self._projects = out
        return self._projects

    def _rel(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the workspace, for docs (string slicing: called per task at load)."""
        text = os.fspath(path)
        root = os.fspath(self.ws.root).rstrip("/") + "/"
        if text.startswith(root):
            return text[len(root):]
        try:
            return os.path.relpath(text, root)
        except ValueError:
            return text

    def _common(self, name: str) -> dict[str, Any]:
        return {"io": {"capture": False}, "verbosity": 2}

    def _logged(self, task_name: str, func: Callable[..., Any], *args: Any) -> tuple:
        return (run_logged, [task_name, self.log_dir, func, *args])

    # ------------------------------------------------------------ compile
    def task_compile(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "compile", "name": None,
               "doc": "compile every model to Model Library Format (build/mlf/<model>.tar)"}
        for m in self.ws.models.values():
            yield self._compile(m)

    def _compile(self, m: ModelSpec) -> dict[str, Any]:
        from . import __version__

        out = str(self.ws.mlf_path(m.name))
        module = c_identifier(m.name)
        # A change to our compiler's sources recompiles (identical output then stops there).
        compiler_id = self.hasher.tree_hash(Path(__file__).resolve().parent / "compiler") \
            if m.compiler == "builtin" else m.compiler
        return {
            "name": m.name,
            "doc": f"compile {self._rel(m.path)} with the {m.compiler} compiler -> {self._rel(out)}",
            "actions": [self._logged(f"compile:{m.name}", compile_action, str(m.path), m.compiler,
                                     dict(m.options), module, out)],
            "file_dep": [str(m.path)],
            "targets": [out],
            "uptodate": [options_unchanged("compile", {"compiler": compiler_id, "options": m.options,
                                                       "module_name": module, "version": __version__})],
            "clean": True,
            **self._common(m.name),
        }

    # ------------------------------------------------------------ generate
    def task_generate(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "generate", "name": None,
               "doc": "generate every project from its template (Project API generate_project)"}
        for name in self.ws.projects:
            yield self._generate(name)

    def _generate(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        spec = p.spec
        mlf = str(self.ws.mlf_path(spec.model))
        template = str(spec.template)
        where = f"{self._rel(self.ws.path)}, project '{name}'"  # (option errors with lines come at load)
        return {
            "name": name,
            "doc": f"generate {self._rel(p.dir)} from {spec.platform or self._rel(template)} "
                   f"and model {spec.model} (force=1 to overwrite hand edits)",
            "actions": [self._logged(f"generate:{name}", generate_action, p.dir, mlf, template, p.options,
                                     spec.platform, spec.force_regenerate, self.cache_dir, where)],
            "params": [{"name": "force", "long": "force", "type": bool, "default": False,
                        "help": "regenerate even over files edited by hand (the old project is backed up)"}],
            "file_dep": [mlf],
            "targets": [os.path.join(p.dir, STATE_FILE)],
            "uptodate": [
                (generated_from_current_template, [p.dir, template, self.hasher]),
                options_unchanged("generate", {"template": template, "platform": spec.platform,
                                               "options": p.by_stage["generate"]}),
            ],
            "clean": [(clean_project, [p.dir, p.run_dir])],
            **self._common(name),
        }

    # ------------------------------------------------------------ build
    def task_build(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "build", "name": None, "doc": "build every project"}
        for name in self.ws.projects:
            yield self._build(name)

    def _build(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        return {
            "name": name,
            "doc": f"build {self._rel(p.dir)} (reruns after hand edits of its files)",
            "actions": [self._logged(f"build:{name}", build_action, p.dir, p.options)],
            "task_dep": [f"generate:{name}"],
            "uptodate": [
                (built_from_current_generation, [p.dir]),
                (project_files_unchanged, [p.dir]),
                options_unchanged("build", p.by_stage["build"]),
            ],
            "clean": [(clean_build_outputs, [p.dir])],
            **self._common(name),
        }

    # ------------------------------------------------------------ flash
    def task_flash(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "flash", "name": None, "doc": "flash every project's build onto its device"}
        for name in self.ws.projects:
            yield self._flash(name)

    def _flash(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        return {
            "name": name,
            "doc": f"flash the build of {name} onto {p.device}",
            "actions": [self._logged(f"flash:{name}", flash_action, p.dir, p.options, self.lock_dir,
                                     p.device)],
            "task_dep": [f"build:{name}"],
            "uptodate": [
                (flashed_current_build, [p.dir]),
                options_unchanged("flash", p.by_stage["flash"]),
            ],
            **self._common(name),
        }

    # ------------------------------------------------------------ run
    def task_run(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "run", "name": None,
               "doc": "run every project once on its device (outputs in build/runs/<project>/)"}
        for name in self.ws.projects:
            yield {"basename": "run", **self._run(name)}

    def _run(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        inputs = str(p.spec.inputs) if p.spec.inputs else None
        targets = [os.path.join(p.run_dir, f) for f in ("inputs.npz", "outputs.npz", "summary.json")]
        return {
            "name": name,
            "doc": f"run {name} on {p.device}: {self._rel(p.run_dir)}/outputs.npz, summary.json",
            "actions": [self._logged(f"run:{name}", run_action, p.dir, p.options, self.lock_dir, p.device,
                                     p.run_dir, inputs)],
            "task_dep": [f"flash:{name}"],
            "file_dep": [inputs] if inputs else [],
            "targets": targets,
            "uptodate": [
                (ran_current_flash, [p.dir, p.run_dir]),
                options_unchanged("run", {"options": p.by_stage["run"], "inputs": inputs}),
            ],
            "clean": [(clean_dir, [p.run_dir])],
            **self._common(name),
        }

    # ------------------------------------------------------------ doit glue
    def doit_config(self) -> dict[str, Any]:
        return {
            "dep_file": str(self.state_dir / "doit.db"),
            "backend": "sqlite3",
            "default_tasks": list(self.ws.default_tasks),
            "reporter": ProgressReporter,
            "verbosity": 2,
            "subtasks": True,  # `doit list` shows every compile:/generate:/... task with its doc
        }

    def namespace(self) -> dict[str, Any]:
        """What a dodo.py's globals need: DOIT_CONFIG and the task_* generators."""
        return {
            "DOIT_CONFIG": self.doit_config(),
            "task_compile": self.task_compile,
            "task_generate": self.task_generate,
            "task_build": self.task_build,
            "task_flash": self.task_flash,
            # doit refuses a creator called task_run ("run" is its command); the tasks are
            # still named run:<project> through their basename.
            "task_run_on_device": self.task_run,
        }


def workspace_tasks(config: str | os.PathLike[str] = "projects.yaml") -> dict[str, Any]:
    """DOIT_CONFIG and task generators for a projects.yaml, for `globals().update(...)` in dodo.py.

    A configuration error is printed as one message (file:line: what is wrong) and doit
    exits with status 3, instead of a traceback.
    """
    try:
        wt = WorkspaceTasks(config)
        ns = wt.namespace()
        _ = wt.projects  # resolve now: option and template errors surface at load, with lines
    except MicrotvmError as e:
        print(f"microtvm: {e}", file=sys.stderr)
        raise SystemExit(3) from None
    ns["MICROTVM_WORKSPACE"] = wt
    return ns


# =================================================================== progress


def _reachable(tasks: Mapping[str, Any], selected: list[str] | None) -> set[str]:
    names = list(selected) if selected else list(tasks)
    seen: set[str] = set()
    while names:
        name = names.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        t = tasks[name]
        names.extend(t.task_dep)
        names.extend(t.setup_tasks)
    return seen


try:
    from doit.reporter import ConsoleReporter as _ConsoleReporter
except ImportError:  # pragma: no cover - doit is a dependency
    _ConsoleReporter = object  # type: ignore[assignment, misc]


class ProgressReporter(_ConsoleReporter):  # type: ignore[misc, valid-type]
    """`.  build:sine_host  (3/12)` per task started, one message per failure, a summary.

    Up-to-date tasks are counted, not listed (a no-op over 500 projects prints one line).
    Failures from a MicrotvmError carry no traceback; an unexpected exception (a bug)
    keeps its traceback.
    """

    desc = "progress: done/total and the running task; up-to-date tasks summarised"

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.total = 0
        self.finished = 0
        self.executed: list[str] = []
        self.uptodate = 0
        self.failed: list[str] = []
        self.started_at = time.monotonic()

    def _counts(self, task: Any) -> bool:
        return bool(task.actions) and not task.name.startswith("_")

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        self.total = sum(1 for n in _reachable(tasks, selected_tasks) if self._counts(tasks[n]))
        self.started_at = time.monotonic()

    def execute_task(self, task: Any) -> None:
        if self._counts(task):
            self.executed.append(task.name)
            self.write(f".  {task.name}  ({self.finished + 1}/{self.total})\n")
            self.outstream.flush()

    def add_success(self, task: Any) -> None:
        if self._counts(task):
            self.finished += 1

    def skip_uptodate(self, task: Any) -> None:
        if self._counts(task):
            self.finished += 1
            self.uptodate += 1

    def skip_ignore(self, task: Any) -> None:
        if self._counts(task):
            self.finished += 1
            self.write(f"!! {task.name} (ignored)\n")

    def add_failure(self, task: Any, fail: Any) -> None:
        from doit.exceptions import TaskFailed, UnmetDependency

        self.finished += 1
        self.failed.append(task.name)
        if isinstance(fail, UnmetDependency):
            self.write(f"-- {task.name} not run: it depends on {fail.message}, which failed\n")
        elif isinstance(fail, TaskFailed):
            self.write(f"FAILED {fail.message}\n" if fail.message.startswith(task.name)
                       else f"FAILED {task.name}: {fail.message}\n")
        else:
            self.write(f"ERROR in {task.name}: {fail.get_msg()}\n")

    def complete_run(self) -> None:
        elapsed = time.monotonic() - self.started_at
        if self.runtime_errors:
            self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")
        if not self.executed and not self.failed:
            self.write(f"nothing to do: {self.uptodate} task(s) up to date ({elapsed:.2f} s)\n")
        else:
            self.write(f"{len(self.executed)} task(s) run, {self.uptodate} up to date, "
                       f"{len(self.failed)} failed ({elapsed:.1f} s)\n")
