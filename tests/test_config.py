"""projects.yaml: schema validation with file:line:field errors, matrix expansion, cross-references."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from microtvm_tasks.config import SCHEMA, line_of, load_workspace
from microtvm_tasks.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "projects.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path: Path, text: str, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_workspace(write(tmp_path, text), **kw)
    return str(info.value)


def test_loads_projects_and_resolves_paths(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "microtvm_api_server.py").write_text("")
    ws = load_workspace(write(tmp_path, """\
        defaults:
          build_dir: out
          options: {verbose: true}
        models:
          sine: {path: models/sine.tflite}
          old: {path: a.tar, compiler: mlf, options: {x: 1}}
        projects:
          p1:
            model: sine
            template: tpl
            options: {board: b1, verbose: false}
            inputs: in.npz
          p2: {model: old, template: ./tpl, regenerate: force}
    """))
    assert ws.build_dir == tmp_path / "out"
    assert ws.models["sine"].path == tmp_path / "models" / "sine.tflite"
    assert ws.models["sine"].compiler == "builtin"
    assert ws.models["old"].compiler == "mlf" and ws.models["old"].options == {"x": 1}
    p1, p2 = ws.projects["p1"], ws.projects["p2"]
    assert p1.template == tpl and p1.options == {"board": "b1", "verbose": False}
    assert p1.inputs == tmp_path / "in.npz" and not p1.force_regenerate
    assert p2.options == {"verbose": True} and p2.force_regenerate
    assert ws.default_tasks == ["build"]
    assert ws.mlf_path("sine") == tmp_path / "out" / "mlf" / "sine.tar"
    assert ws.project_dir("p1") == tmp_path / "out" / "projects" / "p1"
    assert ws.state_dir == tmp_path / ".tvmc"


def test_matrix_expands_to_model_platform_board_names(tmp_path: Path) -> None:
    ws = load_workspace(write(tmp_path, """\
        models:
          sine: {path: s.tflite}
          kws: {path: k.tflite}
        matrix:
          - models: [sine, kws]
            platforms: [host]
          - models: [sine]
            platforms: [qemu_arm]
            boards: [mps2_an385, mps2_an386]
            options: {project_type: host_driven}
    """), check_templates=False)
    assert sorted(ws.projects) == ["kws_host", "sine_host", "sine_qemu_arm_mps2_an385",
                                   "sine_qemu_arm_mps2_an386"]
    p = ws.projects["sine_qemu_arm_mps2_an386"]
    assert p.platform == "qemu_arm" and p.model == "sine"
    assert p.options == {"project_type": "host_driven", "board": "mps2_an386"}
    assert ws.projects["sine_host"].options == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # both platform and template
        ("""\
         models: {m: {path: m.tflite}}
         projects:
           p:
             model: m
             platform: host
             template: x
         """, ":3: projects.p: give either `platform`"),
        # neither
        ("""\
         models: {m: {path: m.tflite}}
         projects:
           p:
             model: m
         """, ":3: projects.p: missing `platform`"),
        # unknown field, reported on its own line
        ("""\
         models: {m: {path: m.tflite}}
         projects:
           p:
             model: m
             platform: host
             optoins: {a: 1}
         """, ":6: projects.p.optoins: unknown field 'optoins'; allowed fields are: inputs, model, options"),
        # bad compiler
        ("""\
         models:
           m:
             path: m.tflite
             compiler: gcc
         """, ":4: models.m.compiler: 'gcc' is not allowed; use one of: builtin, tvmc, mlf"),
        # wrong type
        ("""\
         models:
           m:
             path: [a, b]
         """, ":3: models.m.path: must be a string, got a list"),
        # missing required
        ("""\
         models:
           m:
             compiler: mlf
         """, ":2: models.m: missing required field 'path'"),
        # a name that cannot be a task name
        ("""\
         models:
           "a:b": {path: m.tflite}
         """, ":2: models.a:b: 'a:b' is not a valid name"),
        # matrix entry
        ("""\
         models: {m: {path: m.tflite}}
         matrix:
           - models: [m]
             platforms: []
         """, ":4: matrix[0].platforms: must list at least one entry"),
        ("""\
         defaults:
           build_dir: 3
         """, ":2: defaults.build_dir: must be a string, got an integer"),
        ("top: 1\n", ":1: top: unknown field 'top'"),
    ],
)
def test_schema_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    msg = error_of(tmp_path, text, check_templates=False)
    assert msg.startswith(str(tmp_path / "projects.yaml") + ":")
    assert expected in msg


def test_unknown_model_names_line(tmp_path: Path) -> None:
    msg = error_of(tmp_path, """\
        models:
          sine: {path: s.tflite}
        projects:
          a: {model: sine, platform: host}
          b:
            platform: host
            model: sinus
    """, check_templates=False)
    assert ":7: projects.b.model: unknown model 'sinus'; models declared under `models:` are: sine" in msg


def test_duplicate_project_names(tmp_path: Path) -> None:
    # a matrix entry producing a name already declared
    msg = error_of(tmp_path, """\
        models:
          sine: {path: s.tflite}
        projects:
          sine_host: {model: sine, platform: host}
        matrix:
          - {models: [sine], platforms: [host]}
    """, check_templates=False)
    assert ":6: matrix[0]: project 'sine_host' is defined twice (first at line 4)" in msg
    # a YAML key given twice (PyYAML would silently keep the last one)
    msg = error_of(tmp_path, """\
        models:
          sine: {path: s.tflite}
        projects:
          p: {model: sine, platform: host}
          q: {model: sine, platform: host}
          p: {model: sine, platform: host}
    """, check_templates=False)
    assert ":6: duplicate key 'p' (first given on line 4)" in msg


def test_missing_template_and_unknown_platform(tmp_path: Path) -> None:
    msg = error_of(tmp_path, """\
        models: {m: {path: m.tflite}}
        projects:
          p:
            model: m
            template: nowhere
    """)
    assert ":5: projects.p.template: template directory" in msg and "no microtvm_api_server.py" in msg
    msg = error_of(tmp_path, """\
        models: {m: {path: m.tflite}}
        projects:
          p:
            model: m
            platform: no_such_platform
    """)
    assert ":5: projects.p.platform: unknown platform 'no_such_platform'" in msg


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "models:\n  m: {path: [unclosed\n")
    assert "invalid YAML" in msg and str(tmp_path) in msg
    with pytest.raises(ConfigError, match="not found"):
        load_workspace(tmp_path / "nope.yaml")


def test_empty_file_is_an_empty_workspace(tmp_path: Path) -> None:
    ws = load_workspace(write(tmp_path, ""))
    assert ws.projects == {} and ws.models == {}


def test_line_of_maps_json_paths() -> None:
    text = "a:\n  b:\n    - x\n    - y: 1\n"
    assert line_of(text, ["a", "b", 1, "y"]) == 4
    assert line_of(text, ["a", "b", 0]) == 3
    assert line_of(text, ["a", "missing"]) == 1


def test_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_repository_projects_yaml_is_valid() -> None:
    ws = load_workspace(REPO / "projects.yaml")
    assert {"sine", "kws"} <= set(ws.models)
    assert {"sine_host", "kws_host", "sine_qemu_arm", "kws_qemu_arm", "sine_zephyr", "sine_arduino"} <= set(
        ws.projects)
    assert ws.projects["kws_qemu_arm"].options["board"] == "mps2_an386"
    assert all(t.split(":")[1] in ws.projects for t in ws.default_tasks)
    for spec in ws.projects.values():
        assert spec.template is not None and (spec.template / "microtvm_api_server.py").is_file()
