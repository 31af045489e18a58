#!/usr/bin/env python3
"""Project API server of the ``qemu_arm`` template: Cortex-M firmware run in QEMU's MPS2 boards.

The template turns a Model Library Format archive into a bare-metal firmware for an ARM MPS2
FPGA image as QEMU models it (``mps2_an385`` Cortex-M3, ``mps2_an386`` Cortex-M4F,
``mps2_an500`` Cortex-M7), cross-compiled with arm-none-eabi-gcc. Boards are data
(``boards.json``): memory map, CPU flags, peripheral addresses; the linker script and the
board's compile definitions are generated from it.

Stages:

- ``generate_project`` copies this server (with ``qemu_arm_impl.py``), ``boards.json``, the
  firmware sources (startup, vector table, CMSDK UART, timer) and the runtime into the
  project, extracts the MLF into ``model/``, writes the model glue, the linker script
  ``qemu_arm.ld``, ``board.mk`` and a ``Makefile``, and remembers the options in
  ``qemu_arm_project.json``.
- ``build`` checks the MLF's weights and arena against the board's flash and RAM, runs
  make (the ELF is ``build/image.elf``) and records its section sizes in
  ``build/sizes.json``. A model that does not fit fails with both numbers (needed vs
  available), from the metadata before compiling or from the linker's overflow report.
- ``flash`` checks the image and records its hash in ``build/flash.json``: an emulated
  board is programmed when it is powered up, i.e. by ``open_transport``.
- ``open_transport`` boots ``qemu-system-arm -icount shift=S`` with UART0 on a loopback TCP
  socket that this process created (so no port can be stolen between choosing and using
  it) and connects to it with pyserial's ``socket://`` handler. QEMU runs in its own process
  group, dies with this process (``PR_SET_PDEATHSIG``), and is killed by
  ``close_transport``, on any error, and at exit.

Ticks: the firmware reports guest instructions (see ``src/platform_qemu_arm.c``) at a
the board's clock rate (25 MHz: one instruction per cycle), counted exactly by QEMU's
``-icount shift=S``; the figure does not
depend on the host's speed or load.

This script answers server_info_query alone (options, board names from ``boards.json``),
importing nothing beyond the Project API helper; ``qemu_arm_impl.py`` holds the rest (loaded
as ``server.LazyImplementation`` describes; tests reach its names, e.g. ``board_config``,
through this module).
"""

from __future__ import annotations

import json
import os

from microtvm_tasks.project_api import server

IMPL_FILE = "qemu_arm_impl.py"
BOARDS_FILE = "boards.json"
PROJECT_CONFIG = "qemu_arm_project.json"
_SERVER_DIR = os.path.dirname(os.path.realpath(__file__))

PROJECT_TYPES = ("host_driven", "aot_standalone_demo")
OPT_LEVELS = ("O0", "O1", "O2", "O3", "Os")
DEFAULT_OPT_LEVEL = "O2"

_IMPL = server.LazyImplementation(globals(), IMPL_FILE)
_load_impl, __getattr__ = _IMPL.load, _IMPL.module_getattr


def _board_names() -> list[str]:
    """The boards of boards.json, sorted; an unreadable file is the implementation's error."""
    try:
        with open(os.path.join(_SERVER_DIR, BOARDS_FILE), encoding="utf-8") as f:
            return sorted(json.load(f)["boards"])
    except (OSError, ValueError, KeyError, TypeError):
        return sorted(_load_impl()["load_boards"]()["boards"])  # raises QemuArmError


def _project_options() -> list[server.ProjectOption]:
    boards = _board_names()
    later = ["build", "flash", "open_transport"]
    return server.default_project_options(
        board={
            "choices": boards,
            "optional": later,
            "help": "MPS2 board as QEMU models it: " + ", ".join(boards),
        },
        project_type={
            "choices": list(PROJECT_TYPES),
            "help": "host_driven (run protocol over UART0) or "
            "aot_standalone_demo (runs the baked-in input once and prints the outputs).",
        },
        verbose={"optional": ["generate_project", "build"]},
    ) + [
        server.ProjectOption(
            "standalone_input",
            optional=["generate_project"],
            type="str",
            default=None,
            help="aot_standalone_demo only: .npz with arrays input_0.. (or the input names) baked into "
            "the firmware; default: a fixed deterministic pattern.",
        ),
        server.ProjectOption(
            "opt_level",
            optional=["generate_project", "build"],
            type="str",
            choices=list(OPT_LEVELS),
            default=DEFAULT_OPT_LEVEL,
            help="arm-none-eabi-gcc optimisation level (-O0 .. -O3, -Os).",
        ),
    ]


#: server_info_query answered here; every other call goes to `QemuArmHandler` (in `IMPL_FILE`).
Handler = _IMPL.handler("qemu_arm", "QemuArmHandler", _project_options)


if __name__ == "__main__":
    server.main(Handler())
