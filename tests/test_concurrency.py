"""Two `doit` processes on one workspace, started together from clean (issue 13, item 6).

The second waits for the first (a workspace lock, with a message naming the holder), so
neither fails, no project directory ever sees two builds, and the results are the ones a
single run gives. Each process's task logs are kept (appended, each run under a header).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from test_tasks_support import Workspace

PAIRS = 20
AT_ONCE = 2  # pairs running side by side (4 doit processes): the whole test stays well under a minute


def _start(ws: Workspace, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=ws.ws, env=ws.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _outputs(ws: Workspace) -> dict[str, bytes]:
    """Every file the pipeline made in the projects (the .tvmc.json records aside: they hold ids)."""
    root = ws.ws / "build" / "projects"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".tvmc.json"}


def test_two_doit_from_clean_never_fail_and_give_one_result(tmp_path: Path) -> None:
    reference = Workspace(tmp_path / "ref")
    reference.doit("flash")
    expected = _outputs(reference)
    assert expected
    failures: list[str] = []
    waited = 0
    t0 = time.monotonic()
    for first in range(0, PAIRS, AT_ONCE):
        batch = [Workspace(tmp_path / f"pair{i}") for i in range(first, min(first + AT_ONCE, PAIRS))]
        procs = [(ws, _start(ws, "flash"), _start(ws, "flash")) for ws in batch]
        for ws, a, b in procs:
            results = [(p, *p.communicate(timeout=120)) for p in (a, b)]
            for p, out, err in results:
                if p.returncode != 0 or "Traceback" in err:
                    failures.append(f"{ws.root.name}: rc {p.returncode}\n{out}\n{err}")
            waited += sum("waiting for the workspace" in err for _, _, err in results)
            if _outputs(ws) != expected:
                failures.append(f"{ws.root.name}: outputs differ from a single run's")
    assert not failures, f"{len(failures)} failures in {PAIRS} pairs:\n" + "\n".join(failures[:3])
    assert waited > 0  # at least one second process said whom it waited for
    assert time.monotonic() - t0 < 90


def test_the_waiting_doit_names_the_holder(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    a = subprocess.Popen([sys.executable, "-m", "doit", "build"], cwd=ws.ws,
                         env=ws.env(FAKE_BUILD_SLEEP="2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 30
    while not ws.event_log.exists() and time.monotonic() < deadline:  # the first is building
        time.sleep(0.05)
    b = ws.doit("build")
    a.communicate(timeout=60)
    assert a.returncode == 0
    assert f"held by pid {a.pid}" in b.stderr and "doit build" in b.stderr, b.stderr
    assert b.stdout.count(".  ") == 0  # everything was done by the first: the second found it up to date


def test_each_run_of_a_task_keeps_its_log(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.doit("build:pa1")
    ws.doit("-a", "build:pa1")  # always execute: a second run of the same task
    log = (ws.ws / ".tvmc" / "logs" / "build_pa1.log").read_text()
    assert log.count("==== build:pa1 ") == 2, log
    assert log.count("building pa1") == 2
