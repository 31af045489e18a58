"""The bulk of the ``qemu_arm`` template's Project API server (boards, firmware, QEMU).

Runs in the namespace of ``microtvm_api_server.py`` (which describes the template), loaded
by ``server.LazyImplementation`` (microtvm_tasks.project_api.server) on the first call other than
server_info_query; names the script defines
(``Handler``, ``PROJECT_TYPES``, ...) are used here as they are.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microtvm_tasks.project_api import server
from microtvm_tasks.template_support import boards as board_data
from microtvm_tasks.template_support import fit
from microtvm_tasks.template_support.emulator import launch_on_loopback
from microtvm_tasks.template_support.generate import compile_definitions as compile_definitions_flags
from microtvm_tasks.template_support.generate import (
    copy_server,
    standalone_inputs,
    unpack_extra_files,
    write_project_config,
)
from microtvm_tasks.template_support.processes import kill_group
from microtvm_tasks.template_support.serial_transport import SerialTransport
from microtvm_tasks.template_support.tools import find_tool

if TYPE_CHECKING:  # defined by microtvm_api_server.py, in whose namespace this file runs
    from microtvm_api_server import (
        BOARDS_FILE,
        DEFAULT_OPT_LEVEL,
        IMPL_FILE,
        OPT_LEVELS,
        PROJECT_CONFIG,
        PROJECT_TYPES,
        Handler,
    )

TEMPLATE_DIR = Path(__file__).resolve().parent
IMAGE = Path("build") / "image.elf"
SIZES_FILE = Path("build") / "sizes.json"
FLASH_FILE = Path("build") / "flash.json"
QEMU_LOG = Path("build") / "qemu.log"
LINKER_SCRIPT = "qemu_arm.ld"
BOARD_MK = "board.mk"

#: firmware sources of the template itself, copied into the project's src/.
FIRMWARE_SOURCES = (
    "cmsdk_uart.c",
    "cmsdk_uart.h",
    "platform_qemu_arm.c",
    "qemu_arm_board.h",
    "startup.c",
)
MAIN_SOURCE = "main.c"

STACK_BYTES = 16 * 1024

#: printed by the firmware (src/qemu_arm_board.h) when it faults or main() returns.
FAULT_MARKER = b"*** MT_QEMU_ARM_FAULT "
EXIT_MARKER = b"*** MT_QEMU_ARM_EXIT code=0x"

BUILD_TIMEOUT_SEC = 900
#: QEMU prints this (to its log) once the machine is built and it waits for our connection.
QEMU_WAITING_TEXT = "waiting for connection"
#: how long to wait for that text; QEMU builds that do not print it are connected to after it.
QEMU_READY_WAIT_SEC = 5.0
QEMU_CONNECT_TIMEOUT_SEC = 10.0
TAIL_BYTES = 4096



class QemuArmError(Exception):
    """A user-facing failure of this template (bad board, missing tool, model too big...)."""


# ---------------------------------------------------------------------------------------
# Boards (data) and the files generated from them
# ---------------------------------------------------------------------------------------


def load_boards(template_dir: Path = TEMPLATE_DIR) -> dict[str, Any]:
    """boards.json of `template_dir`, checked against the boards schema (template_support.boards)."""
    path = Path(template_dir) / BOARDS_FILE
    raw = board_data.load_boards(path, QemuArmError)
    if not isinstance(raw.get("qemu"), dict) or "icount_shift" not in raw["qemu"]:
        raise QemuArmError(f"{path}: missing the qemu settings (qemu.icount_shift)")
    for name, board in raw["boards"].items():
        if not (board.get("emulator") or {}).get("machine") or "memory_map" not in board:
            raise QemuArmError(f"{path}: board {name!r}: a qemu_arm board needs emulator.machine "
                               "and memory_map")
    return {"qemu": raw["qemu"], "boards": raw["boards"]}


def region(board: dict[str, Any], name: str) -> tuple[int, int, str]:
    """(base, size, what) of the board's FLASH or RAM (the linker script's region names)."""
    key = "flash" if name == "FLASH" else "ram"
    where = board["memory_map"][key]
    return int(where["base"]), int(board[f"{key}_bytes"]), str(where.get("what", name))


def board_config(board_name: str, template_dir: Path = TEMPLATE_DIR) -> tuple[dict[str, Any], dict[str, Any]]:
    """(board, qemu settings) for `board_name`; a clear error lists the known boards."""
    data = load_boards(template_dir)
    if board_name not in data["boards"]:
        known = ", ".join(sorted(data["boards"]))
        raise QemuArmError(f"unknown board {board_name!r} for the qemu_arm template; choose one of: {known}")
    return data["boards"][board_name], data["qemu"]


def linker_script(board_name: str, board: dict[str, Any], stack_bytes: int = STACK_BYTES) -> str:
    """The GNU ld script for `board`: code and constants in flash, data/bss/stack in RAM.

    Region names FLASH and RAM are what `build` looks for in ld's overflow messages.
    """
    flash_base, flash_size, flash_what = region(board, "FLASH")
    ram_base, ram_size, ram_what = region(board, "RAM")
    return f"""/* Generated by the qemu_arm template from boards.json for {board_name}. Do not edit. */
MEMORY
{{
  FLASH (rx)  : ORIGIN = 0x{flash_base:08x}, LENGTH = 0x{flash_size:08x}  /* {flash_what} */
  RAM   (rwx) : ORIGIN = 0x{ram_base:08x}, LENGTH = 0x{ram_size:08x}  /* {ram_what} */
}}

ENTRY(mt_reset_handler)

__stack_size__ = 0x{stack_bytes:x};

SECTIONS
{{
  .text :
  {{
    KEEP(*(.vectors))
    *(.text .text.*)
    *(.rodata .rodata.*)
    . = ALIGN(4);
  }} > FLASH

  .ARM.extab : {{ *(.ARM.extab* .gnu.linkonce.armextab.*) }} > FLASH
  .ARM.exidx :
  {{
    __exidx_start = .;
    *(.ARM.exidx* .gnu.linkonce.armexidx.*)
    __exidx_end = .;
  }} > FLASH

  .data : ALIGN(4)
  {{
    __data_start__ = .;
    *(.data .data.*)
    . = ALIGN(4);
    __data_end__ = .;
  }} > RAM AT > FLASH
  __data_load__ = LOADADDR(.data);

  .bss (NOLOAD) : ALIGN(4)
  {{
    __bss_start__ = .;
    *(.bss .bss.*)
    *(COMMON)
    . = ALIGN(4);
    __bss_end__ = .;
  }} > RAM
  end = __bss_end__;
  __end__ = __bss_end__;

  /* Reserve the stack so that a model whose buffers leave no room for it fails to link. */
  .stack (NOLOAD) : ALIGN(8)
  {{
    . = . + __stack_size__;
  }} > RAM
  __stack_top__ = ORIGIN(RAM) + LENGTH(RAM);
}}
"""


def board_mk(
    board_name: str,
    board: dict[str, Any],
    qemu: dict[str, Any],
    *,
    project_type: str = "host_driven",
    opt_level: str = DEFAULT_OPT_LEVEL,
    compile_definitions: str | None = None,
    warning_as_error: bool = False,
) -> str:
    """The make fragment holding everything board- or option-specific (the Makefile is fixed)."""
    defs = [
        f'-DMT_BOARD_NAME=\\"{board_name}\\"',
        f"-DMT_UART0_BASE=0x{board['memory_map']['uart0']['base']:08x}u",
        f"-DMT_TIMER0_BASE=0x{board['memory_map']['timer0']['base']:08x}u",
        f"-DMT_SYSCLK_HZ={int(board['sysclk_hz'])}u",
        f"-DMT_ICOUNT_SHIFT={int(qemu['icount_shift'])}",
    ]
    if project_type == "aot_standalone_demo":
        defs.append("-DMT_PROJECT_TYPE_STANDALONE=1")
    extra = compile_definitions_flags(compile_definitions)
    return "\n".join(
        [
            f"# Generated by the qemu_arm template for board {board_name}. Do not edit: regenerate.",
            f"CPU_FLAGS := {' '.join(board['cflags'])}",
            f"BOARD_DEFS := {' '.join(defs)}",
            f"EXTRA_DEFS := {' '.join(shlex.quote(e) for e in extra)}",
            f"OPT ?= -{opt_level}",
            f"WERROR := {'-Werror' if warning_as_error else ''}",
            "",
        ]
    )


def write_firmware_tree(
    dest: Path,
    board_name: str,
    *,
    template_dir: Path = TEMPLATE_DIR,
    project_type: str = "host_driven",
    opt_level: str = DEFAULT_OPT_LEVEL,
    compile_definitions: str | None = None,
    warning_as_error: bool = False,
    with_main: bool = True,
) -> None:
    """Write the board-specific firmware skeleton into `dest`: sources, ld script, make files.

    Used by generate_project, and by tests that build a firmware of their own (e.g. a UART
    echo) from the same startup code, drivers and linker script.
    """
    board, qemu = board_config(board_name, template_dir)
    src = dest / "src"
    src.mkdir(parents=True, exist_ok=True)
    names = list(FIRMWARE_SOURCES) + ([MAIN_SOURCE] if with_main else [])
    for name in names:
        shutil.copy2(template_dir / "src" / name, src / name)
    shutil.copy2(template_dir / "Makefile", dest / "Makefile")
    (dest / LINKER_SCRIPT).write_text(linker_script(board_name, board))
    (dest / BOARD_MK).write_text(
        board_mk(
            board_name,
            board,
            qemu,
            project_type=project_type,
            opt_level=opt_level,
            compile_definitions=compile_definitions,
            warning_as_error=warning_as_error,
        )
    )


# ---------------------------------------------------------------------------------------
# Build: make, sizes, fit check
# ---------------------------------------------------------------------------------------

def _tool(name: str) -> str:
    missing = (
        f"{name} not found on PATH; install Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi "
        "(or qemu-system-arm for QEMU) and retry"
    )
    return find_tool(name, missing, QemuArmError)


def _region_text(name: str, board_name: str, board: dict[str, Any]) -> str:
    base, _, what = region(board, name)
    return f"{what} at 0x{base:08x} on {board_name}"


def check_model_fits(board_name: str, board: dict[str, Any], constants: int, workspace: int, io: int) -> None:
    """Fail early, before compiling, when the MLF's own figures exceed the board's memories."""
    over = {memory: avail for memory, _, avail in
            fit.over_limits(board, flash=constants, ram=workspace + io + STACK_BYTES)}
    if "flash" in over:
        flash = over["flash"]
        raise QemuArmError(
            f"model does not fit board {board_name}: its weights need {constants} bytes of flash, "
            f"the board has {flash} ({_region_text('FLASH', board_name, board)}); "
            "choose a smaller model or a board with more flash"
        )
    if "ram" in over:
        ram = over["ram"]
        raise QemuArmError(
            f"model does not fit board {board_name}: its arena ({workspace} bytes), "
            f"inputs/outputs ({io} bytes) "
            f"and the {STACK_BYTES}-byte stack need {workspace + io + STACK_BYTES} bytes of RAM, "
            f"the board has {ram} ({_region_text('RAM', board_name, board)}); "
            "choose a smaller model or a board with more RAM"
        )


def explain_link_overflow(output: str, board_name: str, board: dict[str, Any]) -> str | None:
    """Turn ld's 'region overflowed' lines into 'needs N bytes, the board has M'."""
    messages = [
        f"the firmware needs {needed} bytes of {name.lower()}, "
        f"the board has {available} ({_region_text(name, board_name, board)})"
        for _, name, needed, available in fit.link_overflows(output, board)
    ]
    if not messages:
        return None
    return f"model does not fit board {board_name}: " + "; ".join(messages)


def section_sizes(elf: Path) -> dict[str, int]:
    """text/data/bss of the ELF as arm-none-eabi-size reports them (Berkeley format)."""
    size_tool = _tool("arm-none-eabi-size")
    out = subprocess.run(
        [size_tool, "-B", str(elf)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    fields = out.strip().splitlines()[-1].split()
    return {"text": int(fields[0]), "data": int(fields[1]), "bss": int(fields[2])}


# ---------------------------------------------------------------------------------------
# QEMU process management
# ---------------------------------------------------------------------------------------


def transport_closed(detail: str) -> server.TransportClosedError:
    """TransportClosedError as the Project API carries it: the class name travels as the
    message (so the client raises the same class), the explanation in ``data``."""
    return server.TransportClosedError(data={"detail": detail})


def io_timeout(detail: str) -> server.IoTimeoutError:
    """IoTimeoutError with its explanation in ``data`` (see transport_closed)."""
    return server.IoTimeoutError(data={"detail": detail})


class QemuSession:
    """One QEMU run of a firmware image, its UART reached over a loopback TCP socket.

    The listening socket is created here (port 0: the kernel picks a free port) and handed
    to QEMU as ``-chardev socket,fd=N,server=on,wait=on``, so QEMU cannot lose a race for the
    port, and it waits for our connection before starting the CPU: nothing the firmware
    prints at boot is lost. The UART is template_support's SerialTransport (``socket://``);
    this class adds QEMU's lifetime and the firmware's fault and exit reports.
    """

    def __init__(
        self,
        image: Path,
        machine: str,
        icount_shift: int,
        log_path: Path,
        *,
        qemu_binary: str = "qemu-system-arm",
        connect_timeout: float = QEMU_CONNECT_TIMEOUT_SEC,
    ) -> None:
        self.image = Path(image)
        self.machine = machine
        self.icount_shift = icount_shift
        self.log_path = Path(log_path)
        self.qemu_binary = qemu_binary
        self.connect_timeout = connect_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.serial: SerialTransport | None = None
        self.tail: collections.deque[int] = collections.deque(maxlen=TAIL_BYTES)
        self.exit_code: int | None = None
        self.fault: str | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def argv(self, fd: int) -> list[str]:
        """The QEMU command line (UART0 on the listening socket `fd`)."""
        return [
            self.qemu_binary,
            "-M",
            self.machine,
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
            "-icount",
            f"shift={self.icount_shift}",
            "-chardev",
            f"socket,id=uart0,fd={fd},server=on,wait=on",
            "-serial",
            "chardev:uart0",
            "-kernel",
            str(self.image),
        ]

    def start(self) -> None:
        """Boot QEMU and connect to its UART; on any failure QEMU is killed and we raise."""
        qemu = shutil.which(self.qemu_binary)
        if qemu is None:
            raise QemuArmError(f"{self.qemu_binary} not found on PATH; install Debian's qemu-system-arm")
        if not self.image.is_file():
            raise QemuArmError(f"{self.image}: no firmware image; run build (and flash) first")
        self.proc, port = launch_on_loopback(self.argv, self.log_path)
        _LIVE.add(self)
        deadline = time.monotonic() + self.connect_timeout
        last_exc: Exception | None = None
        # The kernel completes our connect() on QEMU's listening socket even before QEMU
        # accepts it, so first wait until QEMU says it is waiting for us (its machine is
        # built) or has exited: a bad machine or image then fails here, with QEMU's words.
        ready_deadline = time.monotonic() + min(self.connect_timeout, QEMU_READY_WAIT_SEC)
        while time.monotonic() < ready_deadline and self.proc.poll() is None:
            if QEMU_WAITING_TEXT in self.qemu_log_tail(4000):
                break
            time.sleep(0.01)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.serial = SerialTransport(f"socket://127.0.0.1:{port}")
                return
            except OSError as exc:  # pragma: no cover - QEMU normally accepts at once
                last_exc = exc
                time.sleep(0.05)
        exited = self.proc.poll() is not None
        detail = self.last_output()
        self.stop()
        if exited:
            raise QemuArmError(f"QEMU (-M {self.machine}, {self.image}) stopped while starting: {detail}")
        raise QemuArmError(
            f"could not connect to QEMU's UART on 127.0.0.1:{port} within {self.connect_timeout} s "
            f"({last_exc}); {detail}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Close the UART and kill QEMU's whole process group; idempotent."""
        if self.serial is not None:
            try:
                self.serial.close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; QEMU still dies
                pass
            self.serial = None
        if self.proc is not None:
            kill_group(self.proc, grace=10, term_first=False)
        _LIVE.discard(self)

    # -- output ------------------------------------------------------------------------

    def uart_tail(self) -> str:
        return bytes(self.tail).decode("latin-1")

    def qemu_log_tail(self, limit: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def last_output(self) -> str:
        """What QEMU and the firmware said last, for error messages."""
        parts = []
        if self.proc is not None and self.proc.poll() is not None:
            parts.append(f"QEMU exited with status {self.proc.returncode}")
        log = self.qemu_log_tail().strip()
        if log:
            parts.append(f"QEMU log: {log}")
        uart = self.uart_tail()
        if uart:
            parts.append(f"last UART output: {uart[-800:]!r}")
        return "; ".join(parts) or "(no output)"

    # -- transport ---------------------------------------------------------------------

    def _closed(self, why: str) -> server.TransportClosedError:
        detail = self.last_output()
        self.stop()
        return transport_closed(f"{why}; {detail}")

    def _check_markers(self) -> None:
        """Stop on the firmware's fault or exit report (it sleeps forever after it)."""
        tail = bytes(self.tail)
        at = tail.rfind(FAULT_MARKER)
        if at >= 0:
            line = tail[at:]
            if b"***\r\n" not in line[len(FAULT_MARKER) :]:
                self._read_more_until(b"***\r\n", 2.0)
                line = bytes(self.tail)[bytes(self.tail).rfind(FAULT_MARKER) :]
            self.fault = line.decode("latin-1").strip()
            raise self._closed(f"the firmware faulted: {self.fault}")

    def _raw_read(self, n: int, timeout_sec: float | None) -> bytes:
        """Between 1 and n bytes (what has arrived), or b"" when none came in time."""
        assert self.serial is not None
        try:
            return self.serial.read(n, timeout_sec)
        except server.IoTimeoutError:
            return b""

    def _read_more_until(self, terminator: bytes, timeout: float) -> bytes:
        """Read (into the tail too) until `terminator` arrives or `timeout` passes."""
        got = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.serial is not None:
            try:
                chunk = self._raw_read(256, max(0.0, end - time.monotonic()))
            except Exception:  # noqa: BLE001 - best effort while reporting a fault or exit
                break
            got += chunk
            self.tail.extend(chunk)
            if terminator in bytes(self.tail)[-256:]:
                break
        return got

    def read(self, n: int, timeout_sec: float | None) -> bytes:
        """Between 1 and n bytes, or IoTimeoutError / TransportClosedError."""
        if self.exit_code is not None:
            raise self._closed(f"the firmware stopped (main returned {self.exit_code})")
        if self.serial is None:
            raise transport_closed("the transport is not open")
        try:
            data = self._raw_read(n, timeout_sec)
        except server.TransportClosedError as exc:
            raise self._closed(f"QEMU's UART closed ({_detail(exc)})") from None
        if not data:
            if not self.alive():
                raise self._closed("QEMU is gone")
            raise io_timeout(f"no byte from the firmware within {timeout_sec} s; {self.last_output()}")
        self.tail.extend(data)
        self._check_markers()
        at = bytes(self.tail).rfind(EXIT_MARKER)
        if at >= 0:
            # main() returned: the rest of the report line follows at once. Hand it to the
            # caller with this read, then report the transport closed on the next one.
            if b"***\r\n" not in bytes(self.tail)[at:]:
                data += self._read_more_until(b"***\r\n", 2.0)
            match = re.search(
                rb"code=0x([0-9a-f]{8})", bytes(self.tail)[bytes(self.tail).rfind(EXIT_MARKER) :]
            )
            self.exit_code = int(match.group(1), 16) if match else -1
        return data

    def write(self, data: bytes, timeout_sec: float | None) -> None:
        if self.serial is None:
            raise transport_closed("the transport is not open")
        if not self.alive():
            raise self._closed("QEMU is gone")
        try:
            self.serial.write(data, timeout_sec)
        except server.IoTimeoutError:
            raise io_timeout(f"could not write {len(data)} bytes within {timeout_sec} s") from None
        except server.TransportClosedError as exc:
            raise self._closed(f"QEMU's UART closed ({_detail(exc)})") from None


def _detail(exc: BaseException) -> str:
    """The explanation a TransportClosedError carries in its data (else its text)."""
    data = getattr(exc, "data", None)
    return str(data.get("detail")) if isinstance(data, dict) and data.get("detail") else str(exc)


#: sessions still running, killed at interpreter exit (belt and braces beside PDEATHSIG).
_LIVE: set[QemuSession] = set()


@atexit.register
def _stop_all() -> None:
    for qemu in list(_LIVE):
        qemu.stop()


#: (step, modulus, offset, divisor) of the demo's fixed input (see `standalone_inputs`).
STANDALONE_PATTERN = (29, 97, 7, 48.0)


def standalone_input(mlf_dir: Path, npz_path: str | None) -> dict[str, bytes]:
    """The input baked into an aot_standalone_demo firmware, as raw bytes per input name."""
    return standalone_inputs(mlf_dir, npz_path, pattern=STANDALONE_PATTERN, error=QemuArmError)


def extract_extra_files(tar_path: Path, project_dir: Path) -> None:
    """Unpack the extra_files_tar option into the project (see `unpack_extra_files`)."""
    unpack_extra_files(tar_path, project_dir, error=QemuArmError)


def _opt(options: dict, name: str, default: Any) -> Any:
    value = options.get(name)
    return default if value is None else value


class QemuArmHandler(Handler):
    """The qemu_arm template; in a generated project it reads the project's own files.

    The script's `Handler` answers server_info_query and hands every other call to this.
    """

    def __init__(self) -> None:
        super().__init__()
        self._qemu: QemuSession | None = None
        self.project_dir = TEMPLATE_DIR

    def _config(self) -> dict[str, Any]:
        path = self.project_dir / PROJECT_CONFIG
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise QemuArmError(
                f"{path}: not a generated qemu_arm project ({exc}); run generate_project"
            ) from None

    def _board(self, options: dict) -> tuple[str, dict[str, Any], dict[str, Any]]:
        config = self._config()
        name = _opt(options, "board", config["board"])
        if name != config["board"]:
            raise QemuArmError(
                f"board {name!r} differs from the board this project was generated for "
                f"({config['board']!r}); "
                "generate a new project for another board"
            )
        board, qemu = board_config(name, self.project_dir)
        return name, board, qemu

    # -- generate ------------------------------------------------------------------------

    def generate_project(
        self, model_library_format_path: Path, standalone_crt_dir: Path, project_dir: Path, options: dict
    ) -> None:
        from microtvm_tasks import mlf
        from microtvm_tasks.runtime import glue

        project_dir = Path(project_dir)
        board_name = options.get("board")
        if not board_name:
            raise QemuArmError("option board is required: " + ", ".join(sorted(load_boards()["boards"])))
        project_type = _opt(options, "project_type", "host_driven")
        if project_type not in PROJECT_TYPES:
            raise QemuArmError(f"project_type {project_type!r} is not one of {', '.join(PROJECT_TYPES)}")
        opt_level = _opt(options, "opt_level", DEFAULT_OPT_LEVEL)
        if opt_level not in OPT_LEVELS:
            raise QemuArmError(f"opt_level {opt_level!r} is not one of {', '.join(OPT_LEVELS)}")
        board, _ = board_config(board_name)

        project_dir.mkdir(parents=True, exist_ok=True)
        copy_server(TEMPLATE_DIR, project_dir, IMPL_FILE, BOARDS_FILE)
        write_firmware_tree(
            project_dir,
            board_name,
            project_type=project_type,
            opt_level=opt_level,
            compile_definitions=options.get("compile_definitions"),
            warning_as_error=bool(options.get("warning_as_error")),
        )
        runtime_dir = project_dir / "runtime"
        runtime_dir.mkdir(exist_ok=True)
        for path in glue.runtime_sources():
            shutil.copy2(path, runtime_dir / path.name)

        mlf_path = Path(model_library_format_path)
        shutil.copy2(mlf_path, project_dir / server.PROJECT_MLF_FILENAME)
        info = mlf.extract_mlf(mlf_path, project_dir / "model", replace=True)
        module = info.module()
        standalone = None
        if project_type == "aot_standalone_demo":
            standalone = standalone_input(project_dir / "model", options.get("standalone_input"))
        glue.write_model_glue(project_dir / "model", project_dir / "src", standalone_input=standalone)

        extra = options.get("extra_files_tar")
        if extra:
            extract_extra_files(Path(extra), project_dir)

        config = {
            "board": board_name,
            "project_type": project_type,
            "opt_level": opt_level,
            "compile_definitions": options.get("compile_definitions"),
            "warning_as_error": bool(options.get("warning_as_error")),
            "model": module.name,
            "constants_size_bytes": module.constants_size_bytes,
            "workspace_size_bytes": module.workspace_size_bytes,
            "io_size_bytes": module.io_size_bytes,
        }
        write_project_config(project_dir, config, PROJECT_CONFIG)

    # -- build ---------------------------------------------------------------------------

    def build(self, options: dict) -> None:
        build_firmware(self.project_dir, options, self._board(options))

    # -- flash ---------------------------------------------------------------------------

    def flash(self, options: dict) -> None:
        name, board, _ = self._board(options)
        image = self.project_dir / IMAGE
        if not image.is_file():
            raise QemuArmError(f"{image}: no firmware image; run build first")
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        machine = board["emulator"]["machine"]
        record = {"image": str(IMAGE), "sha256": digest, "board": name, "machine": machine}
        (self.project_dir / FLASH_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    # -- transport -----------------------------------------------------------------------

    def open_transport(self, options: dict) -> server.TransportTimeouts:
        self.close_transport()
        name, board, qemu = self._board(options)
        image = self.project_dir / IMAGE
        if not image.is_file():
            raise QemuArmError(f"{image}: no firmware image; run build and flash first")
        session = QemuSession(
            image,
            board["emulator"]["machine"],
            int(qemu["icount_shift"]),
            self.project_dir / QEMU_LOG,
            qemu_binary=board["emulator"]["binary"],
        )
        session.start()
        self._qemu = session
        return server.TransportTimeouts(
            session_start_retry_timeout_sec=2.0,
            session_start_timeout_sec=20.0,
            session_established_timeout_sec=120.0,
        )

    def close_transport(self) -> None:
        if self._qemu is not None:
            self._qemu.stop()
            self._qemu = None

    def _session(self) -> QemuSession:
        if self._qemu is None:
            raise transport_closed("the transport is not open; call open_transport first")
        return self._qemu

    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        return self._session().read(n, timeout_sec)

    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        self._session().write(data, timeout_sec)


def build_firmware(
    project_dir: Path, options: dict, board_info: tuple[str, dict[str, Any], dict[str, Any]]
) -> dict:
    """make the image, record its sizes in build/sizes.json, and check it fits the board."""
    name, board, _ = board_info
    config_path = project_dir / PROJECT_CONFIG
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if "workspace_size_bytes" in config:
        # The MLF's own figures: fail before compiling anything when they cannot fit.
        check_model_fits(
            name,
            board,
            int(config.get("constants_size_bytes") or 0),
            int(config.get("workspace_size_bytes") or 0),
            int(config.get("io_size_bytes") or 0),
        )
    _tool("arm-none-eabi-gcc")
    make = _tool("make")
    argv = [make, "-C", str(project_dir), f"-j{min(2, os.cpu_count() or 1)}"]
    opt_level = options.get("opt_level") or config.get("opt_level")
    if opt_level is not None:
        if opt_level not in OPT_LEVELS:
            raise QemuArmError(f"opt_level {opt_level!r} is not one of {', '.join(OPT_LEVELS)}")
        options_mk = project_dir / "build" / "options.mk"
        text = f"# Written by build: options given to the build stage.\nOPT := -{opt_level}\n"
        if not options_mk.is_file() or options_mk.read_text() != text:
            options_mk.parent.mkdir(parents=True, exist_ok=True)
            options_mk.write_text(text)
    if options.get("verbose"):
        argv.append("V=1")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        raise QemuArmError(f"make in {project_dir} took more than {BUILD_TIMEOUT_SEC} s; gave up") from None
    output = proc.stdout + proc.stderr
    if options.get("verbose"):
        sys.stderr.write(output)
    if proc.returncode != 0:
        overflow = explain_link_overflow(output, name, board)
        if overflow:
            raise QemuArmError(overflow)
        raise QemuArmError(f"build failed (make exit {proc.returncode}):\n{output[-4000:]}")
    image = project_dir / IMAGE
    sizes = section_sizes(image)
    flash_used = sizes["text"] + sizes["data"]
    ram_used = sizes["data"] + sizes["bss"]
    record = {
        "board": name,
        "image": str(IMAGE),
        "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
        **sizes,
        "flash_bytes": flash_used,
        "ram_bytes": ram_used,
        "stack_bytes": STACK_BYTES,
        "flash_size": int(board["flash_bytes"]),
        "ram_size": int(board["ram_bytes"]),
    }
    (project_dir / SIZES_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
