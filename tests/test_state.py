"""Per-project .tvmc.json: round trip, atomic write, corruption and version handling."""

from __future__ import annotations

import json
import os

import pytest

from microtvm_tasks.errors import StateError
from microtvm_tasks.state import (
    STATE_FILE,
    STATE_VERSION,
    ProjectState,
    load_state,
    save_state,
    try_load_state,
)


def _state() -> ProjectState:
    return ProjectState(
        platform="host",
        template_dir="/t/host",
        template_hash="ab" * 32,
        options={"verbose": True, "project_type": "host_driven", "stack": 4096},
        mlf_path="build/mlf/sine.tar",
        mlf_hash="cd" * 32,
        generated_files={"src/main.c": "ef" * 32},
        artefacts={"build": {"image": "build/firmware.elf", "sha256": "01" * 32}},
        last_flash={"image_sha256": "01" * 32, "board": "host"},
    )


def test_round_trip(tmp_path):
    st = _state()
    path = save_state(tmp_path, st)
    assert path == tmp_path / STATE_FILE
    loaded = load_state(tmp_path)
    assert loaded == st
    data = json.loads(path.read_text())
    assert data["version"] == STATE_VERSION == 1
    assert data["options"]["verbose"] is True and data["options"]["stack"] == 4096
    # Sorted keys, trailing newline: equal state gives equal bytes.
    first = path.read_bytes()
    save_state(tmp_path, load_state(tmp_path))
    assert path.read_bytes() == first and first.endswith(b"\n")
    # No temp files left behind.
    assert sorted(os.listdir(tmp_path)) == [STATE_FILE]


def test_unknown_keys_survive_round_trip(tmp_path):
    data = _state().to_dict()
    data["written_by"] = "a later 0.x"
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    st = load_state(tmp_path)
    assert st.extra == {"written_by": "a later 0.x"}
    save_state(tmp_path, st)
    assert json.loads((tmp_path / STATE_FILE).read_text())["written_by"] == "a later 0.x"


def test_missing(tmp_path):
    assert try_load_state(tmp_path) is None
    with pytest.raises(StateError, match="create-project"):
        load_state(tmp_path)
    with pytest.raises(StateError, match="no such project directory"):
        load_state(tmp_path / "nope")


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "invalid JSON at line 1"),
        ("", "invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"platform": "host"}', "'version'"),
        ('{"version": "1"}', "'version'"),
        ('{"version": 1, "options": []}', "field 'options' should be an object"),
        ('{"version": 1, "generated_files": {"a": 1}}', "field 'generated_files'"),
        ('{"version": 1, "last_flash": 3}', "field 'last_flash'"),
    ],
)
def test_corrupt(tmp_path, content, match):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(StateError, match=match) as ei:
        load_state(tmp_path)
    msg = str(ei.value)
    assert str(tmp_path / STATE_FILE) in msg
    assert "create-project -f" in msg
    assert "\n" not in msg
    with pytest.raises(StateError):
        try_load_state(tmp_path)
    assert try_load_state(tmp_path, corrupt_ok=True) is None


def test_binary_garbage(tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StateError, match="corrupt"):
        load_state(tmp_path)


def test_future_version(tmp_path):
    (tmp_path / STATE_FILE).write_text(json.dumps({"version": 2, "platform": "host"}))
    with pytest.raises(StateError, match="version 2 is not supported") as ei:
        load_state(tmp_path)
    assert "upgrade microtvm-tasks" in str(ei.value) and "create-project -f" in str(ei.value)


def test_save_not_serialisable(tmp_path):
    st = _state()
    st.options["bad"] = object()
    with pytest.raises(StateError, match="not JSON-serialisable"):
        save_state(tmp_path, st)
    # The failed write left nothing, not even a temp file.
    assert os.listdir(tmp_path) == []


def test_paths_are_stored_as_strings(tmp_path):
    st = ProjectState(platform="host", template_dir=tmp_path / "tpl", mlf_path=tmp_path / "m.tar")  # type: ignore[arg-type]
    save_state(tmp_path, st)
    loaded = load_state(tmp_path)
    assert loaded.template_dir == str(tmp_path / "tpl")
    assert loaded.mlf_path == str(tmp_path / "m.tar")
