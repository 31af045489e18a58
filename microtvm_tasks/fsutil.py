"""Atomic writes and content hashes: the two file primitives every stage relies on.

Every stage writes its result so that an interrupted run leaves either the previous good
file or the new one, never a half-written file that a later run could take as done.
Content hashes (not mtimes) decide staleness, so touching a file changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20

#: Names never part of a template's or project's content hash: caches and editor litter.
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".DS_Store", ".pytest_cache", ".ruff_cache"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and os.replace.

    The file gets the mode a plain open() would give it (mkstemp's 0600 would make
    archives and state unreadable to a CI job running as another user).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """JSON with sorted keys and a trailing newline, so equal state gives equal bytes."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def iter_tree(root: str | os.PathLike[str], ignore: Iterable[str] = IGNORED_NAMES) -> list[str]:
    """Relative POSIX paths of the regular files under `root`, sorted, skipping `ignore`d names."""
    root = Path(root)
    ignored = frozenset(ignore)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ignored)
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if name in ignored or name.endswith(".pyc"):
                continue
            out.append((rel / name).as_posix())
    out.sort()
    return out


def tree_hashes(root: str | os.PathLike[str], ignore: Iterable[str] = IGNORED_NAMES) -> dict[str, str]:
    """{relative path: sha256} of every file under `root`."""
    root = Path(root)
    return {rel: sha256_file(root / rel) for rel in iter_tree(root, ignore)}


def tree_hash(root: str | os.PathLike[str], ignore: Iterable[str] = IGNORED_NAMES) -> str:
    """One hash over the names, executable bits and contents of every file under `root`."""
    root = Path(root)
    h = hashlib.sha256()
    for rel, digest in tree_hashes(root, ignore).items():
        mode = "x" if os.access(root / rel, os.X_OK) else "-"
        h.update(f"{rel}\0{mode}\0{digest}\n".encode())
    return h.hexdigest()
