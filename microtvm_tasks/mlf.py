"""Model Library Format archives: read, validate, extract safely, write reproducibly.

Writing is done here so that every producer (the built-in compiler, a passthrough of a
TVM archive) gives byte-identical archives for identical content: sorted members, fixed
mtime, uid/gid 0, no user or group names.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

from .fsutil import atomic_write_bytes

#: mtime stamped on every member of an archive we write (reproducible output).
FIXED_MTIME = 0


def _dirs_of(names: list[str]) -> list[str]:
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def archive_bytes(members: Mapping[str, bytes]) -> bytes:
    """The bytes of an uncompressed tar holding `members` ({posix relative path: content}).

    Directories are added for every parent, all entries sorted by name, with fixed metadata,
    so the result depends on the content only.
    """
    names = sorted(members)
    for name in names:
        if name.startswith("/") or ".." in name.split("/") or not name:
            raise ValueError(f"unsafe archive member name {name!r}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in _dirs_of(names):
            info = tarfile.TarInfo(f"./{d}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = FIXED_MTIME
            tar.addfile(info)
        for name in names:
            data = members[name]
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive(out: str | os.PathLike[str], members: Mapping[str, bytes]) -> Path:
    """Write `members` as a reproducible MLF tar at `out`, atomically. Returns the path."""
    out = Path(out)
    atomic_write_bytes(out, archive_bytes(members))
    return out
