"""Project API server for Zephyr RTOS boards (microtvm-tasks' `zephyr` platform).

A generated project is a Zephyr application: `CMakeLists.txt` (find_package(Zephyr)),
`prj.conf` (the UART interrupt API, the console off, FPU where the board has one, stack
sizes), `src/` with `main.c`, `platform_zephyr.c` (the runtime's hooks on the console UART
and the kernel's cycle counter), the microtvm-tasks runtime and the model's C sources, plus
this server, `boards.json` and `microtvm_project.json` (the generate-time options).

`build` runs `west build -b BOARD`, `flash` runs `west flash` (with the runner's argument for
serial_number). For QEMU boards `open_transport` runs `west build -t run` with the UART on a
pseudo-terminal; for hardware it opens the board's serial port, found by serial_number or
by the USB VID:PID in boards.json. Without west or a Zephyr tree, build says what to install
or set. Option names follow TVM v0.18's Zephyr template.

This script answers server_info_query alone (options, board names from `boards.json`),
importing nothing beyond the Project API helper; `zephyr_impl.py` holds the rest (loaded as
`server.LazyImplementation` describes).
"""

from __future__ import annotations

import json
import os
import sys

from microtvm_tasks.project_api import server

TYPE_CHECKING = False  # typing costs a few ms per server start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

IMPL_FILE = "zephyr_impl.py"
_SERVER_DIR = os.path.dirname(os.path.realpath(__file__))

with open(os.path.join(_SERVER_DIR, "boards.json"), encoding="utf-8") as _f:
    #: The `board` choices; the implementation loads the boards' data and checks it.
    BOARD_NAMES: list[str] = list(json.load(_f)["boards"])

PROJECT_TYPES = ["host_driven", "aot_standalone_demo"]
ALL_STAGES = ["generate_project", "build", "flash", "open_transport"]



DEFAULT_MAIN_STACK_SIZE = 4096


def _default_west_cmd() -> str | None:
    """`west` on PATH, else `python -m west` when this interpreter has it, else None."""
    if server.find_executable("west"):
        return "west"
    if _find_spec("west") is not None:
        return f"{sys.executable} -m west"
    return None


def _find_spec(name: str) -> Any:
    """`importlib.util.find_spec` for a top-level name, without importing importlib.util."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(name, None) if find_spec is not None else None
        if spec is not None:
            return spec
    return None


WEST_CMD = _default_west_cmd()
ZEPHYR_BASE = os.environ.get("ZEPHYR_BASE")


PROJECT_OPTIONS = server.default_project_options(
    project_type={"choices": tuple(PROJECT_TYPES)},
    board={"choices": BOARD_NAMES, "optional": ["build", "flash", "open_transport"]},
    verbose={"optional": ["generate_project", "build", "flash"]},
    warning_as_error={"optional": ["generate_project", "build"]},
) + [
    server.ProjectOption(
        "gdbserver_port",
        optional=["open_transport"],
        type="int",
        default=None,
        help="QEMU boards: also serve GDB on this TCP port.",
    ),
    server.ProjectOption(
        "serial_number",
        optional=["flash", "open_transport"],
        type="str",
        default=None,
        help="Serial number of the board's debug probe / USB serial port, to pick one of several.",
    ),
    server.ProjectOption(
        "west_cmd",
        optional=ALL_STAGES,
        type="str",
        default=WEST_CMD,
        help="The west command (e.g. 'west' or 'python3 -m west').",
    ),
    server.ProjectOption(
        "zephyr_base",
        optional=ALL_STAGES,
        type="str",
        default=ZEPHYR_BASE,
        help="Path to the zephyr repository (default: the ZEPHYR_BASE environment variable).",
    ),
    server.ProjectOption(
        "config_main_stack_size",
        optional=["generate_project"],
        type="int",
        default=None,
        help=f"CONFIG_MAIN_STACK_SIZE for the application (default {DEFAULT_MAIN_STACK_SIZE}).",
    ),
]


_IMPL = server.LazyImplementation(globals(), IMPL_FILE)
_load_impl, __getattr__ = _IMPL.load, _IMPL.module_getattr
#: server_info_query answered here; every other call goes to `ZephyrHandler` (in `IMPL_FILE`).
Handler = _IMPL.handler("zephyr", "ZephyrHandler", PROJECT_OPTIONS)


if __name__ == "__main__":
    server.main(Handler())
