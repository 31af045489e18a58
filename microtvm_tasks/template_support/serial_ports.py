"""Find a board's serial port with pyserial's own port search (`serial.tools.list_ports.grep`).

A board is found by the USB VID:PID of its serial port or debug probe (boards.json's
`usb_ids`), or by the USB serial number the user gives, both matched in the port's
hardware id as pyserial writes it (``USB VID:PID=2341:0043 SER=7583... LOCATION=1-1:1.0``).
Serial numbers match without their leading zeros (J-Link shows ``001050012345``, its
tools ``1050012345``) and regardless of case. One probe with several virtual COM ports
(several ports, one serial number) is one board; which of its ports is the UART comes
from boards.json (`uart_vcom_by_pid`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _hits(pattern: str) -> list[Any]:
    from serial.tools import list_ports  # lazy: pyserial only when a device is looked for

    return list(list_ports.grep(pattern))


def _seen() -> str:
    from serial.tools import list_ports

    return ", ".join(f"{p.device} ({p.hwid})" for p in list_ports.comports()) or "none"


def find_board_port(
    board: str,
    usb_ids: Sequence[str],
    serial_number: str | None,
    *,
    error: Callable[[str], BaseException],
    prefix: str = "",
    choose: str = "serial_number=...",
    hint: str = "",
    uart_vcom_by_pid: Mapping[str, int] | None = None,
) -> str:
    """The device of `board`'s serial port: the one whose serial number is `serial_number`,
    else the single board with one of `usb_ids` ("vvvv:pppp").

    Problems raise ``error(message)``; messages start with `prefix`, name the way to pick a
    port (`choose`) and end with `hint` when nothing is found.
    """
    if serial_number:
        number = serial_number.strip().lstrip("0") or "0"
        hits = _hits(rf"\bSER=0*{re.escape(number)}(?=\s|$)")
        what = f"serial number {serial_number}"
    else:
        if not usb_ids:
            raise error(f"{prefix}the {board} has no USB VID:PID in boards.json; pass {choose}")
        hits = _hits(r"\bVID:PID=(?:" + "|".join(re.escape(i) for i in usb_ids) + r")\b")
        what = "USB id " + " or ".join(usb_ids)
    if not hits:
        raise error(f"{prefix}no serial port with {what} for board {board}; is it plugged in? "
                    f"Ports seen: {_seen()}.{hint}")
    probes = {p.serial_number for p in hits}
    if len(hits) > 1 and (len(probes) > 1 or probes == {None}):
        devices = ", ".join(sorted(p.device for p in hits))
        raise error(f"{prefix}{len(hits)} ports match {what}: {devices}; pick one board with {choose}")
    hits.sort(key=lambda p: (p.location or "", p.device))
    index = int((uart_vcom_by_pid or {}).get(f"{hits[0].pid or 0:04x}", 0))
    return hits[min(index, len(hits) - 1)].device
