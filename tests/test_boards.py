"""The one boards.json schema: every built-in template's file fits it, and a broken file is
an error that names the file, the board and the key (template_support/boards.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TEMPLATES_DIR

from microtvm_tasks.errors import TemplateError
from microtvm_tasks.template_support import boards

WITH_BOARDS = ("qemu_arm", "zephyr", "arduino")


@pytest.mark.parametrize("name", WITH_BOARDS)
def test_every_template_boards_json_fits_the_schema(name):
    data = boards.load_boards(TEMPLATES_DIR / name / "boards.json")
    for board, props in data["boards"].items():
        assert props["cpu"], board  # what the compiler picks its kernel target from
        assert props["ram_bytes"] > 0, board
        assert props["emulator"] is None or props["emulator"]["binary"].startswith("qemu-system-"), board


@pytest.mark.parametrize("name", WITH_BOARDS)
def test_the_schema_agrees_with_a_full_json_schema_validator(name):
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads((TEMPLATES_DIR / name / "boards.json").read_text())
    jsonschema.validate(data, boards.schema())
    broken = json.loads(json.dumps(data))
    next(iter(broken["boards"].values())).pop("cpu")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, boards.schema())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "boards.json"
    path.write_text(json.dumps(data))
    return path


GOOD = {"cpu": "cortex-m4", "flash_bytes": 1024, "ram_bytes": 512, "usb_ids": ["2341:0043"], "emulator": None}


def test_a_missing_key_names_the_file_the_board_and_the_key(tmp_path):
    bad = dict(GOOD)
    del bad["ram_bytes"]
    path = _write(tmp_path, {"boards": {"good": GOOD, "myboard": bad}})
    with pytest.raises(TemplateError) as err:
        boards.load_boards(path)
    assert str(path) in str(err.value) and "board 'myboard': missing key 'ram_bytes'" in str(err.value)
    assert "'good'" not in str(err.value)


def test_wrong_types_and_values_are_named_with_their_key(tmp_path):
    bad = {**GOOD, "flash_bytes": "0x400", "usb_ids": ["2341-0043"], "emulator": {"machine": "uno"}}
    path = _write(tmp_path, {"boards": {"b": bad}})
    with pytest.raises(TemplateError) as err:
        boards.load_boards(path)
    msg = str(err.value)
    assert "board 'b': flash_bytes: must be integer" in msg
    assert "board 'b': usb_ids.0: '2341-0043' does not match" in msg
    assert "board 'b': emulator: missing key 'binary'" in msg


def test_no_boards_and_unreadable_files_are_errors_too(tmp_path):
    with pytest.raises(TemplateError, match="the file: missing key 'boards'"):
        boards.load_boards(_write(tmp_path, {"uno": GOOD}))  # the old flat layout
    (tmp_path / "boards.json").write_text("{")
    with pytest.raises(TemplateError, match="cannot read the board list"):
        boards.load_boards(tmp_path / "boards.json")
    with pytest.raises(ValueError, match="not a board error"):
        boards.load_boards(_write(tmp_path, {"boards": {}}), error=lambda m: ValueError("not a board error"))


def test_emulated_boards_come_from_the_data():
    data = boards.load_boards(TEMPLATES_DIR / "arduino" / "boards.json")["boards"]
    assert boards.emulated_boards(data) == ["mega2560", "nano", "uno"]


def test_fit_reads_the_limits_and_the_linker_report():
    from microtvm_tasks.template_support import fit

    board = {"flash_bytes": 1000, "ram_bytes": 100}
    assert fit.over_limits(board, flash=1000, ram=100) == []
    assert fit.over_limits(board, flash=1001, ram=101) == [("flash", 1001, 1000), ("ram", 101, 100)]
    assert fit.over_limits({"flash_bytes": 0, "ram_bytes": 100}, flash=10**9, ram=1) == []  # 0: no limit
    log = ("ld: region `RAM' overflowed by 12 bytes\nld: region `data' overflowed by 3 bytes\n"
           "ld: region `FLASH' overflowed by 5 bytes\nld: region `RAM' overflowed by 12 bytes\n")
    assert fit.link_overflows(log, board) == [("ram", "RAM", 112, 100), ("ram", "data", 103, 100),
                                              ("flash", "FLASH", 1005, 1000)]
