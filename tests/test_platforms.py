"""Template discovery: built-in names, entry points, directory paths, and the errors."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from microtvm_tasks import platforms
from microtvm_tasks.errors import TemplateError

pytestmark = pytest.mark.timeout(20)

SERVER = "from microtvm_tasks.project_api import server\n"


def make_template(directory: Path, filename: str = "microtvm_api_server.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(SERVER)
    return directory


@pytest.fixture
def fake_builtins(tmp_path, monkeypatch):
    """Point the built-in template root at a temporary package directory."""
    root = tmp_path / "builtin_templates"
    root.mkdir()
    (root / "__init__.py").write_text("")
    make_template(root / "alpha")
    make_template(root / "beta", "launch_microtvm_api_server.sh")
    (root / "not_a_template").mkdir()  # no server: ignored
    make_template(root / "_private")  # underscore: ignored
    monkeypatch.setattr(platforms, "_builtin_root", lambda: root)
    return root


@pytest.fixture
def entry_points(monkeypatch):
    """Replace the installed entry points of our group with a list the test controls."""
    eps: list[EntryPoint] = []
    monkeypatch.setattr(platforms, "_entry_points", lambda: sorted(eps, key=lambda ep: ep.name))
    return eps


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """An importable package 'mt_plugin' with a template as a sub-package and as a path attribute."""
    site = tmp_path / "site"
    package = site / "mt_plugin"
    make_template(package / "board_x")
    (package / "board_x" / "__init__.py").write_text("")
    make_template(package / "data" / "board_y")
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "BOARD_Y = Path(__file__).parent / 'data' / 'board_y'\n"
        "def board_y_dir():\n    return str(BOARD_Y)\n"
        "NOWHERE = '/nonexistent/template'\n"
    )
    (package / "broken.py").write_text("raise ImportError('missing vendor SDK')\n")
    monkeypatch.syspath_prepend(str(site))
    yield package
    for name in [m for m in sys.modules if m.startswith("mt_plugin")]:
        del sys.modules[name]


def test_builtin_names(fake_builtins, entry_points):
    assert platforms.builtin_templates() == {
        "alpha": (fake_builtins / "alpha").resolve(),
        "beta": (fake_builtins / "beta").resolve(),
    }
    assert platforms.find_template("alpha") == (fake_builtins / "alpha").resolve()
    assert platforms.find_template("beta") == (fake_builtins / "beta").resolve()


def test_real_builtin_package_is_found():
    # Whatever templates are installed right now, each one is a template directory.
    found = platforms.builtin_templates()
    for name, path in found.items():
        assert path.name == name and platforms.is_template_dir(path)
        assert platforms.find_template(name) == path
    root = platforms._builtin_root()
    assert root is not None and (root / "__init__.py").is_file()


def test_entry_points_module_and_attr(fake_builtins, entry_points, plugin_package):
    entry_points.extend(
        [
            EntryPoint("board_x", "mt_plugin.board_x", platforms.ENTRY_POINT_GROUP),
            EntryPoint("board_y", "mt_plugin:BOARD_Y", platforms.ENTRY_POINT_GROUP),
            EntryPoint("board_y_fn", "mt_plugin:board_y_dir", platforms.ENTRY_POINT_GROUP),
        ]
    )
    assert platforms.find_template("board_x") == (plugin_package / "board_x").resolve()
    assert platforms.find_template("board_y") == (plugin_package / "data" / "board_y").resolve()
    assert platforms.find_template("board_y_fn") == (plugin_package / "data" / "board_y").resolve()
    assert list(platforms.list_templates()) == ["alpha", "beta", "board_x", "board_y", "board_y_fn"]


def test_entry_points_are_loaded_lazily(fake_builtins, entry_points, plugin_package):
    entry_points.append(EntryPoint("broken", "mt_plugin.broken:X", platforms.ENTRY_POINT_GROUP))
    assert platforms.find_template("alpha").name == "alpha"  # a broken plug-in does not matter here
    assert "mt_plugin.broken" not in sys.modules
    with pytest.raises(
        TemplateError, match="entry point broken .* cannot be loaded: ImportError: missing vendor SDK"
    ):
        platforms.find_template("broken")


def test_broken_and_shadowing_entry_points_are_left_out_of_the_list(
    fake_builtins, entry_points, plugin_package
):
    entry_points.extend(
        [
            EntryPoint("alpha", "mt_plugin.board_x", platforms.ENTRY_POINT_GROUP),
            EntryPoint("broken", "mt_plugin.broken:X", platforms.ENTRY_POINT_GROUP),
            EntryPoint("nowhere", "mt_plugin:NOWHERE", platforms.ENTRY_POINT_GROUP),
            EntryPoint("missing", "mt_plugin_absent.sub", platforms.ENTRY_POINT_GROUP),
        ]
    )
    with pytest.warns(UserWarning) as caught:
        found = platforms.list_templates()
    assert found == platforms.builtin_templates()
    messages = " | ".join(str(w.message) for w in caught)
    assert "'alpha' is a built-in platform" in messages
    assert "missing vendor SDK" in messages
    assert "/nonexistent/template, which holds none of" in messages
    assert "cannot be loaded" in messages or "not installed" in messages
    assert platforms.find_template("alpha") == (fake_builtins / "alpha").resolve()  # built-in wins
    with pytest.raises(TemplateError, match="holds none of"):
        platforms.find_template("nowhere")


def test_directory_paths(tmp_path, fake_builtins, entry_points, monkeypatch):
    shell = make_template(tmp_path / "vendor" / "shell_tpl", "microtvm_api_server.sh")
    assert platforms.find_template(shell) == shell.resolve()
    assert platforms.find_template(str(shell)) == shell.resolve()
    monkeypatch.chdir(tmp_path / "vendor")
    assert platforms.find_template("./shell_tpl") == shell.resolve()
    # A bare word that is no platform name but is a directory here is accepted too.
    assert platforms.find_template("shell_tpl") == shell.resolve()
    # A path that looks like a path is never taken for a name.
    make_template(tmp_path / "vendor" / "alpha")
    assert platforms.find_template("./alpha") == (tmp_path / "vendor" / "alpha").resolve()
    assert platforms.find_template("alpha") == (fake_builtins / "alpha").resolve()


def test_unknown_names_and_non_templates(tmp_path, fake_builtins, entry_points):
    entry_points.append(EntryPoint("gamma", "somewhere.gamma", platforms.ENTRY_POINT_GROUP))
    with pytest.raises(TemplateError) as info:
        platforms.find_template("zephyrr")
    message = str(info.value)
    assert "'zephyrr'" in message and "known platforms: alpha, beta, gamma" in message
    assert "microtvm_api_server.py" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TemplateError, match="is not a Project API template"):
        platforms.find_template(empty)
    with pytest.raises(TemplateError, match="unknown platform or template directory"):
        platforms.find_template(tmp_path / "does-not-exist")


def test_installed_entry_point_group_is_read(fake_builtins):
    # The real importlib.metadata lookup runs (whatever is installed) and returns EntryPoints.
    eps = platforms._entry_points()
    assert all(ep.group == platforms.ENTRY_POINT_GROUP for ep in eps)
