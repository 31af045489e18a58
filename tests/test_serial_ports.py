"""template_support.serial_ports: a board's port found with pyserial's list_ports.grep over
ports as pyserial describes them (ListPortInfo with its USB hardware id)."""

from __future__ import annotations

import pytest

pytest.importorskip("serial")
from serial.tools import list_ports  # noqa: E402
from serial.tools.list_ports_common import ListPortInfo  # noqa: E402

from microtvm_tasks.template_support.serial_ports import find_board_port  # noqa: E402


class NotFound(Exception):
    pass


def port(device: str, vid: int, pid: int, sn: str | None, location: str) -> ListPortInfo:
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.serial_number, p.location = vid, pid, sn, location
    p.apply_usb_info()
    return p


@pytest.fixture
def ports(monkeypatch):
    found = [
        port("/dev/ttyACM0", 0x2341, 0x0043, "75830333238351F0E1C1", "1-1:1.0"),
        port("/dev/ttyUSB0", 0x0403, 0x6001, "A50285BI", "1-2:1.0"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: found)
    return found


def test_by_usb_id_and_by_serial_number(ports):
    assert find_board_port("uno", ["2341:0043"], None, error=NotFound) == "/dev/ttyACM0"
    assert find_board_port("nano", ["0403:6001"], None, error=NotFound) == "/dev/ttyUSB0"
    # any case, leading zeros or not: the same board
    assert find_board_port("uno", [], "75830333238351f0e1c1", error=NotFound) == "/dev/ttyACM0"
    assert find_board_port("nano", [], "00A50285BI", error=NotFound) == "/dev/ttyUSB0"


def test_a_serial_number_is_matched_whole(ports):
    with pytest.raises(NotFound, match="no serial port with serial number 7583 "):
        find_board_port("uno", ["2341:0043"], "7583", error=NotFound)


def test_nothing_found_and_two_boards_say_how_to_choose(ports):
    with pytest.raises(NotFound) as err:
        find_board_port("due", ["2341:003d"], None, error=NotFound, prefix="arduino: ", hint=" Or emulate.")
    msg = str(err.value)
    assert msg.startswith("arduino: no serial port with USB id 2341:003d for board due")
    assert "/dev/ttyACM0 (USB VID:PID=2341:0043" in msg and msg.endswith(" Or emulate.")
    ports.append(port("/dev/ttyACM1", 0x2341, 0x0043, "OTHER", "1-3:1.0"))
    two = "2 ports match USB id 2341:0043: /dev/ttyACM0, /dev/ttyACM1; pick one"
    with pytest.raises(NotFound, match=two):
        find_board_port("uno", ["2341:0043"], None, error=NotFound)
    with pytest.raises(NotFound, match="has no USB VID:PID in boards.json; pass port=X"):
        find_board_port("uno", [], None, error=NotFound, choose="port=X")
