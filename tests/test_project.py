"""create_project / build_project / flash_project against a real (fake-platform) Project API server."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tasks_support import mlf_bytes, write_fake_template

from microtvm_tasks.errors import HandEditError, MLFError, OptionError, StateError
from microtvm_tasks.fsutil import sha256_file, tree_hash
from microtvm_tasks.project import build_project, create_project, find_hand_edits, flash_project
from microtvm_tasks.state import load_state


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    tpl = write_fake_template(tmp_path / "tpl")
    mlf = tmp_path / "m.tar"
    mlf.write_bytes(mlf_bytes("int8"))
    return tpl, mlf, tmp_path / "projects" / "p"


def test_create_records_state(setup: tuple[Path, Path, Path]) -> None:
    tpl, mlf, proj = setup
    state = create_project(proj, mlf, tpl, {"gen_flag": "hello", "level": "7"}, cache_dir=proj.parent / "c")
    assert (proj / "src" / "model.c").read_text().startswith("/* gen_flag=hello level=7 */")
    saved = load_state(proj)
    assert saved == state
    assert saved.options == {"gen_flag": "hello", "level": 7}  # typed from the template's metadata
    assert saved.platform == "fake"
    assert saved.template_dir == str(tpl) and saved.template_hash == tree_hash(tpl)
    assert saved.mlf_path == str(mlf) and saved.mlf_hash == sha256_file(mlf)
    assert saved.generated_files["src/model.c"] == sha256_file(proj / "src" / "model.c")
    assert ".tvmc.json" not in saved.generated_files
    assert [p.name for p in proj.parent.iterdir() if p.name != "c"] == ["p"]  # no temp dir left


def test_bad_options_and_missing_mlf(setup: tuple[Path, Path, Path]) -> None:
    tpl, mlf, proj = setup
    with pytest.raises(OptionError, match="unknown option 'nope'.*gen_flag"):
        create_project(proj, mlf, tpl, {"nope": 1}, cache_dir=proj.parent / "c")
    with pytest.raises(OptionError, match="must be an int"):
        create_project(proj, mlf, tpl, {"level": "high"}, cache_dir=proj.parent / "c")
    with pytest.raises(MLFError, match="not found"):
        create_project(proj, mlf.with_name("none.tar"), tpl, {}, cache_dir=proj.parent / "c")
    assert not proj.exists()


def test_build_and_flash_record_artefacts(setup: tuple[Path, Path, Path]) -> None:
    tpl, mlf, proj = setup
    create_project(proj, mlf, tpl, {"build_flag": "remembered"}, cache_dir=proj.parent / "c")
    with pytest.raises(StateError, match="build it first"):
        flash_project(proj)
    state = build_project(proj)
    assert (proj / "build" / "firmware.bin").read_text().endswith("build_flag=remembered")
    build = state.artefacts["build"]
    assert build["complete"] and build["outputs"] == ["build/firmware.bin", "build/partial.o"]
    assert "src/model.c" in build["inputs"] and "build/firmware.bin" not in build["inputs"]
    assert build["generation"] == state.artefacts["generate"]["id"]

    state = build_project(proj, {"build_flag": "override"})  # overrides win over remembered options
    assert (proj / "build" / "firmware.bin").read_text().endswith("build_flag=override")
    state = flash_project(proj, {"flash_flag": "F"})
    assert (proj / "flashed.txt").read_text() == "flash_flag=F"
    assert state.last_flash["build_id"] == state.artefacts["build"]["id"]
    assert state.artefacts["flash"]["outputs"] == ["flashed.txt"]
    assert find_hand_edits(proj, state) == []


def test_build_streams_stderr_and_records_the_size_report(
        setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    tpl, mlf, proj = setup
    create_project(proj, mlf, tpl, {}, cache_dir=proj.parent / "c")
    state = build_project(proj)
    assert "sizes" not in state.artefacts["build"]  # no report, no entry
    monkeypatch.setenv("FAKE_BUILD_SIZES", "1")
    state = build_project(proj)
    assert state.artefacts["build"]["sizes"] == {"text": 123, "bss": 45}
    assert load_state(proj).artefacts["build"]["sizes"] == {"text": 123, "bss": 45}
    # the build tools' stderr reaches the user (and a doit task's log)
    assert "fake compiler: warning: sizes reported" in capfd.readouterr().err


def test_failed_build_is_not_recorded_as_done(setup: tuple[Path, Path, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tpl, mlf, proj = setup
    create_project(proj, mlf, tpl, {}, cache_dir=proj.parent / "c")
    build_project(proj)
    monkeypatch.setenv("FAKE_BUILD_CRASH", "1")
    with pytest.raises(Exception, match="(?i)server|exit|died|closed"):
        build_project(proj)
    state = load_state(proj)
    assert state.artefacts["build"]["complete"] is False
    assert find_hand_edits(proj, state) == []  # its partial output is not a user file


def test_regenerate_over_hand_edits(setup: tuple[Path, Path, Path]) -> None:
    tpl, mlf, proj = setup
    cache = proj.parent / "c"
    create_project(proj, mlf, tpl, {}, cache_dir=cache)
    build_project(proj)
    # without edits, regenerating replaces the project (build outputs go too)
    create_project(proj, mlf, tpl, {"gen_flag": "two"}, cache_dir=cache)
    assert "gen_flag=two" in (proj / "src" / "model.c").read_text()
    assert not (proj / "build").exists()

    (proj / "src" / "main.c").write_text("/* edited */\n")
    (proj / "README.mine").write_text("notes\n")
    (proj / "src" / "model.c").unlink()  # deleting is not something regenerating could lose
    with pytest.raises(HandEditError) as info:
        create_project(proj, mlf, tpl, {"gen_flag": "three"}, cache_dir=cache)
    msg = str(info.value)
    assert "README.mine" in msg and "src/main.c" in msg and "src/model.c" not in msg
    assert (proj / "src" / "main.c").read_text() == "/* edited */\n"

    state = create_project(proj, mlf, tpl, {"gen_flag": "three"}, cache_dir=cache, force=True)
    backup = Path(state.artefacts["generate"]["backup"])
    assert backup.parent == proj.parent and backup.name.startswith("p.backup-")
    assert (backup / "src" / "main.c").read_text() == "/* edited */\n"
    assert (backup / "README.mine").exists()
    assert "gen_flag=three" in (proj / "src" / "model.c").read_text()


def test_refuses_to_overwrite_a_foreign_directory(setup: tuple[Path, Path, Path]) -> None:
    tpl, mlf, proj = setup
    proj.mkdir(parents=True)
    (proj / "important.c").write_text("x")
    with pytest.raises(HandEditError, match="not a project generated by microtvm-tasks"):
        create_project(proj, mlf, tpl, {}, cache_dir=proj.parent / "c")
    assert (proj / "important.c").exists()


def test_failed_generate_keeps_the_previous_project(setup: tuple[Path, Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tpl, mlf, proj = setup
    cache = proj.parent / "c"
    first = create_project(proj, mlf, tpl, {"gen_flag": "good"}, cache_dir=cache)
    monkeypatch.setenv("FAKE_GENERATE_CRASH", "1")
    with pytest.raises(Exception):  # noqa: B017 - the server dies: any client error
        create_project(proj, mlf, tpl, {"gen_flag": "bad"}, cache_dir=cache)
    assert load_state(proj) == first
    assert "gen_flag=good" in (proj / "src" / "model.c").read_text()
    assert sorted(p.name for p in proj.parent.iterdir()) == ["c", "p"]


def test_a_failed_final_rename_puts_the_old_project_back(tmp_path, monkeypatch):
    """Nothing lost: if moving the new project into place fails, the old one (moved aside
    first) is restored, not deleted with the temporary directory."""
    import os as _os

    from conftest import SINE_TFLITE, TEMPLATES_DIR

    from microtvm_tasks.compiler import compile_model
    from microtvm_tasks.project import create_project

    mlf = compile_model(SINE_TFLITE, tmp_path / "sine.tar")
    project = tmp_path / "p"
    create_project(project, mlf, TEMPLATES_DIR / "host", {})
    before = (project / ".tvmc.json").read_text()
    real = _os.rename

    def failing(src, dst):
        if _os.fspath(dst) == _os.fspath(project) and "old" not in _os.fspath(src):
            raise OSError(28, "No space left on device", _os.fspath(dst))
        return real(src, dst)

    monkeypatch.setattr(_os, "rename", failing)
    with pytest.raises(Exception):  # noqa: B017 - the disk error, in whatever form create_project gives it
        create_project(project, mlf, TEMPLATES_DIR / "host", {})
    monkeypatch.setattr(_os, "rename", real)
    assert (project / ".tvmc.json").read_text() == before
