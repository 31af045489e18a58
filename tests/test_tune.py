"""Targets, kernel variants, profiling builds and tuning through the Project API.

The machinery tests give FULLY_CONNECTED two stand-in variant names for the sine model
(both lower to the same kernel, so they must measure alike and compute alike) and tune it
on the host platform for real: compile per batch, generate, build, run, PROFILE. The
speed tests with real kernel variants run kws on the emulated Cortex-M4.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile

import numpy as np
import pytest
from conftest import REPO_ROOT, SINE_TFLITE, TEMPLATES_DIR, device_session

from microtvm_tasks.compiler import compile_model, compile_to_members, load_model
from microtvm_tasks.compiler.ops import spec
from microtvm_tasks.compiler.passes import run_passes
from microtvm_tasks.compiler.variants import (
    Record,
    best_variants,
    compiler_version,
    read_log,
    signature,
)
from microtvm_tasks.errors import CompileError, SessionError
from microtvm_tasks.project import build_project, create_project, flash_project
from microtvm_tasks.session import run_project
from microtvm_tasks.targets import TARGETS, Target
from microtvm_tasks.template_support.boards import board_cpu, project_target
from microtvm_tasks.tune import tune_model

HOST = TEMPLATES_DIR / "host"
QEMU_ARM = TEMPLATES_DIR / "qemu_arm"
KWS = REPO_ROOT / "models" / "kws.tflite"


@pytest.fixture
def two_fc_variants(monkeypatch):
    """FULLY_CONNECTED offers 'first' and 'second' (same kernel) on every target."""
    fc = spec("FULLY_CONNECTED")
    monkeypatch.setattr(type(fc), "variants", lambda self, node, graph, target: ("first", "second"))
    return fc


def test_targets_by_name_and_by_board_cpu():
    assert Target.parse(None).name == "generic"
    assert Target.parse("Cortex-M4").dsp and not Target.parse("cortex-m3").dsp
    assert Target.parse("cortex-m55").mve
    with pytest.raises(CompileError, match="unknown target 'cortex-m99'.*cortex-m4"):
        Target.parse("cortex-m99")
    assert Target.for_cpu("atmega328p").name == "generic"
    assert board_cpu(QEMU_ARM, "mps2_an386") == "cortex-m4"
    assert project_target(QEMU_ARM, {"board": "mps2_an500"}) == "cortex-m7"
    assert project_target(QEMU_ARM, {"board": "mps2_an386"}, "cortex-m33") == "cortex-m33"
    assert project_target(HOST, {}) == "generic"
    assert set(TARGETS) >= {"generic", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}


def test_chosen_variant_is_recorded_and_a_bad_choice_is_an_error(two_fc_variants):
    members = compile_to_members(SINE_TFLITE, choose=lambda node, names: "second")
    assert members["src/default.ir.txt"].decode().count("variant second") == 3
    with pytest.raises(CompileError, match="variant 'third' is not one of first, second"):
        compile_to_members(SINE_TFLITE, choose=lambda node, names: "third")


def test_signature_ignores_names_but_not_shapes():
    g = run_passes(load_model(SINE_TFLITE))
    sigs = [signature(n, g) for n in g.nodes]
    assert sigs[0] != sigs[1]  # [1,1] -> 16 vs 16 -> 16
    assert all(n.name not in s for n, s in zip(g.nodes, sigs, strict=True))
    assert sigs[0].startswith("FULLY_CONNECTED in=int8[1,1]")


def test_profiling_build_times_every_operator_on_the_host(tmp_path):
    mlf = compile_model(SINE_TFLITE, tmp_path / "sine.tar", profile=True)
    with tarfile.open(mlf) as tar:
        ops = json.load(tar.extractfile("./src/default.profile.json"))["operators"]
    assert [o["kind"] for o in ops] == ["FULLY_CONNECTED"] * 3
    project = tmp_path / "p"
    create_project(project, mlf, HOST, {})
    build_project(project)
    flash_project(project)
    res = run_project(project, profile=True)
    assert len(res.op_ticks) == 3 and all(t >= 0 for t in res.op_ticks)
    assert sum(res.op_ticks) <= res.ticks[0]
    # the same project without profiling says so instead of returning nothing
    plain = compile_model(SINE_TFLITE, tmp_path / "plain.tar")
    create_project(tmp_path / "q", plain, HOST, {})
    build_project(tmp_path / "q")
    flash_project(tmp_path / "q")
    with pytest.raises(SessionError, match="not built from a profiling archive"):
        run_project(tmp_path / "q", profile=True)


def test_tuning_measures_each_variant_once_and_compile_uses_the_log(tmp_path, two_fc_variants):
    log = tmp_path / "sine.jsonl"
    said: list[str] = []
    first = tune_model(SINE_TFLITE, HOST, {}, log, work_dir=tmp_path / "work", say=said.append)
    assert first.batches == 2 and first.measured == 6 and first.pending_before == 6
    records = read_log(log)
    assert {r.variant for r in records} == {"first", "second"}
    assert all(r.target == "generic" and r.compiler == compiler_version() for r in records)
    assert len(said) == 2
    # a rerun with an unchanged model measures nothing and builds nothing
    again = tune_model(SINE_TFLITE, HOST, {}, log, work_dir=tmp_path / "work2", say=said.append)
    assert again.batches == 0 and again.measured == 0 and len(said) == 2
    assert not (tmp_path / "work2").exists()
    # compile picks the fastest logged variant per instance (here: made 'second' by the log)
    doctored = [Record(r.signature, r.target, r.compiler, r.variant, 1 if r.variant == "second" else 99)
                for r in records]
    log.write_text("".join(json.dumps(r.__dict__) + "\n" for r in doctored))
    ir = compile_to_members(SINE_TFLITE, tuning_log=log)["src/default.ir.txt"].decode()
    assert ir.count("variant second") == 3
    # for another target the log says nothing: defaults
    ir = compile_to_members(SINE_TFLITE, tuning_log=log, target="cortex-m4")["src/default.ir.txt"].decode()
    assert ir.count("variant first") == 3


def test_tuning_resumes_after_an_interrupted_batch(tmp_path, two_fc_variants, monkeypatch):
    from microtvm_tasks import project

    calls = {"n": 0}

    orig = project.flash_project

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second batch
        return orig(*a, **k)

    monkeypatch.setattr(project, "flash_project", flaky)
    log = tmp_path / "sine.jsonl"
    with pytest.raises(KeyboardInterrupt):
        tune_model(SINE_TFLITE, HOST, {}, log, work_dir=tmp_path / "w")
    assert {r.variant for r in read_log(log)} == {"first"}  # batch 1 kept, nothing half-written
    rest = tune_model(SINE_TFLITE, HOST, {}, log, work_dir=tmp_path / "w")
    assert rest.batches == 1 and rest.measured == 3


def test_a_damaged_log_line_is_an_error_naming_the_line(tmp_path):
    log = tmp_path / "t.jsonl"
    log.write_text('{"signature": "x", "target": "generic", "compiler": "c", "variant": "a", "ticks": 3}\n'
                   "{not json\n")
    with pytest.raises(CompileError, match=r"t.jsonl:2: not a tuning record"):
        read_log(log)
    assert best_variants([Record("s", "generic", "c", "a", 5), Record("s", "generic", "c", "b", 4)],
                         Target.parse(None), "c") == {"s": "b"}


def _needs_qemu():
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.mark.e2e
def test_profiling_on_the_emulated_m4_sums_to_the_run(tmp_path):
    _needs_qemu()
    mlf = compile_model(KWS, tmp_path / "kws.tar", profile=True, target="cortex-m4")
    project = tmp_path / "p"
    create_project(project, mlf, QEMU_ARM, {"board": "mps2_an386", "project_type": "host_driven"})
    build_project(project)
    flash_project(project)
    res = run_project(project, profile=True)
    again = run_project(project, profile=True)
    assert res.op_ticks == again.op_ticks  # exact instruction counts: repeatable
    # every operator's count is inside the run's; the readings themselves cost a little
    assert 0 < res.ticks[0] - sum(res.op_ticks) < 100 * len(res.op_ticks)
    assert np.array_equal(res.outputs[0], again.outputs[0])


def _varied_input(desc, rng) -> np.ndarray:
    """An int8 input whose TFLite Micro outputs vary (uniform int8 saturates kws)."""
    t = desc.inputs[0]
    return np.clip(rng.normal(0, 24, size=t.shape), -128, 127).astype(np.int8)


@pytest.mark.e2e
@pytest.mark.slow
def test_tuned_kws_on_the_m4_runs_fewer_instructions_than_untuned_and_stays_exact(tmp_path):
    _needs_qemu()
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    options = {"board": "mps2_an386", "project_type": "host_driven"}
    log = tmp_path / "kws.jsonl"
    first = tune_model(KWS, QEMU_ARM, options, log, work_dir=tmp_path / "tune", say=lambda s: None)
    assert first.target == "cortex-m4" and first.measured > 0
    assert tune_model(KWS, QEMU_ARM, options, log, work_dir=tmp_path / "tune2").batches == 0

    rng = np.random.default_rng(7)
    counts: dict[str, int] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    x = None
    for label, kwargs in (("untuned", {}), ("m4 default", {"target": "cortex-m4"}),
                          ("tuned", {"target": "cortex-m4", "tuning_log": log})):
        mlf = compile_model(KWS, tmp_path / f"{label}.tar", **kwargs)
        project = tmp_path / label.replace(" ", "_")
        create_project(project, mlf, QEMU_ARM, options)
        build_project(project)
        flash_project(project)
        if x is None:
            with device_session(project) as (_, desc):
                x = _varied_input(desc, rng)
        res = run_project(project, [x], timeout=60)
        counts[label] = res.ticks[0]
        outputs[label] = res.outputs
    interp = runtime.Interpreter.from_bytes(KWS.read_bytes(), arena_size=4 << 20)
    interp.set_input(x, 0)
    interp.invoke()
    ref = np.array(interp.get_output(0), copy=True)
    assert len(np.unique(ref)) > 2, "the reference output saturates: the input does not test rounding"
    for label, outs in outputs.items():
        assert np.array_equal(outs[0].reshape(ref.shape), ref), label
    assert counts["tuned"] < counts["untuned"], counts
    assert counts["tuned"] <= counts["m4 default"], counts


def test_a_tuning_log_never_buys_speed_with_arena(tmp_path):
    """RAM first: a log that calls the scratch-hungry variant fastest everywhere still gives
    ad01 no larger an arena than the defaults (its 640-input layer would need 1408 B with the
    int16 input copy; TFLite Micro's arena head is 768 B)."""
    from conftest import SHARED_MODELS

    from microtvm_tasks.compiler.variants import tunable_nodes

    model = SHARED_MODELS / "ad01_int8.tflite"
    if not model.exists():
        pytest.skip(f"{model} not present")
    target = Target.parse("cortex-m4")
    g = run_passes(load_model(model))
    log = tmp_path / "ad01.jsonl"
    lines = []
    for _, node, names in tunable_nodes(g, target):
        for v in names:
            lines.append(json.dumps({"signature": signature(node, g), "target": target.name,
                                     "compiler": compiler_version(), "variant": v,
                                     "ticks": 1 if v == "dsp_pairs_x16" else 99}))
    log.write_text("\n".join(lines) + "\n")
    arena = {}
    for label, kwargs in (("default", {}), ("logged", {"tuning_log": log})):
        ir = compile_to_members(model, target=target, **kwargs)["src/default.ir.txt"].decode()
        arena[label] = int(ir.split("memory plan: arena ")[1].split()[0])
        if label == "logged":
            assert "variant dsp_pairs_x16" in ir  # taken where it costs no RAM
    assert arena["logged"] <= arena["default"] <= 768, arena


def test_projects_yaml_target_and_tune_errors_name_the_line(tmp_path):
    from microtvm_tasks.errors import ConfigError
    from microtvm_tasks.tasks import WorkspaceTasks

    shutil.copy(SINE_TFLITE, tmp_path / "sine.tflite")
    cfg = tmp_path / "projects.yaml"
    cfg.write_text("models:\n  sine: {path: sine.tflite, compiler: mlf}\n"
                   "projects:\n  p1: {model: sine, platform: host, target: cortex-m99}\n")
    bad_target = r"projects.yaml:4: projects.p1.target: unknown target 'cortex-m99'"
    with pytest.raises(ConfigError, match=bad_target):
        WorkspaceTasks(cfg)
    cfg.write_text("models:\n  sine: {path: sine.tflite, compiler: mlf}\n"
                   "projects:\n  p1: {model: sine, platform: host, tune: true}\n")
    not_builtin = r"projects.yaml:4: project 'p1': `tune: true` needs a model compiled by the builtin"
    assert re.search(not_builtin, WorkspaceTasks(cfg).broken["p1"])
    # a required option missing is found at load, not at generate (qemu_arm requires board)
    cfg.write_text("models:\n  sine: {path: sine.tflite}\nprojects:\n"
                   "  q: {model: sine, platform: qemu_arm, options: {project_type: host_driven}}\n")
    missing = "missing required option 'board' for generate_project (project 'q')"
    assert missing in WorkspaceTasks(cfg).broken["q"]
    # a board's CPU picks the compile task: qemu_arm's mps2_an500 is a Cortex-M7
    opts = "project_type: host_driven"
    cfg.write_text(
        "models:\n  sine: {path: sine.tflite}\nprojects:\n"
        f"  q: {{model: sine, platform: qemu_arm, options: {{board: mps2_an500, {opts}}}}}\n"
        f"  t: {{model: sine, platform: qemu_arm, options: {{board: mps2_an386, {opts}}}, tune: true}}\n")
    wt = WorkspaceTasks(cfg)
    names = {t["name"] for t in wt.task_compile() if t.get("name")}
    assert names == {"sine", "sine@cortex-m7", "sine@t"}
    (tune,) = [t for t in wt.task_tune() if t.get("name")]
    assert tune["targets"] == [str(tmp_path / "build" / "tune" / "t.jsonl")]
    compile_t = next(t for t in wt.task_compile() if t.get("name") == "sine@t")
    assert tune["targets"][0] in compile_t["file_dep"]
