"""Project API across a real process boundary: instantiate_from_dir and misbehaving servers.

The test template below is written only against the API TVM documents for
``tvm.micro.project_api.server`` (ProjectAPIHandler, ServerInfo, ProjectOption with
type=, TransportTimeouts, the error classes, read/write_with_timeout, main), so it
stands for a template written for TVM that must run unchanged under our client.
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from microtvm_tasks.errors import MicrotvmError
from microtvm_tasks.project_api import client, server

pytestmark = pytest.mark.timeout(30)

TVM_STYLE_SERVER = textwrap.dedent(
    '''
    """A template in TVM's style; behaviour steered by options for the tests."""
    import os
    import pathlib
    import shutil
    import sys
    import time

    from microtvm_tasks.project_api import server

    PROJECT_OPTIONS = server.default_project_options(
        project_type={"choices": ("host_driven", "aot_standalone_demo")},
    ) + [
        server.ProjectOption("mode", optional=["build", "flash"], type="str", help="test behaviour"),
    ]


    class Handler(server.ProjectAPIHandler):
        def __init__(self):
            super().__init__()
            self._read_fd = None
            self._write_fd = None

        def server_info_query(self, tvm_version):
            if tvm_version == "0.1.0-too-old":
                raise server.UnsupportedTVMVersionError()
            here = pathlib.Path(__file__).parent
            is_template = not (here / "model.tar").exists()
            return server.ServerInfo(
                platform_name="tvm_style",
                is_template=is_template,
                model_library_format_path=None if is_template else here / "model.tar",
                project_options=PROJECT_OPTIONS,
            )

        def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
            project_dir.mkdir()
            shutil.copy2(__file__, project_dir / pathlib.Path(__file__).name)
            shutil.copy2(model_library_format_path, project_dir / "model.tar")
            (project_dir / "options.txt").write_text(repr(sorted(options.items())))

        def build(self, options):
            mode = options.get("mode")
            print("building in", os.getcwd(), file=sys.stderr, flush=True)
            if mode == "exit":
                print("fatal: the linker script is missing", file=sys.stderr, flush=True)
                os._exit(3)
            if mode == "hang":
                time.sleep(60)
            if mode == "garbage":
                os.write(int(sys.argv[sys.argv.index("--write-fd") + 1]), b"<html>not json</html>\\n")
                time.sleep(60)
            if mode == "fail":
                raise RuntimeError("compiler exited 2")
            pathlib.Path("built.txt").write_text("ok")

        def flash(self, options):
            if options.get("mode") == "closed":
                raise server.TransportClosedError()

        def open_transport(self, options):
            # A loopback "device": what is written comes back.
            self._read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._read_fd, False)
            os.set_blocking(self._write_fd, False)
            return server.TransportTimeouts(
                session_start_retry_timeout_sec=1.0,
                session_start_timeout_sec=10.0,
                session_established_timeout_sec=5.0,
            )

        def close_transport(self):
            for fd in (self._read_fd, self._write_fd):
                if fd is not None:
                    os.close(fd)
            self._read_fd = self._write_fd = None

        def read_transport(self, n, timeout_sec):
            if self._read_fd is None:
                raise server.TransportClosedError()
            return server.read_with_timeout(self._read_fd, n, timeout_sec)

        def write_transport(self, data, timeout_sec):
            if self._write_fd is None:
                raise server.TransportClosedError()
            while data:
                written = server.write_with_timeout(self._write_fd, data, timeout_sec)
                data = data[written:]


    if __name__ == "__main__":
        server.main(Handler())
    '''
)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    directory = tmp_path / "tvm_style"
    directory.mkdir()
    (directory / "microtvm_api_server.py").write_text(TVM_STYLE_SERVER)
    return directory


def test_every_rpc_across_processes(template: Path, tmp_path: Path):
    mlf = tmp_path / "model.tar"
    mlf.write_bytes(b"not really a tar, the template only copies it")
    project = tmp_path / "project"
    with client.instantiate_from_dir(template, timeout=10) as api:
        info = api.server_info_query("0.18.0")
        assert info["protocol_version"] == 1 and info["is_template"] is True
        assert info["model_library_format_path"] is None
        options = {o["name"]: o for o in info["project_options"]}
        assert options["project_type"]["choices"] == ["host_driven", "aot_standalone_demo"]
        assert options["mode"] == {
            "name": "mode",
            "choices": None,
            "default": None,
            "type": "str",
            "required": None,
            "optional": ["build", "flash"],
            "help": "test behaviour",
        }
        api.generate_project(
            model_library_format_path=str(mlf),
            standalone_crt_dir=str(tmp_path),
            project_dir=str(project),
            options={"project_type": "host_driven", "board": "b"},
        )
    assert api.is_shutdown and api.server_process.proc.returncode == 0
    assert (project / "options.txt").read_text() == "[('board', 'b'), ('project_type', 'host_driven')]"

    with client.instantiate_from_dir(project, timeout=10) as api:
        info = api.server_info_query("0.18.0")
        assert info["is_template"] is False
        assert info["model_library_format_path"] == str(project / "model.tar")
        assert api.build({}) is None
        assert (project / "built.txt").read_text() == "ok"  # the server runs in the project directory
        assert api.flash({}) is None
        timeouts = api.open_transport({})["timeouts"]
        assert server.TransportTimeouts(**timeouts).session_start_timeout_sec == 10.0
        with pytest.raises(client.IoTimeoutError):
            api.read_transport(10, 0.05)
        message = bytes(range(256)) * 40
        api.write_transport(message, 5.0)
        received = b""
        while len(received) < len(message):
            received += api.read_transport(len(message) - len(received), 5.0)
        assert received == message
        api.close_transport()
        with pytest.raises(server.TransportClosedError):  # TVM's class still catches ours
            api.read_transport(1, 0.1)
    assert api.server_process.proc.returncode == 0


def test_relative_template_path(template: Path, monkeypatch):
    monkeypatch.chdir(template.parent.parent)
    relative = Path(template.parent.name) / template.name
    with client.instantiate_from_dir(relative, timeout=10) as api:
        assert api.server_info_query("0.18.0")["platform_name"] == "tvm_style"
    assert client.server_command(relative)[1] == str(template / "microtvm_api_server.py")


def test_remote_errors_by_class_across_processes(template: Path):
    with client.instantiate_from_dir(template, timeout=10) as api:
        with pytest.raises(client.UnsupportedTVMVersionError) as info:
            api.server_info_query("0.1.0-too-old")
        assert isinstance(info.value, MicrotvmError)
        with pytest.raises(client.TransportClosedError):
            api.flash({"mode": "closed"})
        with pytest.raises(client.ServerError) as info:
            api.build({"mode": "fail"})
        text = str(info.value)
        assert text.splitlines()[0] == "calling method build: RuntimeError: compiler exited 2"
        assert "microtvm_api_server.py" in text  # the remote traceback names the template
        assert "building in" in text  # and the stderr the server wrote during the call
        assert api.server_info_query("0.18.0")["platform_name"] == "tvm_style"  # still usable


def test_server_exit_mid_call_reports_status_and_stderr(template: Path):
    with client.instantiate_from_dir(template, timeout=10) as api:
        with pytest.raises(client.ConnectionShutdownError) as info:
            api.build({"mode": "exit"})
    text = str(info.value)
    assert "build" in text and "exited with status 3" in text
    assert "fatal: the linker script is missing" in text
    assert isinstance(info.value, MicrotvmError)


def test_server_silent_past_timeout_is_killed(template: Path):
    start = time.monotonic()
    with client.instantiate_from_dir(template, timeout=10) as api:
        with pytest.raises(client.ServerTimeoutError) as info:
            api.build({"mode": "hang"}, timeout=0.5)
        proc = api.server_process.proc
    assert time.monotonic() - start < 5
    assert proc.poll() is not None
    text = str(info.value)
    assert "did not answer build within 0.5 s" in text and "killed by signal SIGKILL" in text


def test_garbage_reply_stops_server(template: Path):
    with client.instantiate_from_dir(template, timeout=10) as api:
        with pytest.raises(client.MalformedReplyError) as info:
            api.build({"mode": "garbage"})
        assert api.server_process.proc.poll() is not None
    text = str(info.value)
    assert "<html>not json</html>" in text and "build" in text and "The server" in text


def test_context_manager_reaps_on_exception(template: Path):
    with pytest.raises(KeyError), client.instantiate_from_dir(template, timeout=10) as api:
        api.server_info_query("0.18.0")
        raise KeyError("user code failed")
    assert api.server_process.proc.poll() == 0


def test_server_that_ignores_eof_is_terminated(tmp_path: Path):
    directory = tmp_path / "stubborn"
    directory.mkdir()
    (directory / "microtvm_api_server.py").write_text(
        "import signal, sys, time\n"
        "from microtvm_tasks.project_api import server\n"
        "class H(server.ProjectAPIHandler):\n"
        "    def __getattr__(self, name):\n"
        "        raise AttributeError(name)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
        "time.sleep(60)\n"
    )
    api = client.instantiate_from_dir(directory, timeout=2)
    api.server_process.grace_sec = 0.2
    start = time.monotonic()
    api.shutdown()
    assert time.monotonic() - start < 4
    assert api.server_process.proc.returncode == -9  # SIGTERM ignored, so SIGKILL


def test_launch_script_and_shell_server(template: Path, tmp_path: Path):
    # launch_microtvm_api_server.sh wins and receives the .py path first (as in TVM).
    log = tmp_path / "launch.log"
    launch = template / "launch_microtvm_api_server.sh"
    launch.write_text(f'#!/bin/sh\necho "$@" > "{log}"\nexec "{sys.executable}" "$@"\n')
    launch.chmod(launch.stat().st_mode | stat.S_IXUSR)
    with client.instantiate_from_dir(template, timeout=10) as api:
        assert api.server_info_query("x")["platform_name"] == "tvm_style"
    args = log.read_text().split()
    assert args[0] == str(template / "microtvm_api_server.py") and args[1] == "--read-fd"

    # A directory with only microtvm_api_server.sh (not even executable) runs it with sh.
    shell_only = tmp_path / "shell_only"
    shell_only.mkdir()
    (shell_only / "impl.py").write_text(TVM_STYLE_SERVER)
    (shell_only / "microtvm_api_server.sh").write_text(f'exec "{sys.executable}" impl.py "$@"\n')
    assert client.server_command(shell_only) == ["/bin/sh", str(shell_only / "microtvm_api_server.sh")]
    with client.instantiate_from_dir(shell_only, timeout=10) as api:
        assert api.server_info_query("x")["platform_name"] == "tvm_style"


def test_missing_server_and_unstartable_server(tmp_path: Path):
    with pytest.raises(client.ProjectAPIServerNotFoundError, match="microtvm_api_server.py") as info:
        client.instantiate_from_dir(tmp_path)
    assert isinstance(info.value, MicrotvmError)
    broken = tmp_path / "broken"
    broken.mkdir()
    script = broken / "microtvm_api_server.sh"
    script.write_text("not a valid executable header")
    script.chmod(0o755)
    with pytest.raises(client.ProjectAPIServerNotFoundError, match="cannot start") as info:
        client.instantiate_from_dir(broken)
    assert isinstance(info.value, MicrotvmError)

    dying = tmp_path / "dying"
    dying.mkdir()
    (dying / "microtvm_api_server.sh").write_text("echo 'python3: not found' >&2\nexit 127\n")
    with pytest.raises(client.ConnectionShutdownError) as info:
        with client.instantiate_from_dir(dying, timeout=5) as api:
            api.server_info_query("x")
    text = str(info.value)
    assert "server_info_query" in text and "exited with status 127" in text and "python3: not found" in text


def test_vendored_server_module(template: Path):
    # A template may carry its own copy of server.py (standard library only) and import it
    # without this package: run it with -S -E so the installed package cannot be found.
    (template / "server.py").write_bytes(Path(server.__file__).read_bytes())
    script = template / "microtvm_api_server.py"
    script.write_text(
        script.read_text().replace("from microtvm_tasks.project_api import server", "import server")
    )
    launch = template / "launch_microtvm_api_server.sh"
    launch.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S -E "$@"\n')
    launch.chmod(0o755)
    with client.instantiate_from_dir(template, timeout=10) as api:
        assert api.server_info_query("0.18.0")["protocol_version"] == 1
        with pytest.raises(client.TransportClosedError):
            api.flash({"mode": "closed"})


def test_debug_forwards_stderr_and_passes_flag(template: Path, capfd):
    with client.instantiate_from_dir(template, debug=True, timeout=10) as api:
        api.build({})
        assert "--debug" in api.server_process.argv
    err = capfd.readouterr().err
    assert "building in" in err and "request <-" in err  # the server logged the request itself


def test_server_module_imports_only_the_standard_library():
    import subprocess

    code = (
        "import sys; before = set(sys.modules)\n"
        "import microtvm_tasks.project_api.server\n"
        "new = sorted(m for m in set(sys.modules) - before if not m.startswith('microtvm_tasks'))\n"
        "print(' '.join(new))\n"
    )
    # -S: no site hooks, which on some machines preload half the standard library.
    package_root = str(Path(server.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": package_root}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=True, env=env
    )
    loaded = set(out.stdout.split())
    heavy = {"logging", "argparse", "traceback", "pathlib", "typing", "base64", "subprocess", "threading"}
    assert not loaded & heavy, loaded
    assert not any(m.split(".")[0] in {"numpy", "yaml", "doit"} for m in loaded)
