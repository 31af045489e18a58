"""The bulk of the `arduino` template's Project API server: generate, build, flash, transport.

Runs in the namespace of ``microtvm_api_server.py`` (see ``server.LazyImplementation``):
the script's names (`Handler`, `BOARD_NAMES`, ...) are used here as they are.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

from microtvm_tasks.errors import (
    BoardNotFoundError,
    BuildFailedError,
    MicrotvmError,
    OptionError,
    TemplateError,
    ToolNotFoundError,
)
from microtvm_tasks.project_api import server
from microtvm_tasks.template_support import boards as board_data
from microtvm_tasks.template_support import fit
from microtvm_tasks.template_support import generate as gen
from microtvm_tasks.template_support.emulator import launch_on_loopback
from microtvm_tasks.template_support.processes import kill_group, run_logged
from microtvm_tasks.template_support.processes import tail_lines as _tail
from microtvm_tasks.template_support.serial_ports import find_board_port
from microtvm_tasks.template_support.serial_transport import SerialTransport, TransportHandlerMixin
from microtvm_tasks.template_support.tools import find_tool

if TYPE_CHECKING:  # defined by microtvm_api_server.py, in whose namespace this file runs
    from microtvm_api_server import (
        ARDUINO_CLI_CMD,
        IMPL_FILE,
        PROJECT_TYPES,
        Handler,
    )

_LOG = logging.getLogger(__name__)

API_SERVER_DIR = pathlib.Path(__file__).resolve().parent
BOARDS_PATH = API_SERVER_DIR / "boards.json"
#: The boards' data, checked against the boards schema (template_support/boards.schema.json).
BOARD_PROPERTIES: dict[str, dict[str, Any]] = board_data.load_boards(BOARDS_PATH)["boards"]
MODEL_LIBRARY_FORMAT_RELPATH = pathlib.Path(server.PROJECT_MLF_FILENAME)
BUILD_DIR = API_SERVER_DIR / "build"

# Debian's arduino-mk layout (overridable with the usual ARDUINO_DIR / ARDMK_DIR variables).
DEFAULT_ARDUINO_DIR = "/usr/share/arduino"
#: The boards Debian's arduino-mk builds (those with an arduino_mk entry).
AVR_BOARDS = [name for name, props in BOARD_PROPERTIES.items() if "arduino_mk" in props]
AVR_TOOLS_HINT = (
    "install arduino-cli (https://arduino.github.io/arduino-cli/) and the board's core, or, for "
    f"the AVR boards ({', '.join(AVR_BOARDS)}) on Debian/Ubuntu: "
    "apt-get install gcc-avr avr-libc arduino-core-avr arduino-mk"
)
QEMU_HINT = "apt-get install qemu-system-misc (it provides qemu-system-avr)"

BUILD_TIMEOUT_SEC = 900
FLASH_TIMEOUT_SEC = 120


class FirmwareTooBigError(MicrotvmError):
    """The firmware does not fit the board's flash or RAM; the message carries both numbers."""


# --------------------------------------------------------------------------- helpers


def _board(name: str | None) -> dict[str, Any]:
    return gen.board_properties(BOARD_PROPERTIES, name, "arduino")


def fqbn(board: str) -> str:
    """The board's fully qualified board name for arduino-cli (package:architecture:board[:opts])."""
    props = _board(board)
    base = f"{props['package']}:{props['architecture']}:{props['board']}"
    if props.get("board_options"):
        base += ":" + props["board_options"]
    return base


def is_avr(board: str) -> bool:
    """True for boards Debian's arduino-core-avr can build (those with an arduino_mk entry)."""
    return "arduino_mk" in _board(board)


#: The options recorded at generate time, and an option from a call falling back on them.
_read_project_config = functools.partial(gen.read_project_config, API_SERVER_DIR)
_option = functools.partial(gen.recorded_option, API_SERVER_DIR)
#: A build tool run with its output in a log, stopped (BuildFailedError) on timeout.
_run_logged = functools.partial(run_logged, error=BuildFailedError, prefix="arduino: ")


# --------------------------------------------------------------------------- sizes


def avr_sizes(elf: pathlib.Path, size_cmd: str = "avr-size") -> dict[str, int]:
    """Section sizes of an AVR ELF (`avr-size -A`): flash = .text + .data, ram = .data + .bss
    + .noinit (the static RAM; the stack lives in what is left)."""
    out = subprocess.run(
        [size_cmd, "-A", str(elf)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    sections: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash = sections.get(".text", 0) + sections.get(".data", 0)
    ram = sections.get(".data", 0) + sections.get(".bss", 0) + sections.get(".noinit", 0)
    return {"flash": flash, "ram": ram, **{k.lstrip("."): v for k, v in sections.items()}}


def check_fits(board: str, sizes: dict[str, int], elf: pathlib.Path) -> None:
    """Refuse an image that cannot work on `board`, naming both numbers (needed, available)."""
    props = _board(board)
    reserve = int(props.get("stack_reserve_bytes", 0))
    over = {memory: avail for memory, _, avail in fit.over_limits(props, flash=sizes["flash"],
                                                                  ram=sizes["ram"] + reserve)}
    problems = []
    if "flash" in over:
        flash_avail = over["flash"]
        problems.append(
            f"flash: needs {sizes['flash']} bytes (.text {sizes.get('text', 0)} + .data "
            f"{sizes.get('data', 0)}), the {board} has {flash_avail} bytes"
        )
    if "ram" in over:
        ram_avail = over["ram"]
        problems.append(
            f"RAM: needs {sizes['ram']} bytes of static data (.data {sizes.get('data', 0)} + .bss "
            f"{sizes.get('bss', 0)} + .noinit {sizes.get('noinit', 0)}) plus {reserve} bytes kept "
            f"for the stack = {sizes['ram'] + reserve} bytes, the {board} has {ram_avail} bytes"
        )
    if problems:
        # One line: callers (the CLI, doit) may show only a message's first line.
        larger = props.get("larger_boards") or []
        bigger = f" ({' or '.join(f'board={b}' for b in larger)})" if larger else ""
        raise FirmwareTooBigError(
            f"arduino: the firmware {elf} does not fit the {board} ({props.get('mcu', '')}): "
            + "; ".join(problems)
            + f". Use a smaller model or a board with more memory{bigger}."
        )


def overflow_from_log(log_text: str, board: str) -> str | None:
    """A linker's "region `data' overflowed by N bytes" as a message with both numbers (for
    toolchains whose ELF is not left behind to measure)."""
    lines = [f"{'RAM' if memory == 'ram' else 'flash'}: needs {needed} bytes, the {board} has {avail} bytes"
             for memory, _, needed, avail in fit.link_overflows(log_text, _board(board))]
    if not lines:
        return None
    return f"arduino: the firmware does not fit the {board}: " + "; ".join(dict.fromkeys(lines))


# --------------------------------------------------------------------------- flash placement

# On AVR (a Harvard machine) a plain `const` array is copied into the 2-8 KiB of RAM at start-up.
# The generated constants are moved to flash by qualifying them `__memx` (avr-gcc's 24-bit
# address space that spans flash and RAM) and every const pointer the model's C code reads
# through becomes `const __memx` too, so the same kernels read weights from flash and
# activations from RAM. Other targets never see the macro's non-empty definition.
MT_FLASH_MACRO = "MT_FLASH_CONST"
_FLASH_PRELUDE = f"""/* Added by the microtvm-tasks arduino template: on AVR, {MT_FLASH_MACRO} puts
 * constants in flash (__memx), elsewhere it is empty. */
#ifndef {MT_FLASH_MACRO}
#if defined(__AVR__) && !defined(__cplusplus)
#define {MT_FLASH_MACRO} __memx
#else
#define {MT_FLASH_MACRO}
#endif
#endif
"""
_CONST_SCALAR = r"(?:u?int(?:8|16|32|64)_t|float|double|char|signed char|unsigned char|short|int|long|void)"
# `const T *` / `const T*` (a pointer to const data, what kernels read weights through) ...
_CONST_PTR_RE = re.compile(r"\bconst\s+(" + _CONST_SCALAR + r")(\s*\*)")
# ... and file-scope constant arrays: `const T name[...] ... = {`, `extern const T name[...];`,
# `static const T name[...]` (at column 0: a local array in an address space is an error).
_CONST_ARRAY_RE = re.compile(
    r"^((?:static\s+|extern\s+)*)const\s+(" + _CONST_SCALAR + r")(\s+\w+\s*\[)", re.M
)


def place_constants_in_flash(c_text: str) -> str:
    """Qualify the model's constant arrays and the const pointers reading them with
    MT_FLASH_CONST (see above). Idempotent; leaves non-const data alone."""
    if MT_FLASH_MACRO in c_text:
        return c_text
    text = _CONST_ARRAY_RE.sub(
        lambda m: f"{m.group(1)}const {MT_FLASH_MACRO} {m.group(2)}{m.group(3)}", c_text
    )
    text = _CONST_PTR_RE.sub(lambda m: f"const {MT_FLASH_MACRO} {m.group(1)}{m.group(2)}", text)
    if text == c_text:
        return c_text
    # First, before any (possibly conditional) #include: it needs only predefined macros.
    return _FLASH_PRELUDE + text


# --------------------------------------------------------------------------- transports


_SKIP_RE = re.compile(r"\t(sbrs|sbrc|sbis|sbic|cpse)\t")
_RETURN_RE = re.compile(r"\t(ret|reti|ijmp|icall|eijmp|eicall)\b")


def qemu_skip_hazards(elf: pathlib.Path) -> list[str]:
    """Functions of `elf` with a skip instruction whose skipped instruction is a return or an
    indirect jump: qemu-system-avr mistranslates that pair (it loops, or goes on with a wrong
    value), so code reaching one behaves differently in emulation than on a chip. The template
    ships fixed versions of the libgcc multiplies the kernels use (mt_avr_mulhisi3.S); this
    finds any other, so the emulator's user is warned instead of misled."""
    objdump = shutil.which("avr-objdump")
    if objdump is None:
        return []
    try:
        text = subprocess.run([objdump, "-d", str(elf)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: list[str] = []
    func = "?"
    after_skip = False
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            func, after_skip = m.group(1), False
            continue
        if after_skip and _RETURN_RE.search(line) and func not in found:
            found.append(func)
        after_skip = bool(_SKIP_RE.search(line))
    return found


def start_qemu_avr(elf: pathlib.Path, machine: str, log_path: pathlib.Path,
                   binary: str = "qemu-system-avr") -> SerialTransport:
    """Boot `elf` in qemu-system-avr with UART0 on a loopback TCP socket and connect to it.

    The listening socket is created here and handed to QEMU (chardev fd=), so there is no
    port race; QEMU waits for our connection before starting the CPU (wait=on), so not even
    the boot banner is lost. QEMU runs in its own process group and dies with this server.
    """
    qemu = find_tool(binary, f"arduino: emulate=true needs {binary}; {QEMU_HINT}")
    def argv(fd: int) -> list[str]:
        return [
            qemu,
            "-M",
            machine,
            "-bios",
            str(elf),
            "-display",
            "none",
            "-monitor",
            "none",
            "-chardev",
            f"socket,id=mtuart,fd={fd},server=on,wait=on,nodelay=on",
            "-serial",
            "chardev:mtuart",
        ]

    proc, port = launch_on_loopback(argv, log_path)
    deadline = time.monotonic() + 10.0
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = f"qemu-system-avr exited with status {proc.returncode}: {_tail(log_path, 10)}"
            _LOG.warning("%s", detail)
            raise server.TransportClosedError(data={"detail": detail})
        try:
            return SerialTransport(f"socket://127.0.0.1:{port}", proc=proc)
        except Exception as err:  # noqa: BLE001 - retried until the deadline
            last_err = err
            time.sleep(0.05)
    kill_group(proc)
    detail = f"could not connect to qemu-system-avr's UART: {last_err}"
    _LOG.warning("%s", detail)
    raise server.TransportClosedError(data={"detail": detail})


def find_serial_port(board: str, port: str | None, serial_number: str | None) -> str:
    """The board's serial device: `port` as given, else the one with `serial_number`, else the
    single port whose USB VID:PID is the board's (from boards.json)."""
    if port and serial_number:
        raise OptionError("arduino: give either port or serial_number, not both")
    if port:
        return str(port)
    emulated = "/".join(board_data.emulated_boards(BOARD_PROPERTIES))
    return find_board_port(board, _board(board)["usb_ids"], serial_number, error=BoardNotFoundError,
                           prefix="arduino: ", choose="serial_number=... or port=/dev/tty...",
                           hint=f" Pass port=... or serial_number=..., or emulate=true for {emulated}.")


# --------------------------------------------------------------------------- handler


class ArduinoHandler(TransportHandlerMixin, Handler):
    """The Project API for Arduino (see the script's docstring); the script's `Handler`
    answers server_info_query and hands every other call to this."""

    def __init__(self) -> None:
        super().__init__()
        self._transport: SerialTransport | None = None
        atexit.register(self.close_transport)  # never leave an emulator behind

    # ---- generate_project
    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        options = dict(options or {})
        board = options.get("board")
        _board(board)
        project_type = options.get("project_type")
        if project_type not in PROJECT_TYPES:
            raise OptionError(
                f"arduino: project_type must be one of {', '.join(PROJECT_TYPES)}, got {project_type!r}"
            )
        emulate = bool(options.get("emulate"))
        if emulate and not _board(board)["emulator"]:
            emulatable = board_data.emulated_boards(BOARD_PROPERTIES)
            raise OptionError(
                f"arduino: emulate=true is only available for {', '.join(emulatable)}, not {board}"
            )
        mlf = pathlib.Path(model_library_format_path)
        if not mlf.is_file():
            raise TemplateError(f"arduino: model library format archive {mlf} not found")
        project_dir = pathlib.Path(project_dir).resolve()
        sketch = project_dir.name

        def fill(out: pathlib.Path) -> None:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}", sketch):
                raise OptionError(
                    f"arduino: {sketch!r} is not a valid Arduino sketch name (letters, digits, _ . -, "
                    "at most 63 characters, not starting with . or -); rename the project directory"
                )
            self._generate_into(out, sketch, mlf, options)

        gen.generate_atomically(project_dir, "arduino", fill)

    def _generate_into(
        self, out: pathlib.Path, sketch: str, mlf: pathlib.Path, options: dict[str, Any]
    ) -> None:
        from microtvm_tasks.runtime import glue  # the shared runtime glue

        board = options["board"]
        props = _board(board)
        project_type = options["project_type"]
        src = out / "src"
        src.mkdir(parents=True)
        os.chmod(out, 0o755)

        # The server itself, its board data and what it was generated with.
        gen.copy_server(API_SERVER_DIR, out, IMPL_FILE, BOARDS_PATH.name)
        shutil.copy2(mlf, out / MODEL_LIBRARY_FORMAT_RELPATH)
        recorded = {
            k: options.get(k)
            for k in (
                "board",
                "project_type",
                "emulate",
                "verbose",
                "warning_as_error",
                "compile_definitions",
                "arduino_cli_cmd",
            )
        }
        recorded["sketch"] = sketch
        gen.write_project_config(out, recorded)

        # The sketch and the platform hooks.
        shutil.copy2(API_SERVER_DIR / "firmware" / f"{project_type}.ino", out / f"{sketch}.ino")
        shutil.copy2(API_SERVER_DIR / "firmware" / "platform_arduino.cpp", src / "platform_arduino.cpp")
        shutil.copy2(API_SERVER_DIR / "firmware" / "mt_avr_mulhisi3.S", src / "mt_avr_mulhisi3.S")

        # The runtime (flat in src/: Arduino only resolves includes relative to the file).
        for path in glue.runtime_sources():
            path = pathlib.Path(path)
            if path.suffix in (".c", ".h"):
                shutil.copy2(path, src / path.name)

        # The model: every C source and header of the MLF, flat in src/.
        with gen.extracted_model(mlf, "arduino") as (mlf_dir, sources):
            for path in sources:
                dest = src / (path.stem + ".cpp" if path.suffix == ".cc" else path.name)
                text = path.read_text(encoding="utf-8", errors="surrogateescape")
                if path.suffix == ".c":
                    text = place_constants_in_flash(text)
                dest.write_text(text, encoding="utf-8", errors="surrogateescape")
            glue.write_model_glue(mlf_dir, src)

        # Extra files (TVM's option): unpacked into the project root.
        if options.get("extra_files_tar"):
            gen.unpack_extra_files(pathlib.Path(options["extra_files_tar"]), out)

        self._write_makefile(out, sketch, board, props, options)

    @staticmethod
    def _cflags(props: dict[str, Any], options: dict[str, Any]) -> list[str]:
        flags = [f"-DMT_MAX_PAYLOAD={int(props.get('max_payload', 256))}"]
        if props.get("serial_rx_buffer"):
            flags.append(f"-DSERIAL_RX_BUFFER_SIZE={int(props['serial_rx_buffer'])}")
        return flags + gen.compile_definitions(options.get("compile_definitions"))

    def _write_makefile(
        self, out: pathlib.Path, sketch: str, board: str, props: dict[str, Any], options: dict[str, Any]
    ) -> None:
        """The arduino-mk Makefile (AVR boards) and the arduino-cli build properties (all)."""
        cflags = self._cflags(props, options)
        (out / "build_flags.txt").write_text(" ".join(cflags) + "\n")
        if not is_avr(board):
            return
        mk = props["arduino_mk"]
        werror = " -Werror" if options.get("warning_as_error") else ""
        lines = [
            f"# Generated by microtvm-tasks for board {board} ({props.get('mcu', '')}).",
            "# Builds this sketch with Debian's arduino-mk when arduino-cli is not installed:",
            "#   apt-get install gcc-avr avr-libc arduino-core-avr arduino-mk && make",
            f"ARDUINO_DIR ?= {DEFAULT_ARDUINO_DIR}",
            "ARDMK_DIR ?= $(ARDUINO_DIR)",
            "AVR_TOOLS_DIR ?= /usr",
            "# Debian's avrdude (apt-get install avrdude) keeps its configuration in /etc.",
            "AVRDUDE_CONF ?= /etc/avrdude.conf",
            f"BOARD_TAG = {mk['BOARD_TAG']}",
        ]
        if mk.get("BOARD_SUB"):
            lines.append(f"BOARD_SUB = {mk['BOARD_SUB']}")
        lines += [
            "TARGET = firmware",
            "OBJDIR = build/avr",
            "ARDUINO_LIBS =",
            f"LOCAL_INO_SRCS = {sketch}.ino",
            "LOCAL_C_SRCS = $(wildcard src/*.c)",
            "LOCAL_CPP_SRCS = $(wildcard src/*.cpp)",
            "LOCAL_CC_SRCS =",
            "LOCAL_PDE_SRCS =",
            "LOCAL_AS_SRCS = $(wildcard src/*.S)",
            "CFLAGS_STD = -std=gnu11",
            "CXXFLAGS_STD = -std=gnu++11",
            "# Debian's avr-libc lacks DECIMAL_DIG, which the Arduino core's WString.cpp uses.",
            "CPPFLAGS += -Isrc -DDECIMAL_DIG=9 " + " ".join(shlex.quote(f) for f in cflags),
            "# Link even when RAM or flash overflows, so the build can report both numbers.",
            "LDFLAGS += -Wl,--noinhibit-exec",
            f"CFLAGS += -Wextra{werror}",
            "include $(ARDMK_DIR)/Arduino.mk",
            "",
        ]
        (out / "Makefile").write_text("\n".join(lines))

    # ---- build
    def build(self, options):
        options = dict(options or {})
        board = _option(options, "board")
        _board(board)
        cli = _option(options, "arduino_cli_cmd") or ARDUINO_CLI_CMD
        if cli and shutil.which(cli):
            return self._build_arduino_cli(cli, board, options)
        if cli:
            raise ToolNotFoundError(
                f"arduino: arduino_cli_cmd={cli!r} is not an executable; {AVR_TOOLS_HINT}"
            )
        if not is_avr(board):
            raise ToolNotFoundError(
                f"arduino: building for the {board} needs arduino-cli with the "
                f"{fqbn(board).rsplit(':', 1)[0]} "
                "core (arduino-cli core install ...); install it from https://arduino.github.io/arduino-cli/ "
                "and pass arduino_cli_cmd=... if it is not on PATH. Only AVR boards "
                "(uno, nano, mega2560, leonardo) build without it, with Debian's arduino-mk."
            )
        return self._build_arduino_mk(board, options)

    def _build_arduino_mk(self, board: str, options: dict[str, Any]) -> None:
        arduino_dir = pathlib.Path(os.environ.get("ARDUINO_DIR", DEFAULT_ARDUINO_DIR))
        ardmk_dir = pathlib.Path(os.environ.get("ARDMK_DIR", str(arduino_dir)))
        missing = []
        for tool in ("make", "avr-gcc", "avr-g++", "avr-size", "avr-objcopy"):
            if shutil.which(tool) is None:
                missing.append(tool)
        if not (ardmk_dir / "Arduino.mk").is_file():
            missing.append(f"{ardmk_dir}/Arduino.mk (arduino-mk)")
        if not (arduino_dir / "hardware" / "arduino" / "avr" / "cores" / "arduino").is_dir():
            missing.append(f"{arduino_dir}/hardware/arduino/avr (arduino-core-avr)")
        if missing:
            raise ToolNotFoundError(
                f"arduino: cannot build for the {board}: arduino-cli is not installed and the AVR "
                f"fallback is missing {', '.join(missing)}; {AVR_TOOLS_HINT}"
            )
        if not (API_SERVER_DIR / "Makefile").is_file():
            raise TemplateError(f"arduino: {API_SERVER_DIR}/Makefile is missing; regenerate the project")
        log = BUILD_DIR / "build.log"
        argv = [
            "make",
            "-f",
            "Makefile",
            f"ARDUINO_DIR={arduino_dir}",
            f"ARDMK_DIR={ardmk_dir}",
            f"-j{min(2, os.cpu_count() or 1)}",
        ]
        if _option(options, "verbose"):
            argv.append("V=1")
        rc = _run_logged(argv, cwd=API_SERVER_DIR, log=log, timeout=BUILD_TIMEOUT_SEC, what="make")
        elf = BUILD_DIR / "avr" / "firmware.elf"
        if elf.is_file():
            check_fits(board, avr_sizes(elf), elf)
        if rc != 0:
            too_large = sorted(set(re.findall(r"size of array .(\w+). is too large", _tail(log, 400))))
            if too_large:
                raise FirmwareTooBigError(
                    f"arduino: {', '.join(too_large)} exceed(s) 32767 bytes, the largest single object "
                    f"avr-gcc can place (AVR's int and size_t are 16 bits): the model is too big for the "
                    f"{board}; use a smaller model or a 32-bit board (due, nano33ble, rpipico, ...)"
                )
        if rc != 0 or not elf.is_file():
            raise BuildFailedError(
                f"arduino: make failed (exit {rc}) for the {board}; log: {log}\n{_tail(log)}"
            )
        self._record_image(elf, board)

    def _build_arduino_cli(self, cli: str, board: str, options: dict[str, Any]) -> None:
        props = _board(board)
        log = BUILD_DIR / "build.log"
        # compile_definitions is a generate-time option: take the recorded one.
        cflags = self._cflags(props, {"compile_definitions": _option(options, "compile_definitions")})
        # compiler.{c,cpp}.extra_flags are the cores' hooks for user flags; build.extra_flags
        # would replace flags some cores need (e.g. the SAM and SAMD USB definitions).
        extra = " ".join(cflags)
        argv = [
            cli,
            "compile",
            "--fqbn",
            fqbn(board),
            "--build-path",
            str(BUILD_DIR / "cli"),
            "--build-property",
            f"compiler.c.extra_flags={extra}",
            "--build-property",
            f"compiler.cpp.extra_flags={extra}",
            "--warnings",
            "all" if _option(options, "warning_as_error") else "default",
        ]
        if _option(options, "verbose"):
            argv.append("--verbose")
        argv.append(str(API_SERVER_DIR))
        rc = _run_logged(
            argv, cwd=API_SERVER_DIR, log=log, timeout=BUILD_TIMEOUT_SEC, what="arduino-cli compile"
        )
        sketch = _read_project_config().get("sketch", API_SERVER_DIR.name)
        elf = BUILD_DIR / "cli" / f"{sketch}.ino.elf"
        if elf.is_file() and is_avr(board) and shutil.which("avr-size"):
            check_fits(board, avr_sizes(elf), elf)
        if rc != 0:
            overflow = overflow_from_log(_tail(log, 200), board)
            if overflow:
                raise FirmwareTooBigError(overflow)
            text = _tail(log)
            if "sketch" in text.lower() and "name" in text.lower():
                text += f"\n(arduino-cli needs the .ino named after its folder: {API_SERVER_DIR.name}.ino)"
            raise BuildFailedError(f"arduino: arduino-cli compile failed (exit {rc}); log: {log}\n{text}")
        if not elf.is_file():
            raise BuildFailedError(f"arduino: arduino-cli compile succeeded but wrote no {elf}; log: {log}")
        self._record_image(elf, board)

    @staticmethod
    def _record_image(elf: pathlib.Path, board: str) -> None:
        info = {"board": board, "elf": str(elf.relative_to(API_SERVER_DIR)) if elf.exists() else None}
        if elf.exists() and is_avr(board) and shutil.which("avr-size"):
            info["sizes"] = avr_sizes(elf)
        (BUILD_DIR / "image.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    def _image(self) -> tuple[pathlib.Path, str]:
        path = BUILD_DIR / "image.json"
        if not path.is_file():
            raise TemplateError(f"arduino: {API_SERVER_DIR} is not built yet; run build first")
        info = json.loads(path.read_text())
        return API_SERVER_DIR / info["elf"], info["board"]

    # ---- flash
    def flash(self, options):
        options = dict(options or {})
        elf, board = self._image()
        if _option(options, "emulate"):
            return  # nothing to write: open_transport boots the image in QEMU
        cli = _option(options, "arduino_cli_cmd") or ARDUINO_CLI_CMD
        port = find_serial_port(board, _option(options, "port"), _option(options, "serial_number"))
        if cli and shutil.which(cli):
            argv = [
                cli,
                "upload",
                "--fqbn",
                fqbn(board),
                "--port",
                port,
                "--input-dir",
                str(elf.parent),
            ]
            if _option(options, "verbose"):
                argv.append("--verbose")
            argv.append(str(API_SERVER_DIR))
        elif is_avr(board) and shutil.which("make"):
            if shutil.which("avrdude") is None:
                raise ToolNotFoundError(
                    f"arduino: flashing the {board} without arduino-cli needs avrdude; "
                    "apt-get install avrdude"
                )
            argv = ["make", "-f", "Makefile", "upload", f"MONITOR_PORT={port}"]
        else:
            raise ToolNotFoundError(f"arduino: flashing the {board} needs arduino-cli; {AVR_TOOLS_HINT}")
        log = BUILD_DIR / "flash.log"
        rc = _run_logged(argv, cwd=API_SERVER_DIR, log=log, timeout=FLASH_TIMEOUT_SEC, what="upload")
        if rc != 0:
            raise BuildFailedError(f"arduino: upload to {port} failed (exit {rc}); log: {log}\n{_tail(log)}")

    # ---- transport
    def open_transport(self, options):
        options = dict(options or {})
        if self._transport is not None:
            self.close_transport()
        elf, board = self._image()
        props = _board(board)
        if _option(options, "emulate"):
            emulator = props["emulator"]
            if not emulator:
                raise OptionError(f"arduino: the {board} cannot be emulated; use "
                                  f"{' or '.join(board_data.emulated_boards(BOARD_PROPERTIES))}")
            hazards = qemu_skip_hazards(elf)
            if hazards:
                _LOG.warning(
                    "arduino: %s contains skip-over-return sequences in %s; qemu-system-avr "
                    "mis-executes them, so results in emulation may differ from a real %s",
                    elf,
                    ", ".join(hazards),
                    board,
                )
            self._transport = start_qemu_avr(elf, emulator.get("machine", board), BUILD_DIR / "qemu.log",
                                             binary=emulator["binary"])
            timeouts = server.TransportTimeouts(
                session_start_retry_timeout_sec=2.0,
                session_start_timeout_sec=20.0,
                session_established_timeout_sec=30.0,
            )
        else:
            port = find_serial_port(board, _option(options, "port"), _option(options, "serial_number"))
            self._transport = SerialTransport(port)
            # Opening the port resets most boards; the bootloader takes ~1-2 s before the sketch
            # listens. The session's handshake retries cover it.
            timeouts = server.TransportTimeouts(
                session_start_retry_timeout_sec=2.0,
                session_start_timeout_sec=10.0,
                session_established_timeout_sec=30.0,
            )
        return timeouts
