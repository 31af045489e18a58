"""The `microtvm` CLI: option listing, typed -o values, error formatting, and a real
create-project / build / flash round trip through a tiny Project API template."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from microtvm_tasks import cli
from microtvm_tasks.mlf import write_archive

TINY_SERVER = textwrap.dedent('''
    """A tiny Project API template for the CLI tests: records what it was asked to do."""
    import json
    import pathlib
    import shutil

    from microtvm_tasks.project_api import server

    HERE = pathlib.Path(__file__).resolve().parent
    OPTIONS = [
        server.ProjectOption("board", required=["generate_project", "build", "flash"], type="str",
                             choices=["tiny1", "tiny2"], help="Board to build for."),
        server.ProjectOption("verbose", optional=["build"], type="bool", default=False,
                             help="Print every command the build runs."),
        server.ProjectOption("heap", optional=["generate_project", "build"], type="int", default=1024,
                             help="Heap size in bytes."),
        server.ProjectOption("port", optional=["flash", "open_transport"], type="str",
                             help="Serial port of the board."),
    ]


    class Handler(server.ProjectAPIHandler):
        def server_info_query(self, tvm_version):
            is_template = not (HERE / "model.tar").exists()
            return server.ServerInfo("tiny", is_template, None if is_template else str(HERE / "model.tar"),
                                     OPTIONS)

        def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
            d = pathlib.Path(project_dir)
            d.mkdir(parents=True)
            shutil.copy2(__file__, d / "microtvm_api_server.py")
            shutil.copy2(model_library_format_path, d / "model.tar")
            (d / "generate.json").write_text(json.dumps(options, sort_keys=True))

        def build(self, options):
            if options.get("heap") == 13:
                raise RuntimeError("compiler exploded on an unlucky heap")
            pathlib.Path("build").mkdir(exist_ok=True)
            pathlib.Path("build/firmware.json").write_text(json.dumps(options, sort_keys=True))

        def flash(self, options):
            pathlib.Path("flashed.json").write_text(json.dumps(options, sort_keys=True))

        def open_transport(self, options):
            raise NotImplementedError

        def close_transport(self):
            pass

        def read_transport(self, n, timeout_sec):
            raise server.TransportClosedError()

        def write_transport(self, data, timeout_sec):
            raise server.TransportClosedError()


    if __name__ == "__main__":
        server.main(Handler())
''')

META = {"version": 7, "modules": {"sine": {
    "model_name": "sine", "style": "full-model", "target": ["c -keys=cpu"], "executors": ["aot"],
    "memory": {"functions": {"operator_functions": [], "main": [{
        "device": 1, "workspace_size_bytes": 16, "constants_size_bytes": 0, "io_size_bytes": 2,
        "inputs": {"x": {"size": 1, "dtype": "int8"}}, "outputs": {"y": {"size": 1, "dtype": "int8"}}}]}}}}}


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace: cwd (so .tvmc/ lands here), a tiny template and an MLF archive."""
    monkeypatch.chdir(tmp_path)
    tpl = tmp_path / "tiny_template"
    tpl.mkdir()
    (tpl / "microtvm_api_server.py").write_text(TINY_SERVER)
    write_archive(tmp_path / "sine.tar", {"metadata.json": json.dumps(META).encode()})
    return tmp_path


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _need_project():
    pytest.importorskip("microtvm_tasks.project")


def test_list_options_tiny(ws, capsys):
    code, out, err = run(capsys, "create-project", "p", "sine.tar", "template", "-d", "tiny_template",
                         "--list-options")
    assert code == 0, err
    assert "Project options of platform 'template'" in out and "remembered in .tvmc.json" in out
    assert "  board=tiny1|tiny2  (required)\n" in out
    assert "type: str; default: (none); choices: tiny1, tiny2" in out
    assert "required by: create-project, build, flash" in out
    assert "  verbose=true|false\n      type: bool; default: false\n      accepted by: build\n" in out
    assert "  heap=INT\n      type: int; default: 1024\n      accepted by: create-project, build\n" in out
    assert "accepted by: flash, run" in out and "Serial port of the board." in out
    assert not (ws / "p").exists()


def test_list_options_command(ws, capsys):
    code, out, _ = run(capsys, "list-options", "-d", "tiny_template")
    assert code == 0 and "board=tiny1|tiny2\n" in out  # no command, so no (required) mark
    assert "required by: create-project, build, flash" in out
    code, _, err = run(capsys, "list-options")
    assert code == 2 and "give a PLATFORM" in err


def test_list_options_builtin_host(ws, capsys):
    if "host" not in cli.list_templates():
        pytest.skip("the host template is not installed yet")
    code, out, err = run(capsys, "create-project", "build/p", "build/mlf/sine.tar", "host", "--list-options")
    assert code == 0, err
    assert "Project options of platform 'host'" in out
    assert "project_type=host_driven|aot_standalone_demo" in out and "accepted by: create-project" in out


def test_templates(ws, capsys):
    code, out, _ = run(capsys, "templates")
    assert code == 0
    for name, path in cli.list_templates().items():
        assert f"{name}" in out and str(path) in out


@pytest.mark.parametrize("opt, message", [
    ("heap=lots", "option 'heap' (-o on the command line) must be an int, got 'lots'"),
    ("verbose=maybe", "option 'verbose' (-o on the command line) must be a bool (true or false)"),
    ("board=tiny3", "'tiny3' is not one of the allowed values: tiny1, tiny2"),
    ("bord=tiny1", "unknown option 'bord' (-o on the command line); this template's options are: "
                   "board, heap, port, verbose"),
    ("board", "is not of the form KEY=VALUE"),
])
def test_bad_options(ws, capsys, opt, message):
    code, out, err = run(capsys, "create-project", "p", "sine.tar", "template", "-d", "tiny_template",
                         "-o", opt)
    assert code == 2
    assert err == f"microtvm: error: {err.split('error: ', 1)[1]}"
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (ws / "p").exists()


def test_missing_required(ws, capsys):
    code, _, err = run(capsys, "create-project", "p", "sine.tar", "template", "-d", "tiny_template")
    assert code == 2
    assert "missing required option 'board' for generate_project (-o on the command line)" in err
    assert "-o board=tiny1|tiny2" in err


def test_unknown_platform(ws, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["create-project", "p", "sine.tar", "nosuch"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err and "'template'" in err
    for name in cli.list_templates():
        assert repr(name) in err
    code, _, err = run(capsys, "list-options", "nosuch")
    assert code == 2 and "'nosuch'" in err and "Traceback" not in err
    for name in cli.list_templates():
        assert name in err


def test_template_needs_dir(ws, capsys):
    code, _, err = run(capsys, "create-project", "p", "sine.tar", "template")
    assert code == 2 and "needs -d TEMPLATE_DIR" in err
    code, _, err = run(capsys, "list-options", "-d", "no_such_dir")
    assert code == 2 and "no_such_dir: no such template directory" in err


def test_debug_shows_traceback(ws, capsys):
    (ws / "bad.tar").write_bytes(b"not a tar at all" * 40)
    code, _, err = run(capsys, "create-project", "p", "bad.tar", "template", "-d", "tiny_template",
                       "-o", "board=tiny1")
    assert code == 2 and "Traceback" not in err and "bad.tar: not a tar archive" in err
    code, _, err = run(capsys, "--debug", "create-project", "p", "bad.tar", "template", "-d",
                       "tiny_template", "-o", "board=tiny1")
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("microtvm: error: ")


def test_not_a_project(ws, capsys):
    code, _, err = run(capsys, "build", "nowhere")
    assert code == 2 and "create-project" in err and "Traceback" not in err
    (ws / "empty").mkdir()
    code, _, err = run(capsys, "flash", "empty")
    assert code == 2 and ".tvmc.json: not found" in err


def test_create_build_flash_round_trip(ws, capsys):
    _need_project()
    code, out, err = run(capsys, "create-project", "proj", "sine.tar", "template", "-d", "tiny_template",
                         "-o", "board=tiny1", "heap=0x800")
    assert code == 0, err
    assert "created proj" in out and "model sine" in out
    state = json.loads((ws / "proj" / ".tvmc.json").read_text())
    assert state["options"] == {"board": "tiny1", "heap": 2048}  # typed, as given
    assert state["platform"] == "tiny"  # the server's platform_name for `template -d`
    assert json.loads((ws / "proj" / "generate.json").read_text()) == {"board": "tiny1", "heap": 2048}

    # build needs neither the platform nor the options again
    code, out, err = run(capsys, "build", "proj")
    assert code == 0, err
    fw = json.loads((ws / "proj" / "build" / "firmware.json").read_text())
    assert fw["board"] == "tiny1" and fw["heap"] == 2048 and fw.get("verbose", False) is False
    # an explicit -o overrides, typed
    code, _, err = run(capsys, "build", "proj", "-o", "verbose=YES")
    assert code == 0, err
    assert json.loads((ws / "proj" / "build" / "firmware.json").read_text())["verbose"] is True
    # ... and is checked like at create time
    code, _, err = run(capsys, "build", "proj", "-o", "heap=big")
    assert code == 2 and "option 'heap' (-o on the command line) must be an int" in err

    code, out, err = run(capsys, "flash", "proj")
    assert code == 0, err
    assert json.loads((ws / "proj" / "flashed.json").read_text())["board"] == "tiny1"
    code, _, err = run(capsys, "flash", "proj", "-o", "board=tiny2", "port=/dev/ttyX")
    assert code == 0, err
    assert json.loads((ws / "proj" / "flashed.json").read_text()) == {"board": "tiny2", "port": "/dev/ttyX"}

    # build --list-options marks what build requires and shows the remembered options
    code, out, _ = run(capsys, "build", "proj", "--list-options")
    assert code == 0 and "board=tiny1|tiny2  (required)" in out and "board=tiny1, heap=2048" in out

    # -f removes the previous build's outputs before building again
    (ws / "proj" / "build" / "stale.o").write_text("old")
    code, _, err = run(capsys, "build", "proj", "-f")
    assert code == 0, err
    assert not (ws / "proj" / "build" / "stale.o").exists()
    assert (ws / "proj" / "build" / "firmware.json").exists()


def test_server_error_is_one_line(ws, capsys):
    _need_project()
    assert run(capsys, "create-project", "proj", "sine.tar", "template", "-d", "tiny_template",
               "-o", "board=tiny2")[0] == 0
    code, _, err = run(capsys, "build", "proj", "-o", "heap=13")
    assert code == 2
    assert err.startswith("microtvm: error: ") and "compiler exploded on an unlucky heap" in err
    assert "Traceback" not in err and err.count("\n") == 1
    code, _, err = run(capsys, "--debug", "build", "proj", "-o", "heap=13")
    assert code == 2 and "Traceback" in err


def test_create_refuses_existing_without_force(ws, capsys):
    _need_project()
    args = ["create-project", "proj", "sine.tar", "template", "-d", "tiny_template", "-o", "board=tiny1"]
    assert run(capsys, *args)[0] == 0
    (ws / "proj" / "generate.json").write_text("edited by hand")
    code, _, err = run(capsys, *args)
    assert code == 2 and "generate.json" in err and "Traceback" not in err
    code, _, err = run(capsys, *args, "-f")
    assert code == 0, err
    assert json.loads((ws / "proj" / "generate.json").read_text())["board"] == "tiny1"


# ---- command registration ---------------------------------------------------------------------

def test_external_command_registration(ws, capsys, monkeypatch):
    mod = ws / "fake_cmds"
    mod.mkdir()
    (mod / "__init__.py").write_text("")
    (mod / "good.py").write_text(textwrap.dedent('''
        def register(subparsers):
            p = subparsers.add_parser("compile", help="compile things")
            p.add_argument("model")
            p.set_defaults(func=lambda args: print("compiled", args.model) or 0)
    '''))
    (mod / "broken.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(ws))
    monkeypatch.setitem(cli.EXTERNAL_COMMANDS, "compile", ("fake_cmds.good", "compile a model"))
    code, out, _ = run(capsys, "compile", "m.tflite")
    assert code == 0 and out == "compiled m.tflite\n"

    monkeypatch.setitem(cli.EXTERNAL_COMMANDS, "compile", ("fake_cmds.missing", "compile a model"))
    code, _, err = run(capsys, "compile", "m.tflite")
    assert code == 2 and "`compile` command is not available" in err and "fake_cmds.missing" in err

    # A module that exists but whose own dependency is missing is a real failure, not "absent".
    monkeypatch.setitem(cli.EXTERNAL_COMMANDS, "compile", ("fake_cmds.broken", "compile a model"))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cli.main(["compile", "m.tflite"])


def test_help_is_fast_and_light():
    """`microtvm --help` must not import the heavy parts (numpy, the compiler, project ops)."""
    code = ("import sys, contextlib, io\n"
            "from microtvm_tasks import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: cli.main(['--help'])\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('numpy', 'yaml', 'onnx', 'tflite', 'microtvm_tasks.project',\n"
            "         'microtvm_tasks.compiler', 'microtvm_tasks.platforms', 'importlib.metadata')\n"
            "         if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_create_project_over_an_existing_project_needs_force_and_keeps_a_backup(ws, capsys):
    """Nothing lost: a second create-project into the same directory refuses without -f; with
    -f the old project (its build and remembered options) is moved to a backup directory."""
    _need_project()
    args = ["create-project", "p", "sine.tar", "template", "-d", "tiny_template", "-o", "board=tiny1"]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, "build", "p")[0] == 0
    before = (ws / "p" / ".tvmc.json").read_text()
    code, _, err = run(capsys, *args[:-1], "board=tiny2")
    assert code == 2 and "already holds a project (built)" in err and "give -f" in err
    assert (ws / "p" / ".tvmc.json").read_text() == before
    code, out, err = run(capsys, *args[:-1], "board=tiny2", "-f")
    assert code == 0
    backups = sorted(ws.glob("p.backup-*"))
    assert len(backups) == 1 and (backups[0] / ".tvmc.json").read_text() == before
    assert "kept the old project at" in out + err
