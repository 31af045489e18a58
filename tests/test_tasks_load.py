"""Task loading: errors at load time, option stages, compilers, locks, import weight."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_tasks_support import PROJECTS_YAML, Workspace, executed_tasks, mlf_bytes

from microtvm_tasks.errors import MicrotvmError, ToolNotFoundError
from microtvm_tasks.tasks import WorkspaceTasks, compile_action, device_lock, run_logged, tvmc_argv


def test_unknown_option_in_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    """One project's bad option is reported at load with its line and fails that project's
    tasks only: `doit list` works and shows why, the other projects still run."""
    w = Workspace(tmp_path, PROJECTS_YAML.replace(
        "pb1: {model: m1, template: ../tpl_b}",
        "pb1:\n    model: m1\n    template: ../tpl_b\n    options:\n      gen_flagg: 1"))
    proc = w.doit("list", check=False)
    assert proc.returncode == 0
    assert "projects.yaml:11: unknown option 'gen_flagg' (project 'pb1')" in proc.stderr
    assert "gen_flag" in proc.stderr and "Traceback" not in proc.stderr
    assert "its tasks will fail" in proc.stderr
    assert re.search(r"^generate:pb1 +cannot generate: .*projects.yaml:11: unknown option 'gen_flagg'",
                     proc.stdout, re.M)
    proc = w.doit("flash", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    ran = executed_tasks(proc.stdout)
    assert {"flash:pa1", "flash:pa2"} <= set(ran)
    assert "FAILED flash:pb1: " in proc.stdout and "unknown option 'gen_flagg'" in proc.stdout
    assert (w.project("pa1") / ".tvmc.json").exists() and not w.project("pb1").exists()


def test_empty_workspace_is_an_error_at_load(tmp_path: Path) -> None:
    w = Workspace(tmp_path)
    w.set_yaml("models:\n  m1: {path: m1.tar, compiler: mlf}\n")
    proc = w.doit("list", check=False)
    assert proc.returncode == 3 and "declares no projects, so doit has nothing to do" in proc.stderr
    w.set_yaml("")
    proc = w.doit("list", check=False)
    assert proc.returncode == 3 and "declares no projects" in proc.stderr


def test_config_error_exits_without_traceback(tmp_path: Path) -> None:
    w = Workspace(tmp_path, PROJECTS_YAML + "  pc1: {model: m3, template: ../tpl_b}\n")
    proc = w.doit("list", check=False)
    assert proc.returncode == 3
    assert "projects.yaml:8: projects.pc1.model: unknown model 'm3'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    w = Workspace(tmp_path, PROJECTS_YAML.replace("../tpl_b", "../tpl_missing"))
    proc = w.doit("list", check=False)
    assert proc.returncode == 3
    assert "projects.yaml:7: projects.pb1.template: template directory" in proc.stderr


def test_options_are_split_by_earliest_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = Workspace(tmp_path, PROJECTS_YAML.replace(
        "pa1: {model: m1, template: ../tpl_a}",
        "pa1: {model: m1, template: ../tpl_a,"
        " options: {gen_flag: a, build_flag: b, flash_flag: c, level: '4'}}"))
    monkeypatch.chdir(w.ws)
    monkeypatch.setenv("FAKE_SERVER_LOG", str(w.server_log))
    wt = WorkspaceTasks(w.ws / "projects.yaml")
    p = wt.projects["pa1"]
    assert p.by_stage == {"generate": {"gen_flag": "a", "level": 4}, "build": {"build_flag": "b"},
                          "flash": {"flash_flag": "c"}, "run": {}}
    # tpl_a and tpl_b have the same content, hence one cache entry: one server_info_query
    assert w.server_starts() == 1
    assert WorkspaceTasks(w.ws / "projects.yaml").projects["pa1"].by_stage == p.by_stage
    assert w.server_starts() == 1
    names = [t["name"] for t in wt.task_build() if t.get("name")]
    assert names == ["pa1", "pa2", "pb1"]


def test_tvmc_compiler_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotFoundError, match="tvmc.*not on PATH"):
        compile_action(str(tmp_path / "m.tflite"), "tvmc", {}, "m", str(tmp_path / "out.tar"))
    assert not (tmp_path / "out.tar").exists()


def test_tvmc_compiler_runs_tvmc_with_the_model_options(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in `tvmc` that records its argv and writes the archive where -o says.
    archive = tmp_path / "made_by_tvmc.tar"
    archive.write_bytes(mlf_bytes("int8"))
    fake = tmp_path / "bin" / "tvmc"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\nimport json, shutil, sys\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        f"shutil.copyfile({str(archive)!r}, out)\n"
        f"json.dump(sys.argv[1:], open({str(tmp_path / 'argv.json')!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    out = tmp_path / "mlf" / "m.tar"
    compile_action(str(tmp_path / "m.tflite"), "tvmc", {"target": "c", "executor": "aot", "pass_config": [
        "tir.disable_vectorize=1", "tir.usmp.enable=1"]}, "m", str(out))
    assert out.read_bytes() == archive.read_bytes()
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["compile", str(tmp_path / "m.tflite")]
    assert argv[argv.index("--output-format") + 1] == "mlf"
    assert argv[argv.index("--target") + 1] == "c" and argv[argv.index("--executor") + 1] == "aot"
    assert argv.count("--pass-config") == 2
    # an archive tvmc wrote that is not valid MLF is refused, and nothing is left behind
    archive.write_bytes(b"garbage")
    with pytest.raises(MicrotvmError):
        compile_action(str(tmp_path / "m.tflite"), "tvmc", {}, "m", str(tmp_path / "mlf" / "bad.tar"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.tar"]
    assert tvmc_argv("tvmc", "a", "b", "m", {"flag": True, "off": False}) == [
        "tvmc", "compile", "a", "--output-format", "mlf", "-o", "b", "--module-name", "m", "--flag"]


def test_device_lock_serialises(tmp_path: Path) -> None:
    order: list[str] = []

    def hold(tag: str) -> None:
        with device_lock(str(tmp_path), "qemu_arm-mps2_an386"):
            order.append(f"{tag}+")
            time.sleep(0.2)
            order.append(f"{tag}-")

    # flock locks belong to open file descriptions: threads with separate opens exclude each other
    threads = [threading.Thread(target=hold, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    with device_lock(str(tmp_path), "x", timeout=1):
        with pytest.raises(MicrotvmError, match="stayed busy"):
            with device_lock(str(tmp_path), "x", timeout=0.3):
                pass


def test_run_logged_turns_errors_into_a_message_with_the_log(tmp_path: Path) -> None:
    def fails() -> None:
        print("some build output")
        raise ToolNotFoundError("west is not installed")

    result = run_logged("build:x", str(tmp_path), fails)
    assert "build:x: west is not installed" in result.message
    assert "build_x.log" in result.message
    log = (tmp_path / "build_x.log").read_text()
    assert "some build output" in log and "west is not installed" in log
    assert run_logged("build:y", str(tmp_path), lambda: None) is None


def test_tasks_module_import_is_light() -> None:
    code = ("import sys, microtvm_tasks.tasks, microtvm_tasks.config, microtvm_tasks.server_info;"
            "heavy = [m for m in ('numpy', 'microtvm_tasks.compiler', 'microtvm_tasks.session', 'onnx', "
            "'tflite') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
