"""A full or read-only disk, and a missing `inputs:` file, give one line naming the path and
the fix, never a traceback, and nothing half-written is taken as done (issue 13, item 13).

As root, chmod does not stop writes, so ENOSPC (28) and EROFS (30) are simulated: in-process
by patching os.replace / open / tempfile, and for whole `doit` runs by a sitecustomize.py
on PYTHONPATH that patches os.replace or sqlite3.connect when an environment variable asks.
"""

from __future__ import annotations

import errno
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_tasks_support import Workspace, mlf_bytes, write_fake_template

SITECUSTOMIZE = textwrap.dedent('''\
    """Test hook: simulate a full disk for the doit process (and the servers it starts)."""
    import errno
    import os

    _WHAT = os.environ.get("FAKE_DISK_FULL", "")

    if _WHAT == "state":  # every write of a .tvmc.json fails with ENOSPC
        _replace = os.replace

        def _full(src, dst, *a, **k):
            if str(dst).endswith(".tvmc.json"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))
            return _replace(src, dst, *a, **k)

        os.replace = _full
    elif _WHAT == "sqlite":  # doit's database: every commit fails as sqlite does on a full disk
        import sqlite3

        _connect = sqlite3.connect

        class _Conn:
            def __init__(self, conn):
                object.__setattr__(self, "_c", conn)

            def __getattr__(self, name):
                return getattr(self._c, name)

            def __setattr__(self, name, value):
                setattr(self._c, name, value)

            def commit(self):
                raise sqlite3.OperationalError("database or disk is full")

        sqlite3.connect = lambda *a, **k: _Conn(_connect(*a, **k))
''')


def _hooked_env(ws: Workspace, tmp_path: Path, what: str) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
            "FAKE_DISK_FULL": what}


def _one_line_error(text: str) -> None:
    assert "Traceback" not in text, text


# --------------------------------------------------------------- in-process: the actions


def test_full_disk_during_compile_fails_in_one_line_and_leaves_no_archive(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch
                                                                           ) -> None:
    from doit.exceptions import TaskFailed

    from microtvm_tasks.tasks import actions
    from microtvm_tasks.tasks.logs import run_logged

    model = tmp_path / "m.tar"
    model.write_bytes(mlf_bytes("int8"))
    out = tmp_path / "build" / "mlf" / "m.tar"

    def full(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))

    monkeypatch.setattr(actions.os, "replace", full)
    result = run_logged("compile:m", str(tmp_path / "logs"), actions.compile_action, str(model), "mlf", {},
                        "m", str(out))
    assert isinstance(result, TaskFailed)
    first = result.message.splitlines()[0]
    assert str(out) in first and "no space left" in first and "free some space" in first, first
    assert "errno 28" in first and "Traceback" not in result.message
    assert list(out.parent.iterdir()) == []  # neither the archive nor its temporary file


def _generated_project(tmp_path: Path) -> Path:
    from microtvm_tasks.project import create_project

    tpl = write_fake_template(tmp_path / "tpl")
    mlf = tmp_path / "m.tar"
    mlf.write_bytes(mlf_bytes("int8"))
    project = tmp_path / "build" / "projects" / "p"
    create_project(project, mlf, tpl, {}, cache_dir=tmp_path / "cache")
    return project


def test_read_only_state_after_a_build_is_one_line_and_the_build_not_taken_as_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from doit.exceptions import TaskFailed

    from microtvm_tasks import fsutil
    from microtvm_tasks.state import load_state
    from microtvm_tasks.tasks import actions, rules
    from microtvm_tasks.tasks.logs import run_logged

    project = _generated_project(tmp_path)
    real_replace = os.replace
    writes: list[str] = []

    def read_only_at_the_end(src: Any, dst: Any) -> None:
        if str(dst).endswith(".tvmc.json"):
            writes.append(str(dst))
            if len(writes) >= 3:  # the record that the build finished
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src), None, str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", read_only_at_the_end)
    result = run_logged("build:p", str(tmp_path / "logs"), actions.build_action, str(project), {})
    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    assert isinstance(result, TaskFailed)
    first = result.message.splitlines()[0]
    assert f"{project}/.tvmc.json" in first and "read-only" in first and "errno 30" in first, first
    assert "nothing half-written was kept" in first
    assert load_state(project).artefacts["build"]["complete"] is False
    assert not rules.built_from_current_generation(str(project))
    assert not [p for p in project.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_log_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from doit.exceptions import TaskFailed

    from microtvm_tasks.tasks import logs

    def read_only(path: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(logs, "open", read_only, raising=False)
    ran: list[int] = []
    result = logs.run_logged("build:p", str(tmp_path / "logs"), lambda: ran.append(1))
    assert isinstance(result, TaskFailed) and not ran
    assert result.message.startswith("build:p: cannot write its log: ")
    assert str(tmp_path / "logs" / "build_p.log") in result.message and "read-only" in result.message


def test_read_only_tvmc_dir_stops_at_load_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    from microtvm_tasks.tasks import generators

    ws = Workspace(tmp_path)
    state_dir = ws.ws / ".tvmc"
    real = tempfile.TemporaryFile

    def probe(*a: Any, dir: Any = None, **k: Any) -> Any:  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir) == state_dir:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "TemporaryFile", probe)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    with pytest.raises(SystemExit) as exc:
        generators.workspace_tasks(ws.ws / "projects.yaml")
    assert exc.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"microtvm: {state_dir}: the file system is read-only")
    assert "remount it read-write" in err


# --------------------------------------------------------------- whole doit runs


def test_doit_on_a_full_disk_generates_nothing_half_and_says_so(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    proc = ws.doit("generate:pa1", check=False, **_hooked_env(ws, tmp_path, "state"))
    assert proc.returncode != 0
    _one_line_error(proc.stdout + proc.stderr)
    line = next(s for s in proc.stdout.splitlines() if s.startswith("FAILED generate:pa1"))
    # named where it was going to be (not the temporary directory, gone by now)
    assert f"{ws.project('pa1')}/.tvmc.json: no space left on the device (errno 28)" in line, line
    assert "free some space" in line
    assert not ws.project("pa1").exists()
    assert not [p for p in ws.project("pa1").parent.iterdir() if p.name.startswith(".pa1")]
    assert "generate:pa1" in ws.executed("generate:pa1")  # space again: it runs, and works


def test_doit_database_full_is_one_line(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    proc = ws.doit("generate:pa1", check=False, **_hooked_env(ws, tmp_path, "sqlite"))
    assert proc.returncode == 3
    _one_line_error(proc.stderr)
    lines = [s for s in proc.stderr.splitlines() if "doit.db" in s]
    assert len(lines) == 1, proc.stderr
    assert "database or disk is full" in lines[0] and "free space" in lines[0], lines[0]
    assert str(ws.ws / ".tvmc" / "doit.db") in lines[0]


def test_missing_inputs_file_is_one_line_naming_it(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, textwrap.dedent('''\
        models:
          m1: {path: m1.tar, compiler: mlf}
        projects:
          pa1: {model: m1, template: ../tpl_a, inputs: missing.npz}
    '''))
    assert ws.doit("build").returncode == 0  # only the run needs the file
    proc = ws.doit("run:pa1", check=False)
    assert proc.returncode != 0
    _one_line_error(proc.stdout + proc.stderr)
    line = next(s for s in proc.stdout.splitlines() if s.startswith("FAILED run:pa1"))
    assert f"{ws.ws / 'missing.npz'} does not exist" in line and "projects.yaml:4" in line, line
    assert "numpy.savez" in line and "fix the path" in line
