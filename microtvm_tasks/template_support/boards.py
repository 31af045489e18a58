"""Boards as data: load a template's boards.json and check it against the one schema.

Every built-in template describes its boards in `boards.json` of one layout,
`boards.schema.json` beside this module (read it for what each key means). A template
loads its file through `load_boards` when its implementation starts (the server script
reads only the board names, so server_info_query stays cheap), so a missing or mistyped
key is an error naming the file and the board, not a KeyError deep in a build.

The check is the small part of JSON Schema the schema uses (type, required, properties,
additionalProperties, minProperties, items, pattern, minimum, minLength and local $ref),
in the standard library only: templates must also run where no validator is installed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from microtvm_tasks.errors import TemplateError

SCHEMA_PATH = Path(__file__).resolve().parent / "boards.schema.json"

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The boards.json schema (read once per process)."""
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, not {ref!r}")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def validate(value: Any, node: dict[str, Any], root: dict[str, Any] | None = None,
             path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path, problem) for each way `value` breaks the schema `node`; nothing when it fits."""
    root = node if root is None else root
    node = _resolve(node, root)
    types = node.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in allowed):
            yield path, f"must be {' or '.join(allowed)}, not {json.dumps(value)}"
            return
    if isinstance(value, dict):
        missing = [k for k in node.get("required", ()) if k not in value]
        for key in missing:
            yield path, f"missing key {key!r}"
        if len(value) < node.get("minProperties", 0):
            yield path, f"needs at least {node['minProperties']} entries"
        props = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                yield from validate(item, props[key], root, (*path, key))
            elif extra is False:
                yield (*path, key), "is not a known key"
            elif isinstance(extra, dict):
                yield from validate(item, extra, root, (*path, key))
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            yield from validate(item, node["items"], root, (*path, str(i)))
    elif isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            yield path, "must not be empty"
        if "pattern" in node and not re.search(node["pattern"], value):
            yield path, f"{value!r} does not match {node['pattern']}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            yield path, f"must be at least {node['minimum']}, not {value}"


def _where(path: tuple[str, ...]) -> str:
    if len(path) >= 2 and path[0] == "boards":
        rest = ".".join(path[2:])
        return f"board {path[1]!r}" + (f": {rest}" if rest else "")
    return ".".join(path) or "the file"


def check_boards(data: Any, source: str | os.PathLike[str],
                 error: Callable[[str], BaseException] = TemplateError) -> dict[str, Any]:
    """`data` (a parsed boards.json) if it fits the schema, else ``error(message)`` naming
    `source` and each board and key that is wrong."""
    problems = [f"{_where(p)}: {msg}" for p, msg in validate(data, schema())]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise error(f"{os.fspath(source)}: not a valid boards.json ({SCHEMA_PATH.name}): {shown}")
    return data


def load_boards(path: str | os.PathLike[str],
                error: Callable[[str], BaseException] = TemplateError) -> dict[str, Any]:
    """A template's boards.json, parsed and checked (`check_boards`); problems raise ``error``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise error(f"{os.fspath(path)}: cannot read the board list ({exc})") from None
    return check_boards(data, path, error)


@lru_cache(maxsize=64)
def _boards_of(path: str, mtime_ns: int) -> dict[str, Any]:
    return load_boards(path).get("boards", {})


def board_cpu(template_dir: str | os.PathLike[str], board: str | None) -> str | None:
    """The `cpu` the template's boards.json gives `board`, None when the template has no
    boards.json or no such board (the template reports unknown boards itself). Read once
    per file per process: task loading asks this for every project."""
    if not board:
        return None
    path = Path(template_dir) / "boards.json"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    entry = _boards_of(str(path), mtime).get(board)
    return str(entry["cpu"]) if isinstance(entry, dict) and entry.get("cpu") else None


def project_target(template_dir: str | os.PathLike[str], options: Mapping[str, Any],
                   explicit: str | None = None) -> str:
    """The compiler target of a project: `explicit` (projects.yaml `target:`) if given, else
    its board's CPU when the compiler tunes for that CPU, else generic."""
    from microtvm_tasks.targets import Target

    if explicit:
        return Target.parse(explicit).name
    return Target.for_cpu(board_cpu(template_dir, options.get("board"))).name


def emulated_boards(boards: dict[str, Any]) -> list[str]:
    """The names of the boards that have an emulator, sorted."""
    return sorted(name for name, props in boards.items() if props.get("emulator"))
