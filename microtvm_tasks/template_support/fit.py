"""Does a firmware fit its board? The board's limits and the linker's overflow report, read once.

The limits are boards.json's `flash_bytes` and `ram_bytes` (see boards.schema.json); a
template checks what it knows before compiling (the MLF's weights and arena) or after
linking (the image's sections) with `over_limits`, and turns GNU ld's "region `X'
overflowed by N bytes" into needed-and-available figures with `link_overflows`. The
messages stay the template's own: they name its regions and what to do on its boards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_OVERFLOW_RE = re.compile(r"region [`'\"]?(\w+)[`'\"]? overflowed by (\d+) bytes")

#: Linker-script region names that are RAM (ours say RAM; avr-gcc's say data); others are flash.
RAM_REGIONS = frozenset({"ram", "data", "sram", "bss"})


def memory_of(region: str) -> str:
    """"ram" or "flash": which of the board's memories a linker region is part of."""
    return "ram" if region.lower() in RAM_REGIONS else "flash"


def limit(board: Mapping[str, Any], memory: str) -> int:
    """The board's `flash_bytes` or `ram_bytes` (memory "flash" or "ram")."""
    return int(board[f"{memory}_bytes"])


def over_limits(board: Mapping[str, Any], *, flash: int, ram: int) -> list[tuple[str, int, int]]:
    """(memory, needed, available) for each memory whose need exceeds the board's limit, flash
    first; a limit of 0 is none (boards.json: code runs from RAM)."""
    return [(memory, need, limit(board, memory)) for memory, need in (("flash", flash), ("ram", ram))
            if 0 < limit(board, memory) < need]


def link_overflows(output: str, board: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    """(memory, region, needed, available) for each region overflow the linker reported in
    `output`, in order, each once."""
    found: dict[tuple[str, str, int, int], None] = {}
    for region, over in _OVERFLOW_RE.findall(output):
        memory = memory_of(region)
        available = limit(board, memory)
        found[(memory, region, available + int(over), available)] = None
    return list(found)
