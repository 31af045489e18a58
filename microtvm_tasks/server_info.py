"""Server info of a template, cached in `.tvmc/server_info/` by the template's content hash.

Listing options, type-checking projects.yaml and deciding which stage an option belongs
to all need a template's `server_info_query` answer. Asking means launching its Project
API server (a Python process: ~100 ms); doing that on every `doit` invocation would make
a no-op run slow, so the answer is kept as `<template tree hash>.json` and a template
already seen never starts a server again. Edit any file of the template and its hash,
hence the cache key, changes.

Hashing a template must itself be cheap, so `TreeHasher` (fsutil's one change checker,
`ContentChecker`, with its records on disk) remembers file hashes by (path, mtime_ns,
size) in `hashes.json` beside the cache entries: an unchanged file is a `stat`, not a
read (the shortcut git and doit take too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import TemplateError
from .fsutil import IGNORED_NAMES, ContentChecker, FileState, atomic_write_json

#: What we tell a server our "TVM version" is: the Project API we speak is TVM v0.18's.
TVM_VERSION = "0.18.0"

_STAT_CACHE_FILE = "hashes.json"


def default_cache_dir() -> Path:
    """`.tvmc/server_info` under the current directory: the CLI's cache (the doit tasks keep
    theirs beside projects.yaml). Callers pass it explicitly; nothing here falls back on it."""
    return Path.cwd() / ".tvmc" / "server_info"


class TreeHasher(ContentChecker):
    """`fsutil.ContentChecker` with its file records kept in `<cache_dir>/hashes.json`.

    Records are keyed by absolute path, so hashing an unchanged template in a later
    process is a `stat` per file, not a read. One instance per process is enough;
    `tree_hash` results are also memoised for the life of the instance, since within
    one doit run a template does not change.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(IGNORED_NAMES)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._stat_cache: dict[str, list[Any]] | None = None
        self._dirty = False
        self._memo: dict[str, str] = {}

    def _load(self) -> dict[str, list[Any]]:
        if self._stat_cache is None:
            self._stat_cache = {}
            if self.cache_dir is not None:
                try:
                    data = json.loads((self.cache_dir / _STAT_CACHE_FILE).read_text(encoding="utf-8"))
                    if isinstance(data, dict):
                        self._stat_cache = data
                except (OSError, ValueError):
                    pass
        return self._stat_cache

    def get_state(self, path: str | os.PathLike[str], sig: tuple[int, int] | None = None,
                  previous: Any = None) -> FileState:
        """As ContentChecker's, with the stored record as `previous` (and the new one stored)."""
        key = os.fspath(path)
        cache = self._load()
        hit = cache.get(key)
        state = super().get_state(path, sig, hit if previous is None else previous)
        if hit != state:
            cache[key] = state
            self._dirty = True
        return state

    def tree_hash(self, root: str | os.PathLike[str], *, memo: bool = True) -> str:
        """Same value as `fsutil.tree_hash(root)`: names, executable bits and contents."""
        root = Path(root).resolve()
        key = str(root)
        if memo and key in self._memo:
            return self._memo[key]
        if not root.is_dir():
            raise TemplateError(f"{root}: template directory not found")
        digest = super().tree_hash(root)
        self._memo[key] = digest
        self.save()
        return digest

    def save(self) -> None:
        """Persist new file hashes (atomic; concurrent writers just lose some cache entries)."""
        if self._dirty and self.cache_dir is not None and self._stat_cache is not None:
            try:
                atomic_write_json(self.cache_dir / _STAT_CACHE_FILE, self._stat_cache)
            except OSError:
                pass
            self._dirty = False


_hashers: dict[str, TreeHasher] = {}


def hasher_for(cache_dir: str | os.PathLike[str] | None) -> TreeHasher:
    """The process-wide TreeHasher for a cache directory."""
    key = str(Path(cache_dir).resolve()) if cache_dir is not None else ""
    h = _hashers.get(key)
    if h is None:
        h = _hashers[key] = TreeHasher(cache_dir)
    return h


def template_hash(template_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                  *, memo: bool = False) -> str:
    """The template's content hash (the server-info cache key), cheap when nothing changed.

    File hashes are kept in `cache_dir` when one is given, else for this process only.
    """
    return hasher_for(cache_dir).tree_hash(template_dir, memo=memo)


def query_server_info(template_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Launch the template's Project API server and ask it (no cache)."""
    from .project_api.client import instantiate_from_dir

    try:
        with instantiate_from_dir(str(template_dir)) as client:
            info = client.server_info_query(TVM_VERSION)
    except Exception as e:
        from .errors import MicrotvmError

        if isinstance(e, MicrotvmError):
            raise
        raise TemplateError(f"{template_dir}: cannot query the template's Project API server: {e}") from e
    if not isinstance(info, dict) or not isinstance(info.get("project_options", []), list):
        raise TemplateError(f"{template_dir}: server_info_query returned an unexpected answer: {info!r}")
    return info


def get_server_info(
    template_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
    *, memo: bool = False,
) -> dict[str, Any]:
    """`server_info_query` of a template, from `<cache_dir>/<template hash>.json` when present.

    Without `cache_dir` nothing is cached on disk (the server is asked). With `memo`, the
    template's hash is computed once per process (what task loading wants). The answer
    gains `template_hash`. A corrupt cache entry is ignored and rewritten.
    """
    digest = template_hash(template_dir, cache_dir, memo=memo)
    entry = Path(cache_dir) / f"{digest}.json" if cache_dir is not None else None
    if entry is not None:
        try:
            cached = json.loads(entry.read_text(encoding="utf-8"))
            if isinstance(cached, dict) and cached.get("template_hash") == digest:
                return cached
        except (OSError, ValueError):
            pass
    info = dict(query_server_info(template_dir))
    info["template_hash"] = digest
    info["template_dir"] = str(Path(template_dir).resolve())
    if entry is not None:
        try:
            atomic_write_json(entry, info)
        except OSError:
            pass  # a read-only workspace still works, just slower
    return info
