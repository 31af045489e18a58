"""Fixtures and paths shared by the test files.

Several files need the reference models of ../shared/models (beside the repository, or
wherever $MICROTVM_SHARED_MODELS points on a machine laid out differently, e.g. CI); they
take the one `SHARED_MODELS` defined here, so moving the models means changing one place.
Module-level names are importable (``from conftest import SHARED_MODELS``) because
parametrize lists are built at collection time, before any fixture exists.

The template tests share how a template server is started and driven: `template_client`
(one server of the test module's ``TEMPLATE``), `generate_project`, `load_server_module`,
and the sine model compiled once (`sine_mlf`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import microtvm_tasks.templates as templates_pkg
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shared reference models: $MICROTVM_SHARED_MODELS, else ../shared/models.
SHARED_MODELS = Path(os.environ.get("MICROTVM_SHARED_MODELS", REPO_ROOT.parent / "shared" / "models"))


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The shared reference models directory (see `SHARED_MODELS`)."""
    return SHARED_MODELS


# ---- built-in templates ---------------------------------------------------------------------

#: Where the built-in templates are installed (the package microtvm_tasks.templates).
TEMPLATES_DIR = Path(templates_pkg.__file__).resolve().parent
#: The repository's small int8 sine model: the templates' end-to-end tests run it.
SINE_TFLITE = REPO_ROOT / "models" / "sine.tflite"


def load_server_module(template: str) -> ModuleType:
    """A built-in template's server script loaded as a module, under its own test name.

    The script holds only the options; its implementation runs in the module's namespace
    on first use of one of its names, so tests reach e.g. ``module.board_config`` and can
    monkeypatch what the implementation sees.
    """
    spec = importlib.util.spec_from_file_location(
        f"{template}_server_under_test", TEMPLATES_DIR / template / "microtvm_api_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_project(client, mlf: Path, project: Path, options: dict) -> Path:
    """generate_project through a Project API client, as microtvm-tasks calls it; returns
    `project`."""
    client.generate_project(
        model_library_format_path=str(mlf), standalone_crt_dir=None, project_dir=str(project), options=options
    )
    return project


@pytest.fixture(scope="module")
def template_client(request):
    """One server of the test module's ``TEMPLATE`` for the whole module (a real Project API
    server process; each generate_project is one call to it)."""
    from microtvm_tasks.project_api.client import instantiate_from_dir

    with instantiate_from_dir(request.module.TEMPLATE, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def sine_mlf(tmp_path_factory) -> Path:
    """`SINE_TFLITE` compiled by the built-in compiler once per session (tests only read it)."""
    from microtvm_tasks.compiler import compile_model

    return Path(compile_model(SINE_TFLITE, tmp_path_factory.mktemp("sine") / "sine.tar", module_name="sine"))


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A plain tar of regular files (e.g. for the extra_files_tar option); returns `path`."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@contextlib.contextmanager
def device_session(project: Path, *, reply_timeout: float = 120.0, hello_timeout: float = 20.0) -> Iterator:
    """Build and flash a generated project, open its transport and yield (session, model
    description) after the HELLO handshake; the transport is closed and the server reaped
    after the block, whatever happens in it."""
    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.session import ProjectAPITransport, Session

    with instantiate_from_dir(project, timeout=300) as client:
        client.build({})
        client.flash({})
        client.open_transport({})
        try:
            session = Session(ProjectAPITransport(client), timeout=reply_timeout)
            session.hello(timeout=hello_timeout)
            yield session, session.describe()
        finally:
            client.close_transport()
