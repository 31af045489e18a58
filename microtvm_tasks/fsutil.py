"""Atomic writes and content hashes: the two file primitives every stage relies on.

Every stage writes its result so that an interrupted run leaves either the previous good
file or the new one, never a half-written file that a later run could take as done.
Content hashes (not mtimes) decide staleness, so touching a file changes nothing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
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


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def walk_files(root: str | os.PathLike[str],
               ignore: Iterable[str] = IGNORED_NAMES) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, path) of every file under `root` but `ignore`d names and .pyc, unsorted.

    Plain os.walk and string slicing: it runs over every project on every no-op `doit`.
    """
    ignored = frozenset(ignore)
    top = os.fspath(root)
    top = top.rstrip("/") or ("/" if top.startswith("/") else ".")
    cut = 1 if top == "/" else len(top) + 1
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in ignored]
        rel_dir = dirpath[cut:]
        for name in filenames:
            if name in ignored or name.endswith(".pyc"):
                continue
            yield (f"{rel_dir}/{name}" if rel_dir else name), f"{dirpath}/{name}"


def iter_tree(root: str | os.PathLike[str], ignore: Iterable[str] = IGNORED_NAMES) -> list[str]:
    """Relative POSIX paths of the files under `root`, sorted, skipping `ignore`d names."""
    return sorted(rel for rel, _ in walk_files(root, ignore))


#: What is recorded of a file to tell later whether it changed: [mtime_ns, size, sha256].
FileState = list


class ContentChecker:
    """Has a file (or a tree) changed since its recorded state? The one change checker.

    Shaped like doit's own checkers (`MD5Checker`): `get_state` gives what to record,
    `check_modified` compares a file with its record. A file whose (mtime_ns, size) is as
    recorded is unchanged without being read (the shortcut git and doit take); otherwise
    its content decides, so a touch is not a change. The tree methods build on these two:
    `tree_state` (a snapshot of every file), `tree_modified` (anything edited, added or
    deleted) and `tree_hash` (one digest of names, executable bits and contents).
    `server_info.TreeHasher` is this checker with its records kept on disk.
    """

    def __init__(self, ignore: Iterable[str] = IGNORED_NAMES) -> None:
        self.ignore = frozenset(ignore)

    def get_state(self, path: str | os.PathLike[str], sig: tuple[int, int] | None = None,
                  previous: Any = None) -> FileState:
        """[mtime_ns, size, sha256] of `path`; `previous`'s hash is reused when (mtime, size) match.

        `sig` is a (mtime_ns, size) taken earlier (the file is then only read, not stat'ed).
        """
        if sig is None:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size)
        if isinstance(previous, (list, tuple)) and len(previous) == 3 and \
                (previous[0], previous[1]) == tuple(sig):
            return list(previous)
        return [sig[0], sig[1], sha256_file(path)]

    def check_modified(self, path: str | os.PathLike[str], st: os.stat_result, state: Any) -> bool:
        """True when the file differs from its recorded `state` ([mtime_ns, size, sha256])."""
        if (st.st_mtime_ns, st.st_size) == (state[0], state[1]):
            return False
        return st.st_size != state[1] or sha256_file(path) != state[2]

    def tree_state(self, root: str | os.PathLike[str], previous: Mapping[str, Any] | None = None,
                   *, exclude: Iterable[str] = ()) -> dict[str, FileState]:
        """{relpath: [mtime_ns, size, sha256]} of every file under `root` but `exclude` (sorted)."""
        prev = previous or {}
        skip = frozenset(exclude)
        return {rel: self.get_state(path, None, prev.get(rel))
                for rel, path in sorted(walk_files(root, self.ignore)) if rel not in skip}

    def tree_modified(self, root: str | os.PathLike[str], state: Mapping[str, Any],
                      *, exclude: Iterable[str] = ()) -> bool:
        """True when a file under `root` (but `exclude`) was edited, added or deleted since `state`."""
        skip = frozenset(exclude)
        seen = 0
        for rel, path in walk_files(root, self.ignore):
            if rel in skip:
                continue
            recorded = state.get(rel)
            if recorded is None:
                return True  # a new file
            seen += 1
            if self.check_modified(path, os.stat(path), recorded):
                return True
        return seen != sum(1 for rel in state if rel not in skip)  # else one was deleted

    def tree_hash(self, root: str | os.PathLike[str]) -> str:
        """One hash over the names, executable bits and contents of every file under `root`."""
        h = hashlib.sha256()
        for rel, path in sorted(walk_files(root, self.ignore)):
            mode = "x" if os.access(path, os.X_OK) else "-"
            h.update(f"{rel}\0{mode}\0{self.get_state(path)[2]}\n".encode())
        return h.hexdigest()


def tree_hash(root: str | os.PathLike[str], ignore: Iterable[str] = IGNORED_NAMES) -> str:
    """`ContentChecker.tree_hash` without a stored record: every file is read."""
    return ContentChecker(ignore).tree_hash(root)


#: errno values that mean "this disk cannot take the write" (full, quota, read-only, not ours).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def disk_error_message(e: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line for a write the disk refused: the path, what happened (with the errno) and the fix.

    `path` overrides the exception's own file name (for an os.replace, the destination
    `filename2` is the one a person knows, so it is preferred to the temporary file).
    """
    where = os.fspath(path) if path is not None else (e.filename2 or e.filename or "a file")
    where = os.fspath(where)
    folder = os.path.dirname(where.rstrip("/")) or "."
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if e.errno == errno.ENOSPC else "disk quota exceeded"
        return (f"{where}: {what} (errno {e.errno}); free some space on the disk of {folder} "
                "(or set `build_dir:` in projects.yaml to a larger one) and run again")
    if e.errno == errno.EROFS:
        return (f"{where}: the file system is read-only (errno {e.errno}); remount it read-write, or work "
                "in a writable copy of the workspace (`build_dir:` in projects.yaml can point elsewhere)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"{where}: permission denied (errno {e.errno}); make {folder} writable for this user "
                f"(chmod u+w {folder}) or run as its owner")
    return f"{where}: {e.strerror or e}"
