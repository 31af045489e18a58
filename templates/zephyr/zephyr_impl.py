"""The bulk of the `zephyr` template's Project API server: generate, build, flash, transport.

Runs in the namespace of ``microtvm_api_server.py`` (see ``server.LazyImplementation``):
the script's names (`Handler`, `BOARD_NAMES`, ...) are used here as they are.
"""

from __future__ import annotations

import atexit
import collections
import functools
import json
import logging
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from microtvm_tasks.errors import (
    BoardNotFoundError,
    BuildFailedError,
    OptionError,
    TemplateError,
    ToolNotFoundError,
)
from microtvm_tasks.project_api import server
from microtvm_tasks.template_support import boards as board_data
from microtvm_tasks.template_support import generate as gen
from microtvm_tasks.template_support.processes import kill_group, parent_death_preexec, run_logged
from microtvm_tasks.template_support.processes import tail_lines as _tail
from microtvm_tasks.template_support.serial_ports import find_board_port
from microtvm_tasks.template_support.serial_transport import SerialTransport, TransportHandlerMixin

if TYPE_CHECKING:  # defined by microtvm_api_server.py, in whose namespace this file runs
    from microtvm_api_server import (
        DEFAULT_MAIN_STACK_SIZE,
        IMPL_FILE,
        PROJECT_TYPES,
        WEST_CMD,
        ZEPHYR_BASE,
        Handler,
    )

_LOG = logging.getLogger(__name__)

API_SERVER_DIR = pathlib.Path(__file__).resolve().parent
BOARDS_PATH = API_SERVER_DIR / "boards.json"
#: The boards' data, checked against the boards schema (template_support/boards.schema.json).
BOARD_PROPERTIES: dict[str, dict[str, Any]] = board_data.load_boards(BOARDS_PATH)["boards"]
MODEL_LIBRARY_FORMAT_RELPATH = pathlib.Path(server.PROJECT_MLF_FILENAME)
BUILD_DIR = API_SERVER_DIR / "build"

BUILD_TIMEOUT_SEC = 1800
FLASH_TIMEOUT_SEC = 300
QEMU_START_TIMEOUT_SEC = 300  # `west build -t run` may relink first
HARDWARE_MODEL_V2_VERSION = (3, 7)  # Zephyr 3.7 renamed boards (e.g. nrf5340dk/nrf5340/cpuapp)

SETUP_HINT = (
    "set up Zephyr as in https://docs.zephyrproject.org/latest/develop/getting_started/ "
    "(pip install west; west init ~/zephyrproject; cd ~/zephyrproject && west update; "
    "install the Zephyr SDK), then export ZEPHYR_BASE=~/zephyrproject/zephyr or pass "
    "zephyr_base=..., and west_cmd=... if west is not on PATH"
)


# --------------------------------------------------------------------------- helpers


def _board(name: str | None) -> dict[str, Any]:
    return gen.board_properties(BOARD_PROPERTIES, name, "zephyr")


def zephyr_version(zephyr_base: str | os.PathLike[str] | None) -> tuple[int, int] | None:
    """(major, minor) from <zephyr_base>/VERSION, or None when unknown."""
    if not zephyr_base:
        return None
    try:
        text = (pathlib.Path(zephyr_base) / "VERSION").read_text()
    except OSError:
        return None
    major = re.search(r"VERSION_MAJOR\s*=\s*(\d+)", text)
    minor = re.search(r"VERSION_MINOR\s*=\s*(\d+)", text)
    if not (major and minor):
        return None
    return int(major.group(1)), int(minor.group(1))


def board_target(board: str, version: tuple[int, int] | None) -> str:
    """The name `west build -b` wants: Zephyr >= 3.7 uses hardware model v2 names."""
    props = _board(board)
    if version is not None and version >= HARDWARE_MODEL_V2_VERSION:
        return props.get("board_v2", props["board"])
    return props["board"]


#: The options recorded at generate time, and an option from a call falling back on them.
_read_project_config = functools.partial(gen.read_project_config, API_SERVER_DIR)
_option = functools.partial(gen.recorded_option, API_SERVER_DIR)
#: A tool run with its output in a log, stopped (BuildFailedError) on timeout.
_run_logged = functools.partial(run_logged, error=BuildFailedError, prefix="zephyr: ")


def resolve_tools(options: dict[str, Any]) -> tuple[list[str], pathlib.Path]:
    """(west argv prefix, ZEPHYR_BASE) or one ToolNotFoundError naming everything missing."""
    problems = []
    west_cmd = _option(options, "west_cmd") or WEST_CMD
    west_argv: list[str] = []
    if not west_cmd:
        problems.append("west is not installed (pip install west) and west_cmd is not set")
    else:
        west_argv = shlex.split(west_cmd)
        exe = west_argv[0]
        if shutil.which(exe) is None:
            problems.append(f"west_cmd={west_cmd!r}: {exe!r} is not an executable")
        elif len(west_argv) >= 3 and west_argv[1:3] == ["-m", "west"]:
            probe = subprocess.run([exe, "-c", "import west"], capture_output=True, timeout=60)
            if probe.returncode != 0:
                problems.append(f"west_cmd={west_cmd!r}: that Python has no west module (pip install west)")
    base = _option(options, "zephyr_base") or ZEPHYR_BASE
    zephyr_base = pathlib.Path(base) if base else None
    if zephyr_base is None:
        problems.append("no Zephyr tree: ZEPHYR_BASE is not set and zephyr_base is not given")
    elif not (zephyr_base / "cmake").is_dir() or not (zephyr_base / "VERSION").is_file():
        problems.append(f"zephyr_base={zephyr_base} is not a zephyr repository (no VERSION and cmake/)")
    if problems:
        raise ToolNotFoundError("zephyr: cannot build: " + "; ".join(problems) + ". To fix: " + SETUP_HINT)
    assert zephyr_base is not None
    return west_argv, zephyr_base


def _env_with_base(zephyr_base: pathlib.Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["ZEPHYR_BASE"] = str(zephyr_base)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- serial ports


def find_serial_port(board: str, serial_number: str | None) -> str:
    """The board's serial device: the one whose USB serial number is `serial_number`, else the
    single board with one of its USB VID:PIDs (boards.json). A probe with several virtual COM
    ports (J-Link OB) is one board: boards.json names which port is the UART."""
    props = _board(board)
    return find_board_port(board, props["usb_ids"], serial_number, error=BoardNotFoundError,
                           prefix="zephyr: ", uart_vcom_by_pid=props.get("uart_vcom_by_pid"))


def flash_serial_args(runner: str | None, serial_number: str | None) -> list[str]:
    """The `west flash` arguments that select the probe with `serial_number` for `runner`."""
    if not serial_number:
        return []
    if runner == "openocd":
        return ["--cmd-pre-init", f"adapter serial {serial_number}"]
    if runner == "stm32cubeprogrammer":
        return [f"--conn-modifiers=sn={serial_number}"]
    if runner in ("jlink", "nrfjprog", "nrfutil", "pyocd", "linkserver"):
        return ["--dev-id", serial_number]
    raise OptionError(
        f"zephyr: serial_number is not supported with flash runner {runner!r}; unplug the other boards"
    )


# --------------------------------------------------------------------------- transports


#: QEMU's announcement of a pty chardev. The label is the chardev id ("con"), or with QEMU 7
#: and Zephyr's `mux=on` console the id of the pty under the mux ("con-base").
PTY_RE = re.compile(r"char device redirected to (/dev/pts/\d+) \(label ([\w.-]+)\)")


class OutputWatcher:
    """Drains a process's output into a log file (so it never blocks on a full pipe) and
    reports the pseudo-terminal QEMU announces for its UART."""

    def __init__(self, proc: subprocess.Popen, log_path: pathlib.Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.pty: tuple[str, str] | None = None
        self._found = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(line)
                m = PTY_RE.search(line)
                if m and self.pty is None:
                    self.pty = (m.group(1), m.group(2))
                    self._found.set()
        self._found.set()

    def wait_for_pty(self, timeout: float) -> tuple[str, str] | None:
        self._found.wait(timeout)
        return self.pty


def stop_stale_qemu(build_dir: pathlib.Path, grace: float = 5.0) -> bool:
    """Stop a QEMU still running this project's image from an earlier server, with the
    cmake/ninja above it; True if there was one.

    A server killed outright (SIGKILL, e.g. by a client's timeout) cannot close its
    transport, and only west gets the parent-death signal: QEMU, in west's process group,
    keeps running and keeps build/qemu.pid locked, so the next `west build -t run` fails
    with "cannot create PID file: Cannot lock pid file". Only a process whose command
    line names this build's zephyr.elf is touched.
    """
    try:
        pid = int((build_dir / "qemu.pid").read_text().split()[0])
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False
    if str(build_dir / "zephyr" / "zephyr.elf").encode() not in cmdline.split(b"\0"):
        return False
    try:
        pgid = os.getpgid(pid)
        if pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGTERM)
        else:  # never signal our own group
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:  # gone, or a zombie (exited, its lock released) waiting for its parent
            if pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except (OSError, IndexError):
            break
        time.sleep(0.05)
    return True


def start_qemu(
    west_argv: list[str],
    zephyr_base: pathlib.Path,
    baud: int,
    gdbserver_port: int | None,
    log_path: pathlib.Path,
) -> SerialTransport:
    """`west build -t run` with the UART on a pty (QEMU_PTY, set in CMakeLists.txt), then
    open the pty. The run target's process group is killed on close; west dies with us."""
    extra_env = {}
    argv = [*west_argv, "build", "-d", str(BUILD_DIR), "-t", "run"]
    # Zephyr's qemu.cmake reads QEMU_EXTRA_FLAGS when CMake runs, into the run target: a
    # re-run puts -gdb in, and takes it out again on the next run without gdbserver_port.
    gdb_mark = BUILD_DIR / "qemu_gdbserver_port"
    if gdbserver_port:
        extra_env["QEMU_EXTRA_FLAGS"] = f"-gdb tcp::{int(gdbserver_port)}"
        argv.append("--cmake")
        gdb_mark.write_text(f"{int(gdbserver_port)}\n")
    elif gdb_mark.exists():
        argv.append("--cmake")
        gdb_mark.unlink()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    if stop_stale_qemu(BUILD_DIR):
        _LOG.warning("zephyr: stopped a QEMU left running by an earlier server")
    proc = subprocess.Popen(
        argv,
        cwd=API_SERVER_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env_with_base(zephyr_base, extra_env),
        start_new_session=True,
        preexec_fn=parent_death_preexec(),  # noqa: PLW1509 - west dies with this server
    )
    watcher = OutputWatcher(proc, log_path)
    found = watcher.wait_for_pty(QEMU_START_TIMEOUT_SEC)
    if found is None:
        kill_group(proc)
        tail = "\n".join(watcher.lines)
        detail = f"west build -t run did not start QEMU with a pty within {QEMU_START_TIMEOUT_SEC} s: {tail}"
        _LOG.warning("%s", detail)
        raise server.TransportClosedError(data={"detail": detail})
    device, label = found
    # Zephyr's qemu.cmake multiplexes the console chardev (id "con") with the monitor:
    # 0x01 is the mux's escape character.
    try:
        return SerialTransport(device, baud, proc=proc, escape_ctrl_a=label.startswith("con"))
    except Exception:
        kill_group(proc)
        raise


# --------------------------------------------------------------------------- handler


class ZephyrHandler(TransportHandlerMixin, Handler):
    """The Project API for Zephyr (see the script's docstring); the script's `Handler`
    answers server_info_query and hands every other call to this."""

    def __init__(self) -> None:
        super().__init__()
        self._transport: SerialTransport | None = None
        atexit.register(self.close_transport)

    # ---- generate_project
    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        options = dict(options or {})
        _board(options.get("board"))
        if options.get("project_type") not in PROJECT_TYPES:
            raise OptionError(
                f"zephyr: project_type must be one of {', '.join(PROJECT_TYPES)}, "
                f"got {options.get('project_type')!r}"
            )
        stack = options.get("config_main_stack_size")
        if stack is not None and int(stack) < 512:
            raise OptionError(f"zephyr: config_main_stack_size={stack} is too small (at least 512 bytes)")
        mlf = pathlib.Path(model_library_format_path)
        if not mlf.is_file():
            raise TemplateError(f"zephyr: model library format archive {mlf} not found")
        project_dir = pathlib.Path(project_dir).resolve()
        gen.generate_atomically(
            project_dir, "zephyr", lambda out: self._generate_into(out, project_dir.name, mlf, options)
        )

    def _generate_into(
        self, out: pathlib.Path, name: str, mlf: pathlib.Path, options: dict[str, Any]
    ) -> None:
        from microtvm_tasks.runtime import glue

        board = options["board"]
        props = _board(board)
        project_type = options["project_type"]
        src = out / "src"
        src.mkdir(parents=True)
        os.chmod(out, 0o755)
        version = zephyr_version(options.get("zephyr_base") or ZEPHYR_BASE)

        gen.copy_server(API_SERVER_DIR, out, IMPL_FILE, BOARDS_PATH.name)
        shutil.copy2(mlf, out / MODEL_LIBRARY_FORMAT_RELPATH)
        recorded = {
            k: options.get(k)
            for k in (
                "board",
                "project_type",
                "verbose",
                "warning_as_error",
                "compile_definitions",
                "config_main_stack_size",
                "west_cmd",
                "zephyr_base",
            )
        }
        gen.write_project_config(out, recorded)

        for fname in ("main.c", "platform_zephyr.c"):
            shutil.copy2(API_SERVER_DIR / "firmware" / fname, src / fname)
        for path in glue.runtime_sources():
            shutil.copy2(path, src / pathlib.Path(path).name)
        with gen.extracted_model(mlf, "zephyr") as (mlf_dir, sources):
            model_dir = src / "model"
            model_dir.mkdir()
            for path in sources:
                shutil.copy2(path, model_dir / path.name)
            glue.write_model_glue(mlf_dir, src)

        if options.get("extra_files_tar"):
            gen.unpack_extra_files(pathlib.Path(options["extra_files_tar"]), out)

        (out / "CMakeLists.txt").write_text(
            self._cmakelists(name, board, props, project_type, options, version)
        )
        (out / "prj.conf").write_text(self._prj_conf(board, props, project_type, options, version))

    @staticmethod
    def _cmakelists(
        name: str,
        board: str,
        props: dict[str, Any],
        project_type: str,
        options: dict[str, Any],
        version: tuple[int, int] | None,
    ) -> str:
        defs = [f"MT_MAX_PAYLOAD={int(props.get('max_payload', 1024))}", f"MT_PROJECT_{project_type.upper()}"]
        # CMake wants NAME[=VALUE]: target_compile_definitions adds the -D itself.
        extra = gen.compile_definitions(options.get("compile_definitions"))
        defs += [d[2:] if d.startswith("-D") else d for d in extra]
        project = re.sub(r"[^A-Za-z0-9_]", "_", name) or "microtvm_app"
        lines = [
            f"# Generated by microtvm-tasks for the Zephyr board {board} (project_type {project_type}).",
            f"# Build: west build -b {board_target(board, version)} -d build .",
            "cmake_minimum_required(VERSION 3.20.0)",
            "",
        ]
        if props["emulator"]:
            lines += [
                "# `west build -t run` puts the emulated UART on a pseudo-terminal, which the",
                "# Project API transport opens (delete these lines to use the QEMU console instead).",
                "if(NOT DEFINED QEMU_PTY)",
                "  set(QEMU_PTY 1)",
                "endif()",
                "",
            ]
        hint = options.get("zephyr_base")
        hints = f"{hint} $ENV{{ZEPHYR_BASE}}" if hint else "$ENV{ZEPHYR_BASE}"
        lines += [
            f"find_package(Zephyr REQUIRED HINTS {hints})",
            f"project({project})",
            "",
            "file(GLOB MT_APP_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/src/*.c "
            "${CMAKE_CURRENT_SOURCE_DIR}/src/model/*.c)",
            "target_sources(app PRIVATE ${MT_APP_SOURCES})",
            "target_include_directories(app PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src "
            "${CMAKE_CURRENT_SOURCE_DIR}/src/model ${CMAKE_CURRENT_SOURCE_DIR}/include)",
            "target_compile_definitions(app PRIVATE " + " ".join(_cmake_quote(d) for d in defs) + ")",
        ]
        if options.get("warning_as_error"):
            lines.append("target_compile_options(app PRIVATE -Werror)")
        if options.get("verbose"):
            lines.append("set(CMAKE_VERBOSE_MAKEFILE ON)")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _prj_conf(
        board: str,
        props: dict[str, Any],
        project_type: str,
        options: dict[str, Any],
        version: tuple[int, int] | None,
    ) -> str:
        stack = int(options.get("config_main_stack_size") or DEFAULT_MAIN_STACK_SIZE)
        lines = [
            f"# Generated by microtvm-tasks for the Zephyr board {board}.",
            "",
            "# The run protocol owns the console UART: nothing else may write to it.",
            "CONFIG_CONSOLE=n",
            "CONFIG_UART_CONSOLE=n",
            "CONFIG_PRINTK=n",
            "CONFIG_LOG=n",
            "CONFIG_BOOT_BANNER=n",
            "",
            "# The UART, received by interrupt into a ring buffer (platform_zephyr.c).",
            "CONFIG_SERIAL=y",
            "CONFIG_UART_INTERRUPT_DRIVEN=y",
            "CONFIG_RING_BUFFER=y",
            "",
            "# mt_platform_abort() reboots the board.",
            "CONFIG_REBOOT=y",
            "",
            "# Stack for main(), which runs the model (the arena itself is static).",
            f"CONFIG_MAIN_STACK_SIZE={stack}",
            "",
            "# The generated kernels are integer or float C with <math.h>: a full C library, -O2.",
        ]
        if version is not None and version < (3, 4):
            lines.append("CONFIG_NEWLIB_LIBC=y")
        else:
            lines.append("CONFIG_REQUIRES_FULL_LIBC=y")
        lines.append("CONFIG_SPEED_OPTIMIZATIONS=y")
        if props.get("fpu"):
            lines += ["", "# The board has an FPU: float32 models use it.", "CONFIG_FPU=y"]
        if project_type == "aot_standalone_demo":
            lines += ["", "# The demo prints its result as text on the same UART (mt_platform_write)."]
        return "\n".join(lines) + "\n"

    # ---- build
    def build(self, options):
        options = dict(options or {})
        board = _option(options, "board")
        _board(board)
        west_argv, zephyr_base = resolve_tools(options)
        target = board_target(board, zephyr_version(zephyr_base))
        argv = [*west_argv]
        if _option(options, "verbose"):
            argv.append("-v")
        argv += ["build", "-b", target, "-d", str(BUILD_DIR), "-p", "auto", str(API_SERVER_DIR)]
        log = API_SERVER_DIR / "build.log"
        rc = _run_logged(
            argv,
            cwd=API_SERVER_DIR,
            log=log,
            timeout=BUILD_TIMEOUT_SEC,
            what="west build",
            env=_env_with_base(zephyr_base),
        )
        elf = BUILD_DIR / "zephyr" / "zephyr.elf"
        if rc != 0 or not elf.is_file():
            raise BuildFailedError(
                f"zephyr: west build failed (exit {rc}) for {target}; log: {log}\n{_tail(log)}"
            )
        (BUILD_DIR / "image.json").write_text(
            json.dumps(
                {"board": board, "target": target, "elf": str(elf.relative_to(API_SERVER_DIR))},
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )

    def _built_board(self) -> str:
        path = BUILD_DIR / "image.json"
        if not path.is_file():
            raise TemplateError(f"zephyr: {API_SERVER_DIR} is not built yet; run build first")
        return json.loads(path.read_text())["board"]

    # ---- flash
    def flash(self, options):
        options = dict(options or {})
        board = self._built_board()
        props = _board(board)
        if props["emulator"]:
            return  # QEMU boots the image in open_transport
        west_argv, zephyr_base = resolve_tools(options)
        runner = props.get("flash_runner")
        argv = [*west_argv, "flash", "-d", str(BUILD_DIR)]
        if runner:
            argv += ["-r", runner]
        argv += flash_serial_args(runner, _option(options, "serial_number"))
        log = API_SERVER_DIR / "flash.log"
        rc = _run_logged(
            argv,
            cwd=API_SERVER_DIR,
            log=log,
            timeout=FLASH_TIMEOUT_SEC,
            what="west flash",
            env=_env_with_base(zephyr_base),
        )
        if rc != 0:
            raise BuildFailedError(f"zephyr: west flash failed (exit {rc}); log: {log}\n{_tail(log)}")

    # ---- transport
    def open_transport(self, options):
        options = dict(options or {})
        if self._transport is not None:
            self.close_transport()
        board = self._built_board()
        props = _board(board)
        baud = int(props.get("baud", 115200))
        if props["emulator"]:
            west_argv, zephyr_base = resolve_tools(options)
            self._transport = start_qemu(
                west_argv, zephyr_base, baud, options.get("gdbserver_port"), BUILD_DIR / "qemu.log"
            )
            return server.TransportTimeouts(
                session_start_retry_timeout_sec=2.0,
                session_start_timeout_sec=30.0,
                session_established_timeout_sec=30.0,
            )
        port = find_serial_port(board, _option(options, "serial_number"))
        self._transport = SerialTransport(port, baud)
        return server.TransportTimeouts(
            session_start_retry_timeout_sec=2.0,
            session_start_timeout_sec=10.0,
            session_established_timeout_sec=30.0,
        )


def _cmake_quote(item: str) -> str:
    return f'"{item}"' if re.search(r'[\s;"()]', item) else item
