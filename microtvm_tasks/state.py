"""The per-project state file `<project>/.tvmc.json`.

It answers the questions every later stage asks of a generated project without starting a
Project API server: which platform and template made it (and the template's content hash,
so a template edit makes the project stale), which options were given at create time (so
`build`, `flash` and `run` need neither the platform nor the options again: the RFC's
`--auto` idea), which MLF archive went in (path and hash), which files generate_project
wrote (their hashes, so a hand edit is noticed before a regenerate overwrites it), what each
stage produced, and what was flashed last.

The file carries a `version`. A file written by a newer microtvm-tasks, or one that is not
valid JSON, is refused with a StateError saying how to recover, never half-read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateError
from .fsutil import atomic_write_json

#: Name of the state file inside a project directory.
STATE_FILE = ".tvmc.json"

#: The state-file layout this code writes and the newest it can read.
STATE_VERSION = 1

_RECOVER = "regenerate the project with `microtvm create-project -f` (or rerun its doit generate task)"


@dataclass
class ProjectState:
    """Everything remembered about one generated project.

    Paths are stored as strings exactly as the writer gave them; `options` holds the typed
    values given at create time (after type coercion); `generated_files` maps each relative
    path generate_project wrote to its sha256; `artefacts` maps a stage name ("generate",
    "build", "flash", ...) to whatever that stage wants to remember (paths, hashes, option
    hashes); `last_flash` describes the image last written to a device, or None.
    `extra` keeps top-level keys this version does not know, so a round trip loses nothing.
    """

    version: int = STATE_VERSION
    platform: str | None = None
    template_dir: str = ""
    template_hash: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    mlf_path: str = ""
    mlf_hash: str = ""
    generated_files: dict[str, str] = field(default_factory=dict)
    artefacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_flash: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to .tvmc.json (paths as strings, unknown keys kept)."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = STATE_FILE) -> ProjectState:
        """Build a ProjectState from parsed JSON, checking the version and every field's type.

        `source` names the file in error messages.
        """
        if not isinstance(data, dict):
            raise StateError(f"{source}: corrupt project state (top level is not a JSON object); {_RECOVER}")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise StateError(
                f"{source}: corrupt project state (missing or non-integer 'version'); {_RECOVER}"
            )
        if version > STATE_VERSION or version < 1:
            raise StateError(
                f"{source}: project state version {version} is not supported by this microtvm-tasks "
                f"(it reads version {STATE_VERSION}); upgrade microtvm-tasks or {_RECOVER}"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {"version": version}
        for name, expected in _FIELD_TYPES.items():
            if name not in data:
                continue
            value = data[name]
            if not _type_ok(value, expected):
                raise StateError(
                    f"{source}: corrupt project state (field '{name}' should be {_TYPE_WORDS[expected]}, "
                    f"got {type(value).__name__}); {_RECOVER}"
                )
            kwargs[name] = value
        kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs)


_FIELD_TYPES: dict[str, str] = {
    "platform": "str_or_none",
    "template_dir": "str",
    "template_hash": "str",
    "options": "dict",
    "mlf_path": "str",
    "mlf_hash": "str",
    "generated_files": "str_dict",
    "artefacts": "dict_of_dicts",
    "last_flash": "dict_or_none",
}

_TYPE_WORDS = {
    "str": "a string",
    "str_or_none": "a string or null",
    "dict": "an object",
    "str_dict": "an object of strings",
    "dict_of_dicts": "an object of objects",
    "dict_or_none": "an object or null",
}


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "str":
        return isinstance(value, str)
    if expected == "str_or_none":
        return value is None or isinstance(value, str)
    if expected == "dict":
        return isinstance(value, dict)
    if expected == "str_dict":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if expected == "dict_of_dicts":
        return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())
    if expected == "dict_or_none":
        return value is None or isinstance(value, dict)
    raise AssertionError(expected)


def state_path(project_dir: str | os.PathLike[str]) -> Path:
    """Where a project's state file lives."""
    return Path(project_dir) / STATE_FILE


def _read(path: Path) -> ProjectState:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StateError(f"{path}: corrupt project state (not UTF-8 text); {_RECOVER}") from None
    except OSError as e:
        raise StateError(f"{path}: cannot read project state ({e.strerror or e}); {_RECOVER}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StateError(
            f"{path}: corrupt project state (invalid JSON at line {e.lineno} column {e.colno}: {e.msg}); "
            f"{_RECOVER}"
        ) from None
    return ProjectState.from_dict(data, str(path))


def load_state(project_dir: str | os.PathLike[str]) -> ProjectState:
    """Read `<project_dir>/.tvmc.json`; StateError if it is missing, corrupt or too new."""
    path = state_path(project_dir)
    if not path.is_file():
        if not Path(project_dir).is_dir():
            raise StateError(
                f"{project_dir}: no such project directory; create it with "
                "`microtvm create-project PROJECT_DIR MLF PLATFORM`"
            )
        raise StateError(
            f"{path}: not found, so {project_dir} is not a project made by microtvm-tasks; create it with "
            "`microtvm create-project PROJECT_DIR MLF PLATFORM`"
        )
    return _read(path)


def try_load_state(project_dir: str | os.PathLike[str], *, corrupt_ok: bool = False) -> ProjectState | None:
    """The project's state, or None if it has no .tvmc.json.

    A corrupt or too-new file still raises StateError unless `corrupt_ok` is true, in which
    case it also gives None (for up-to-date checks, where "unreadable" just means "stale").
    """
    path = state_path(project_dir)
    if not path.is_file():
        return None
    try:
        return _read(path)
    except StateError:
        if corrupt_ok:
            return None
        raise


def save_state(project_dir: str | os.PathLike[str], state: ProjectState) -> Path:
    """Write the state atomically (temp file + os.replace); returns the file's path."""
    if state.version != STATE_VERSION:
        # We only write the layout we know; bumping an old state to ours is the upgrade.
        state.version = STATE_VERSION
    path = state_path(project_dir)
    try:
        atomic_write_json(path, state.to_dict())
    except TypeError as e:
        raise StateError(f"{path}: project state is not JSON-serialisable ({e})") from None
    return path
