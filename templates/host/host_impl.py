"""The bulk of the `host` template's Project API server: generate, build and run the program.

Runs in the namespace of ``microtvm_api_server.py`` (see ``server.LazyImplementation``):
the script's names (``Handler``, ``PROJECT_TYPES``, ...) are used here as they are.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from microtvm_tasks.project_api import server
from microtvm_tasks.template_support import generate as gen
from microtvm_tasks.template_support.tools import find_tool, run_streamed

if TYPE_CHECKING:  # defined by microtvm_api_server.py, in whose namespace this file runs
    from microtvm_api_server import IMPL_FILE, MODEL_DIR, MODEL_TAR, PROJECT_TYPES, Handler

API_SERVER_DIR = pathlib.Path(__file__).resolve().parent
BINARY = pathlib.Path("build") / "main"
BUILD_TIMEOUT_SEC = 900
HOST_MAX_PAYLOAD = 4096


def _log(msg: str) -> None:
    print(f"[host] {msg}", file=sys.stderr, flush=True)


#: (step, modulus, offset, divisor) of the demo's fixed input (see `standalone_inputs`).
STANDALONE_PATTERN = (37, 101, 11, 50.0)


class HostHandler(Handler):
    """The host platform's Project API handler (the script's `Handler` delegates to it)."""

    def __init__(self) -> None:
        super().__init__()
        self._proc: subprocess.Popen | None = None

    # -- generate ------------------------------------------------------------------------

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        from microtvm_tasks import mlf
        from microtvm_tasks.runtime import glue

        project_type = options.get("project_type") or "host_driven"
        if project_type not in PROJECT_TYPES:
            raise ValueError(f"project_type={project_type!r}: expected one of {', '.join(PROJECT_TYPES)}")
        mlf_path = pathlib.Path(model_library_format_path)
        project_dir = pathlib.Path(project_dir)
        project_dir.mkdir(parents=True, exist_ok=True)
        src = project_dir / "src"
        src.mkdir(exist_ok=True)

        gen.copy_server(API_SERVER_DIR, project_dir, IMPL_FILE)
        for name in ("main.c", "platform_host.c"):
            shutil.copy2(API_SERVER_DIR / "src" / name, src / name)
        for path in glue.runtime_sources():
            shutil.copy2(path, src / path.name)
        # stand-ins for the two TVM headers that TVM-built archives include
        shutil.copytree(API_SERVER_DIR / "include", project_dir / "include", dirs_exist_ok=True)

        model_dir = project_dir / MODEL_DIR
        if mlf_path.is_dir():  # an already-extracted archive
            shutil.copytree(mlf_path, model_dir, dirs_exist_ok=True)
        else:
            shutil.copy2(mlf_path, project_dir / MODEL_TAR)
            mlf.extract_mlf(mlf_path, model_dir, replace=True)

        standalone = None
        if project_type == "aot_standalone_demo":
            standalone = gen.standalone_inputs(
                model_dir, options.get("standalone_input"), pattern=STANDALONE_PATTERN, error=ValueError
            )
        glue.write_model_glue(model_dir, src, standalone_input=standalone)

        defines = gen.compile_definitions(options.get("compile_definitions"))
        if not any("MT_MAX_PAYLOAD" in d for d in defines):
            # Pipes have no tiny UART buffer: big frames mean fewer round trips per tensor.
            defines.append(f"-DMT_MAX_PAYLOAD={HOST_MAX_PAYLOAD}")
        if project_type == "aot_standalone_demo":
            defines.append("-DMT_STANDALONE=1")
        makefile = (API_SERVER_DIR / "Makefile.template").read_text(encoding="utf-8")
        makefile = (
            makefile.replace("@CC@", "cc")
            .replace("@WERROR@", "-Werror" if options.get("warning_as_error") else "")
            .replace("@DEFINES@", " ".join(defines))
            .replace("@CFLAGS@", "")
        )
        (project_dir / "Makefile").write_text(makefile, encoding="utf-8")
        tar = options.get("extra_files_tar")
        if tar:
            gen.unpack_extra_files(pathlib.Path(tar), project_dir)
        if options.get("verbose"):
            _log(f"generated {project_type} project in {project_dir}")

    # -- build / flash -------------------------------------------------------------------

    def build(self, options):
        find_tool("make", "make not found: install it (Debian/Ubuntu: apt-get install make)", RuntimeError)
        cc = options.get("cc") or "cc"
        missing_cc = f"C compiler {cc!r} not found: install gcc or pass -o cc=<compiler>"
        import shlex

        find_tool(shlex.split(cc)[0], missing_cc, RuntimeError)
        # make -s keeps a quiet build quiet (warnings and errors still show); verbose shows all
        argv = ["make", "-C", str(API_SERVER_DIR), f"CC={cc}"]
        if not options.get("verbose"):
            argv[1:1] = ["-s", "--no-print-directory"]
        if options.get("cflags"):
            argv.append(f"EXTRA_CFLAGS={options['cflags']}")
        if options.get("verbose"):
            _log("$ " + " ".join(argv))
        run_streamed(argv, timeout=BUILD_TIMEOUT_SEC)

    def flash(self, options):
        """Nothing to program: the host "device" is started by open_transport."""

    # -- transport -----------------------------------------------------------------------

    def open_transport(self, options):
        binary = API_SERVER_DIR / BINARY
        if not binary.exists():
            raise RuntimeError(f"{binary} does not exist: build the project first")
        self.close_transport()
        self._proc = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, cwd=str(API_SERVER_DIR)
        )
        os.set_blocking(self._proc.stdout.fileno(), False)
        return server.TransportTimeouts(
            session_start_retry_timeout_sec=2.0,
            session_start_timeout_sec=10.0,
            session_established_timeout_sec=10.0,
        )

    def close_transport(self):
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)

    def _closed(self) -> server.TransportClosedError:
        proc = self._proc
        status = None
        if proc is not None:
            try:
                status = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                status = None
        self.close_transport()
        what = "exited" if status is None or status >= 0 else "was killed by signal"
        return server.TransportClosedError(
            data={"detail": f"the host program {what} {abs(status) if status is not None else ''}".strip()}
        )

    def read_transport(self, n, timeout_sec):
        if self._proc is None:
            raise server.TransportClosedError(data={"detail": "transport not open"})
        try:
            return server.read_with_timeout(self._proc.stdout.fileno(), n, timeout_sec)
        except server.TransportClosedError:
            raise self._closed() from None

    def write_transport(self, data, timeout_sec):
        if self._proc is None:
            raise server.TransportClosedError(data={"detail": "transport not open"})
        try:
            written = server.write_with_timeout(self._proc.stdin.fileno(), data, timeout_sec)
        except server.TransportClosedError:
            raise self._closed() from None
        if written < len(data):
            raise server.IoTimeoutError()
