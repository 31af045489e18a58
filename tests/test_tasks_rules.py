"""Each up-to-date rule of the doit tasks, checked by counting which tasks really executed.

The workspace (tests/test_tasks_support.py) has models m1, m2 (`compiler: mlf`) and
projects pa1 (m1, template tpl_a), pa2 (m2, tpl_a), pb1 (m1, tpl_b), built from a fake but
real Project API template. Every doit run is a real `python -m doit` process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tasks_support import PROJECTS_YAML, Workspace, executed_tasks, mlf_bytes

ALL_FLASH = {
    "compile:m1", "compile:m2",
    "generate:pa1", "generate:pa2", "generate:pb1",
    "build:pa1", "build:pa2", "build:pb1",
    "flash:pa1", "flash:pa2", "flash:pb1",
}


def stages(project: str, *names: str) -> set[str]:
    return {f"{n}:{project}" for n in names}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path)
    assert set(w.executed("flash")) == ALL_FLASH
    return w


def test_nothing_changed_nothing_runs_and_no_server_starts(ws: Workspace) -> None:
    starts = ws.server_starts()
    assert ws.executed("flash") == []
    assert "nothing to do: 11 task(s) up to date" in ws.last.stdout
    assert ws.executed() == []  # default tasks (build) too
    assert ws.server_starts() == starts, "an up-to-date check or task loading launched a server"


def test_model_bytes_changed_reruns_its_projects_only(ws: Workspace) -> None:
    (ws.ws / "m1.tar").write_bytes(mlf_bytes("float"))
    ran = ws.executed("flash")
    assert set(ran) == {"compile:m1"} | stages("pa1", "generate", "build", "flash") | \
        stages("pb1", "generate", "build", "flash")
    order = [ran.index(t) for t in ("compile:m1", "generate:pa1", "build:pa1", "flash:pa1")]
    assert order == sorted(order)


def test_model_touched_with_identical_bytes_reruns_nothing(ws: Workspace) -> None:
    st = os.stat(ws.ws / "m1.tar")
    os.utime(ws.ws / "m1.tar", ns=(st.st_atime_ns + 10**10, st.st_mtime_ns + 10**10))
    (ws.ws / "m2.tar").write_bytes((ws.ws / "m2.tar").read_bytes())  # rewritten, same bytes
    assert ws.executed("flash") == []


def test_identical_mlf_from_a_recompile_does_not_cascade(ws: Workspace) -> None:
    ws.doit("forget", "compile:m1")
    assert ws.executed("flash") == ["compile:m1"]
    assert ws.executed("flash") == []


def test_template_file_changed_reruns_that_templates_projects_only(ws: Workspace) -> None:
    (ws.root / "tpl_a" / "data.txt").write_text("/* template data v2 */\n")
    ran = set(ws.executed("flash"))
    assert ran == stages("pa1", "generate", "build", "flash") | stages("pa2", "generate", "build", "flash")
    # The new template hash was queried once (cache miss), then never again.
    starts = ws.server_starts()
    assert ws.executed("flash") == []
    assert ws.server_starts() == starts


@pytest.mark.parametrize(
    ("option", "expected_stages"),
    [
        ("gen_flag", ("generate", "build", "flash")),
        ("build_flag", ("build", "flash")),
        ("flash_flag", ("flash",)),
    ],
)
def test_option_change_reruns_from_its_earliest_stage(ws: Workspace, option: str,
                                                      expected_stages: tuple) -> None:
    ws.set_yaml(PROJECTS_YAML.replace("pa2: {model: m2, template: ../tpl_a}",
                                      f"pa2: {{model: m2, template: ../tpl_a, options: {{{option}: x9}}}}"))
    assert set(ws.executed("flash")) == stages("pa2", *expected_stages)
    assert ws.executed("flash") == []
    # and the new value reached the platform
    proj = ws.project("pa2")
    where = {"gen_flag": proj / "src" / "model.c", "build_flag": proj / "build" / "firmware.bin",
             "flash_flag": proj / "flashed.txt"}[option]
    assert f"{option}=x9" in where.read_text()


def test_shared_default_option_reaches_every_project(ws: Workspace) -> None:
    ws.set_yaml("defaults: {options: {build_flag: shared}}\n" + PROJECTS_YAML)
    assert set(ws.executed("build")) == {"build:pa1", "build:pa2", "build:pb1"}


def test_hand_edit_rebuilds_and_blocks_regenerate_until_forced(ws: Workspace) -> None:
    src = ws.project("pa1") / "src" / "model.c"
    src.write_text(src.read_text() + "/* my tweak */\n")
    assert set(ws.executed("flash")) == stages("pa1", "build", "flash")
    assert "my tweak" in (ws.project("pa1") / "build" / "firmware.bin").read_text()

    # A touch of a generated file is not an edit.
    (ws.project("pa2") / "src" / "main.c").touch()
    assert ws.executed("flash") == []

    # A user-added file is an input too.
    (ws.project("pa1") / "src" / "extra.c").write_text("int extra;\n")
    assert set(ws.executed("flash")) == stages("pa1", "build", "flash")

    # Now generate must rerun (a generate option changed): it refuses, listing the edits.
    ws.set_yaml(PROJECTS_YAML.replace("pa1: {model: m1, template: ../tpl_a}",
                                      "pa1: {model: m1, template: ../tpl_a, options: {gen_flag: g2}}"))
    proc = ws.doit("flash", check=False)
    assert proc.returncode != 0
    assert "generate:pa1" in proc.stdout and "src/model.c" in proc.stdout and "src/extra.c" in proc.stdout
    assert "force" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "my tweak" in src.read_text(), "the edit was lost"
    assert (ws.project("pa1") / "src" / "extra.c").exists()

    ran = ws.executed("generate:pa1", "force=1")
    assert ran == ["generate:pa1"]
    backups = sorted(ws.project("pa1").parent.glob("pa1.backup-*"))
    assert len(backups) == 1 and "my tweak" in (backups[0] / "src" / "model.c").read_text()
    assert str(backups[0]) in ws.last.stdout + ws.last.stderr
    assert "gen_flag=g2" in src.read_text()
    assert set(ws.executed("flash")) == stages("pa1", "build", "flash")


def test_regenerate_force_in_yaml(ws: Workspace) -> None:
    src = ws.project("pb1") / "src" / "model.c"
    src.write_text("/* mine */\n")
    ws.set_yaml(PROJECTS_YAML.replace("pb1: {model: m1, template: ../tpl_b}",
                                      "pb1: {model: m1, template: ../tpl_b, regenerate: force,"
                                      " options: {level: 3}}"))
    assert set(ws.executed("flash")) == stages("pb1", "generate", "build", "flash")
    assert "level=3" in src.read_text()
    assert list(ws.project("pb1").parent.glob("pb1.backup-*"))


def _pa1_options(ws: Workspace, options: str) -> None:
    ws.set_yaml(PROJECTS_YAML.replace("pa1: {model: m1, template: ../tpl_a}",
                                      f"pa1: {{model: m1, template: ../tpl_a, options: {{{options}}}}}"))


def test_interrupted_build_reruns_and_is_never_taken_as_done(ws: Workspace) -> None:
    _pa1_options(ws, "build_flag: b2")
    proc = ws.doit("flash", check=False, FAKE_BUILD_CRASH="1")
    assert proc.returncode != 0 and "FAILED build:pa1" in proc.stdout
    assert "flash:pa1" not in executed_tasks(proc.stdout)
    assert set(ws.executed("flash")) == stages("pa1", "build", "flash")
    assert ws.executed("flash") == []

    # What a crashed build left behind is its output, not a hand edit: regenerating is allowed.
    _pa1_options(ws, "build_flag: b3")
    assert ws.doit("flash", check=False, FAKE_BUILD_CRASH="1").returncode != 0
    _pa1_options(ws, "build_flag: b3, gen_flag: g5")
    assert set(ws.executed("flash")) == stages("pa1", "generate", "build", "flash")


def test_failed_build_shows_log_tail_in_parallel_runs(ws: Workspace) -> None:
    (ws.project("pa2") / "src" / "model.c").write_text("/* changed */\n")
    proc = ws.doit("-n", "2", "build", check=False, FAKE_BUILD_FAIL="1")
    assert proc.returncode != 0
    assert "FAILED build:pa2" in proc.stdout
    assert "undefined reference to `oops'" in proc.stdout  # the tail of .tvmc/logs/build_pa2.log
    log = ws.ws / ".tvmc" / "logs" / "build_pa2.log"
    assert "undefined reference" in log.read_text()
    assert "Traceback" not in proc.stdout  # the server-side traceback is only in the log
    assert "Traceback" in log.read_text()


def test_interrupted_generate_leaves_no_half_project(tmp_path: Path) -> None:
    w = Workspace(tmp_path)
    proc = w.doit("generate:pa1", check=False, FAKE_GENERATE_CRASH="1")
    assert proc.returncode != 0
    assert not w.project("pa1").exists()
    assert [p.name for p in w.project("pa1").parent.iterdir()] == []  # temp dir removed
    assert "generate:pa1" in w.executed("generate:pa1")
    assert (w.project("pa1") / "src" / "main.c").exists()


def test_killed_generate_reruns(tmp_path: Path) -> None:
    w = Workspace(tmp_path)
    w.doit("compile")
    _interrupt_when(w, "generate-start", signal.SIGKILL, "generate:pa1", FAKE_GENERATE_SLEEP="30")
    assert not w.project("pa1").exists()  # only a .pa1.gen-* temp dir, never the project
    assert w.executed("generate:pa1") == ["generate:pa1"]
    assert not list(w.project("pa1").parent.glob(".pa1.gen-*"))
    assert (w.project("pa1") / "src" / "main.c").exists()


def _interrupt_when(w: Workspace, event: str, sig: int, *args: str, **env: str) -> str:
    """Start `doit args`, wait for the fake platform to report `event`, then send `sig` to
    its process group (as a terminal's Ctrl-C does); returns what doit printed."""
    # only an event of this run counts (a fixture's earlier run may have logged the same one)
    seen = len(w.event_log.read_text()) if w.event_log.exists() else 0
    proc = subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=w.ws, env=w.env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if w.event_log.exists() and event in w.event_log.read_text()[seen:]:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"{event} never happened")
    finally:
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=30)
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_build_reruns(ws: Workspace, sig: int) -> None:
    _pa1_options(ws, "build_flag: b7")
    out = _interrupt_when(ws, "build-start", sig, "flash", FAKE_BUILD_SLEEP="30")
    if sig == signal.SIGINT:  # one line saying what was interrupted; no doit traceback, no "0 failed"
        assert "microtvm: interrupted (Ctrl-C) during build:pa1; nothing half-written was kept" in out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out and "0 failed" not in out
    # the interrupted build is not taken as done, and its partial output is no hand edit
    assert set(ws.executed("flash")) == stages("pa1", "build", "flash")
    assert "build_flag=b7" in (ws.project("pa1") / "build" / "firmware.bin").read_text()
    assert ws.executed("flash") == []


def test_killed_compile_reruns_and_half_archive_is_never_used(tmp_path: Path) -> None:
    """A `compiler: tvmc` stand-in that writes half an archive, then hangs until killed."""
    archive = tmp_path / "whole.tar"
    archive.write_bytes(mlf_bytes("int8"))
    tvmc = tmp_path / "bin" / "tvmc"
    tvmc.parent.mkdir()
    tvmc.write_text(
        f"#!{sys.executable}\nimport os, sys, time\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        f"data = open({str(archive)!r}, 'rb').read()\n"
        "if os.environ.get('TVMC_HANG'):\n"
        "    open(out, 'wb').write(data[:len(data) // 2])\n"
        f"    open({str(tmp_path / 'events.log')!r}, 'a').write('0 compile-start x\\n')\n"
        "    time.sleep(60)\n"
        "open(out, 'wb').write(data)\n"
    )
    tvmc.chmod(0o755)
    w = Workspace(tmp_path, PROJECTS_YAML.replace("m1: {path: m1.tar, compiler: mlf}",
                                                  "m1: {path: m1.tar, compiler: tvmc}"))
    path = f"{tvmc.parent}:{os.environ['PATH']}"
    _interrupt_when(w, "compile-start", signal.SIGKILL, "compile:m1", TVMC_HANG="1", PATH=path)
    mlf_dir = w.ws / "build" / "mlf"
    assert not (mlf_dir / "m1.tar").exists()  # only a temp file holds the half archive
    assert w.executed("flash:pa1", PATH=path) == ["compile:m1", "generate:pa1", "build:pa1", "flash:pa1"]
    assert (mlf_dir / "m1.tar").read_bytes() == archive.read_bytes()
    assert [p.name for p in mlf_dir.iterdir()] == ["m1.tar"]  # the killed run's temp file is gone


def test_failed_compile_leaves_no_archive_and_reruns(tmp_path: Path) -> None:
    w = Workspace(tmp_path)
    (w.ws / "m1.tar").write_bytes(b"not an archive")
    proc = w.doit("compile:m1", check=False)
    assert proc.returncode != 0 and "compile:m1" in proc.stdout
    assert "Traceback" not in proc.stdout
    assert not (w.ws / "build" / "mlf" / "m1.tar").exists()
    assert not [p for p in (w.ws / "build" / "mlf").iterdir() if p.name.startswith(".")]
    (w.ws / "m1.tar").write_bytes(mlf_bytes("int8"))
    assert w.executed("compile:m1") == ["compile:m1"]
    assert w.executed("compile:m1") == []


def test_parallel_flashes_of_one_device_never_overlap(tmp_path: Path) -> None:
    w = Workspace(tmp_path)
    ran = w.executed("-n", "2", "flash", FAKE_FLASH_SLEEP="0.4")
    assert set(ran) == ALL_FLASH
    spans: dict[str, list[float]] = {}
    for line in w.event_log.read_text().splitlines():
        t, what, proj = line.split()
        if what.startswith("flash"):
            spans.setdefault(proj, []).append(float(t))
    assert set(spans) == {"pa1", "pa2", "pb1"}
    # pa1 and pa2 share tpl_a's device (no board or port given): their flashes are serial
    a, b = sorted((spans["pa1"], spans["pa2"]))
    assert a[1] <= b[0], f"flashes overlapped: {a} {b}"
    for task in ALL_FLASH:
        assert (w.ws / ".tvmc" / "logs" / (task.replace(":", "_") + ".log")).exists()


def test_clean_and_forget(ws: Workspace) -> None:
    # a hand edit survives `doit clean` (moved to a backup, not deleted)
    (ws.project("pb1") / "notes.txt").write_text("mine")
    ws.doit("clean", "-a")
    assert not (ws.ws / "build" / "mlf" / "m1.tar").exists()
    assert not ws.project("pa1").exists()
    backups = list(ws.project("pb1").parent.glob("pb1.backup-*"))
    assert backups and (backups[0] / "notes.txt").read_text() == "mine"
    assert set(ws.executed("flash")) == ALL_FLASH
    ws.doit("forget", "build:pa2")
    assert set(ws.executed("flash")) == stages("pa2", "build", "flash")


def test_list_and_info_explain_tasks(ws: Workspace) -> None:
    out = ws.doit("list", "--all").stdout
    for name in ("compile:m1", "generate:pa1", "build:pa1", "flash:pa1", "run:pa1"):
        assert name in out
    assert "generate every project" in out
    info = ws.doit("info", "build:pa1").stdout
    assert "up-to-date" in info or "status" in info
