"""A tiny but real Project API template and a workspace of fake projects, for the task tests.

The template is a genuine `microtvm_api_server.py` (it uses our server helper and is driven
by our client over pipes); its build concatenates the project's sources into
`build/firmware.bin` instead of running a compiler, so a whole doit run over several
projects takes a second or two. Every server start appends a line to $FAKE_SERVER_LOG,
which is how the tests count Project API server launches. Knobs (environment variables)
make a stage crash or sleep, to test interrupted stages and device locks.

Also tests that the fake behaves (so the other tests' counts mean something).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"

FAKE_SERVER = textwrap.dedent('''\
    """Fake platform for microtvm-tasks tests: real Project API, no compiler."""
    import os
    import pathlib
    import shutil
    import sys
    import time

    from microtvm_tasks.project_api import server

    HERE = pathlib.Path(__file__).resolve().parent
    if os.environ.get("FAKE_SERVER_LOG"):
        with open(os.environ["FAKE_SERVER_LOG"], "a") as f:
            f.write(f"start {HERE.name}\\n")


    def _event(what):
        if os.environ.get("FAKE_EVENT_LOG"):
            with open(os.environ["FAKE_EVENT_LOG"], "a") as f:
                f.write(f"{time.time():.6f} {what} {HERE.name}\\n")


    OPTIONS = [
        server.ProjectOption("board", optional=["generate_project"], type="str", help="board"),
        server.ProjectOption("gen_flag", optional=["generate_project"], type="str", default="g0",
                             help="a generate-time option"),
        server.ProjectOption("build_flag", optional=["build"], type="str", default="b0",
                             help="a build-time option"),
        server.ProjectOption("flash_flag", optional=["flash"], type="str", default="f0",
                             help="a flash-time option"),
        server.ProjectOption("level", optional=["generate_project"], type="int", default=1,
                             help="an int option"),
    ]


    class Handler(server.ProjectAPIHandler):
        def server_info_query(self, tvm_version):
            is_template = not (HERE / "model.tar").exists()
            return server.ServerInfo(
                platform_name="fake", is_template=is_template,
                model_library_format_path=None if is_template else str(HERE / "model.tar"),
                project_options=OPTIONS)

        def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
            project_dir = pathlib.Path(project_dir)
            project_dir.mkdir()
            shutil.copy2(__file__, project_dir / "microtvm_api_server.py")
            shutil.copy2(model_library_format_path, project_dir / "model.tar")
            (project_dir / "src").mkdir()
            data = (HERE / "data.txt").read_text() if (HERE / "data.txt").exists() else ""
            (project_dir / "src" / "model.c").write_text(
                f"/* gen_flag={options.get('gen_flag')} level={options.get('level')} */\\n" + data)
            _event("generate-start")
            if os.environ.get("FAKE_GENERATE_SLEEP"):
                time.sleep(float(os.environ["FAKE_GENERATE_SLEEP"]))
            if os.environ.get("FAKE_GENERATE_CRASH"):
                os._exit(3)
            (project_dir / "src" / "main.c").write_text("int main(void) { return 0; }\\n")

        def build(self, options):
            print(f"building {HERE.name} with build_flag={options.get('build_flag')}", flush=True)
            out = HERE / "build"
            out.mkdir(exist_ok=True)
            (out / "partial.o").write_text("half")
            _event("build-start")
            if os.environ.get("FAKE_BUILD_SLEEP"):
                time.sleep(float(os.environ["FAKE_BUILD_SLEEP"]))
            if os.environ.get("FAKE_BUILD_CRASH"):
                print("fake compiler: error: something broke", flush=True)
                os._exit(4)
            if os.environ.get("FAKE_BUILD_FAIL"):
                print("fake compiler: error: undefined reference to `oops'", flush=True)
                raise RuntimeError("build failed")
            if os.environ.get("FAKE_BUILD_SIZES"):
                print("fake compiler: warning: sizes reported", file=sys.stderr, flush=True)
                (out / "sizes.json").write_text('{"text": 123, "bss": 45}')
            srcs = sorted(p for p in (HERE / "src").rglob("*.c"))
            blob = "".join(p.read_text() for p in srcs) + f"build_flag={options.get('build_flag')}"
            (out / "firmware.bin").write_text(blob)

        def flash(self, options):
            _event("flash-start")
            if os.environ.get("FAKE_FLASH_SLEEP"):
                time.sleep(float(os.environ["FAKE_FLASH_SLEEP"]))
            (HERE / "flashed.txt").write_text(f"flash_flag={options.get('flash_flag')}")
            _event("flash-end")

        def open_transport(self, options):
            raise server.ServerError("the fake platform has no device")

        def close_transport(self):
            pass

        def read_transport(self, n, timeout_sec):
            raise server.TransportClosedError()

        def write_transport(self, data, timeout_sec):
            raise server.TransportClosedError()


    if __name__ == "__main__":
        server.main(Handler())
''')

DODO = (
    "from microtvm_tasks.tasks import workspace_tasks\n\n"
    'globals().update(workspace_tasks("projects.yaml"))\n'
)

PROJECTS_YAML = textwrap.dedent('''\
    models:
      m1: {path: m1.tar, compiler: mlf}
      m2: {path: m2.tar, compiler: mlf}
    projects:
      pa1: {model: m1, template: ../tpl_a}
      pa2: {model: m2, template: ../tpl_a}
      pb1: {model: m1, template: ../tpl_b}
''')


def write_fake_template(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "microtvm_api_server.py").write_text(FAKE_SERVER)
    (path / "data.txt").write_text("/* template data v1 */\n")
    return path


_MLF_CACHE: dict[str, bytes] = {}


def mlf_bytes(which: str) -> bytes:
    """A real MLF archive of the demo sine model ('int8' or 'float'), compiled once per session."""
    if which not in _MLF_CACHE:
        from microtvm_tasks.compiler import compile_model

        src = {"int8": MODELS / "sine.tflite", "float": MODELS / "sine_float.tflite"}[which]
        out = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"mt-test-{os.getpid()}-{which}.tar"
        compile_model(src, out, module_name="sine")
        _MLF_CACHE[which] = out.read_bytes()
        out.unlink()
    return _MLF_CACHE[which]


class Workspace:
    """A projects.yaml workspace in a temp dir, with helpers to run doit and count what ran."""

    def __init__(self, root: Path, yaml_text: str = PROJECTS_YAML) -> None:
        self.root = root
        self.ws = root / "ws"
        self.ws.mkdir(parents=True)
        write_fake_template(root / "tpl_a")
        write_fake_template(root / "tpl_b")
        (self.ws / "m1.tar").write_bytes(mlf_bytes("int8"))
        (self.ws / "m2.tar").write_bytes(mlf_bytes("float"))
        (self.ws / "dodo.py").write_text(DODO)
        (self.ws / "projects.yaml").write_text(yaml_text)
        self.server_log = root / "servers.log"
        self.event_log = root / "events.log"
        self.last: subprocess.CompletedProcess[str] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["FAKE_SERVER_LOG"] = str(self.server_log)
        env["FAKE_EVENT_LOG"] = str(self.event_log)
        env.update(extra)
        return env

    def doit(self, *args: str, check: bool = True, timeout: float = 120, **env: str
             ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "doit", *args], cwd=self.ws, env=self.env(**env),
            capture_output=True, text=True, timeout=timeout,
        )
        self.last = proc
        if check and proc.returncode != 0:
            raise AssertionError(
                f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def executed(self, *args: str, check: bool = True, **env: str) -> list[str]:
        """Run doit and return the names of the tasks it executed (in order)."""
        return executed_tasks(self.doit(*args, check=check, **env).stdout)

    def server_starts(self) -> int:
        return len(self.server_log.read_text().splitlines()) if self.server_log.exists() else 0

    def project(self, name: str) -> Path:
        return self.ws / "build" / "projects" / name

    def set_yaml(self, text: str) -> None:
        (self.ws / "projects.yaml").write_text(text)


def executed_tasks(stdout: str) -> list[str]:
    return re.findall(r"^\.  (\S+)  \(\d+/\d+\)$", stdout, re.M)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


# --------------------------------------------------------------- the fake itself


@pytest.fixture
def fake_ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def test_fake_template_answers_server_info_and_logs_each_start(tmp_path: Path) -> None:
    from microtvm_tasks.project_api.client import instantiate_from_dir

    tpl = write_fake_template(tmp_path / "tpl")
    log = tmp_path / "servers.log"
    os.environ["FAKE_SERVER_LOG"] = str(log)
    try:
        with instantiate_from_dir(tpl) as client:
            info = client.server_info_query("0.18.0")
    finally:
        del os.environ["FAKE_SERVER_LOG"]
    assert info["platform_name"] == "fake"
    assert {o["name"] for o in info["project_options"]} >= {"gen_flag", "build_flag", "flash_flag"}
    assert log.read_text().splitlines() == ["start tpl"]
