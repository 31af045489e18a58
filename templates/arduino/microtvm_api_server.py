"""Project API server for Arduino boards (microtvm-tasks' `arduino` platform).

A generated project is an Arduino sketch folder: `<project>.ino`, `src/` with the model's C
sources, the microtvm-tasks runtime and `platform_arduino.cpp` (the runtime's hooks on
`Serial`), plus this server, `boards.json` and `microtvm_project.json` (the options given at
generate time, so later stages work from the project alone).

Build and flash use `arduino-cli` when it is installed, exactly as TVM's Arduino template did.
Without it, the AVR boards (uno, nano, mega2560, leonardo) still build with Debian's
`arduino-mk` + `arduino-core-avr` + `gcc-avr` through the generated `Makefile`, and with
`emulate=true` the Uno and Mega 2560 images run in `qemu-system-avr` with their UART on a
loopback TCP socket, so the whole flow runs on a machine without any board attached.

Option names follow TVM v0.18's Arduino template (board, project_type, arduino_cli_cmd, port,
serial_number, verbose, warning_as_error, compile_definitions, extra_files_tar) plus `emulate`.
This script answers server_info_query alone (options, board names from `boards.json`),
importing nothing beyond the Project API helper; `arduino_impl.py` holds the rest (loaded
as `server.LazyImplementation` describes).
"""

from __future__ import annotations

import json
import os

from microtvm_tasks.project_api import server

TYPE_CHECKING = False  # typing costs a few ms per server start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

IMPL_FILE = "arduino_impl.py"
_SERVER_DIR = os.path.dirname(os.path.realpath(__file__))

with open(os.path.join(_SERVER_DIR, "boards.json"), encoding="utf-8") as _f:
    _BOARDS: dict[str, dict[str, Any]] = json.load(_f)["boards"]
#: The `board` choices, and those `emulate` takes; the implementation loads the boards'
#: data and checks it.
BOARD_NAMES = list(_BOARDS)
EMULATED_BOARDS = [name for name, props in _BOARDS.items() if props.get("emulator")]

PROJECT_TYPES = ["host_driven", "aot_standalone_demo"]
ALL_STAGES = ["generate_project", "build", "flash", "open_transport"]



ARDUINO_CLI_CMD = server.find_executable("arduino-cli")


PROJECT_OPTIONS = server.default_project_options(
    project_type={"choices": tuple(PROJECT_TYPES)},
    board={"choices": BOARD_NAMES, "optional": ["build", "flash", "open_transport"]},
    verbose={"optional": ["generate_project", "build", "flash"]},
    warning_as_error={"optional": ["generate_project", "build", "flash"]},
) + [
    server.ProjectOption(
        "arduino_cli_cmd",
        optional=ALL_STAGES,
        type="str",
        default=ARDUINO_CLI_CMD,
        help="Path to the arduino-cli tool. Without it, AVR boards build with Debian's arduino-mk.",
    ),
    server.ProjectOption(
        "port",
        optional=["flash", "open_transport"],
        type="str",
        default=None,
        help="Serial port of the board (e.g. /dev/ttyACM0). If neither port nor serial_number is "
        "given, the port is found by the board's USB VID:PID.",
    ),
    server.ProjectOption(
        "serial_number",
        optional=["flash", "open_transport"],
        type="str",
        default=None,
        help="USB serial number of the board, to pick one of several attached boards.",
    ),
    server.ProjectOption(
        "emulate",
        optional=ALL_STAGES,
        type="bool",
        default=False,
        help=f"Run the image in qemu-system-avr instead of on a board ({', '.join(EMULATED_BOARDS)} only).",
    ),
]


_IMPL = server.LazyImplementation(globals(), IMPL_FILE)
_load_impl, __getattr__ = _IMPL.load, _IMPL.module_getattr
#: server_info_query answered here; every other call goes to `ArduinoHandler` (in `IMPL_FILE`).
Handler = _IMPL.handler("arduino", "ArduinoHandler", PROJECT_OPTIONS)


if __name__ == "__main__":
    server.main(Handler())
