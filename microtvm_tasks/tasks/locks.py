"""Locks: two tasks, or two `doit` processes, never work on the same thing at once.

fcntl (flock) lock files in `.tvmc/locks/`, released by the kernel when their process dies
(a crash or a kill never leaves anything locked):

* `workspace_lock`: held by a `doit` run (its reporter takes it before the first task's
  up-to-date check, gives it back after doit has recorded what it did), so a second
  `doit` on the same workspace waits for the first and then finds its work done, instead
  of building in the same directories and racing on `.tvmc/doit.db`;
* `project_lock`: held by each generate/build/flash/run of one project, so even a doit
  whose reporter is not ours never runs two builds in one project directory;
* `device_lock`: flash and run of two tasks never talk to the same device at once
  (`device_key` says which device a project's flash/run uses: its port or serial number,
  else platform and board).

Each holder writes its pid and command into the lock file; a waiter says whom it waits for.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ProjectSpec
from ..errors import MicrotvmError

#: Longest wait for a lock (a flash or run of another task on the same device, another doit).
LOCK_TIMEOUT_SEC = 3600.0

#: Options that name a physical device: flash/run on the same value never overlap.
DEVICE_OPTIONS = ("serial_port", "port", "serial_number", "device", "usb_serial")


def _command() -> str:
    """This process's command line as a person typed it (`doit build`, not .../doit/__main__.py)."""
    argv = list(sys.argv) or ["python"]
    head = os.path.basename(argv[0])
    if head in ("__main__.py", "doit") or argv[0].endswith(os.path.join("doit", "__main__.py")):
        head = "doit"
    return " ".join([head, *argv[1:]])


class FileLock:
    """An exclusive flock on `<lock_dir>/<key>.lock`, waited for (polling) at most `timeout` s.

    `what` names the locked thing in messages ("device 'x'", "project 'p'"); `busy_hint`
    ends the timeout message. The holder's pid, command and start time are written into
    the file, and a waiter prints them once (`say`, default: stdout, i.e. the task's log).
    """

    busy_hint = "is another task stuck?"

    def __init__(self, lock_dir: str, key: str, timeout: float = LOCK_TIMEOUT_SEC, *, what: str = "",
                 say: Any = None) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", key)
        self.path = Path(lock_dir) / f"{safe}.lock"
        self.key = key
        self.what = what or repr(key)
        self.timeout = timeout
        self.say = say
        self.fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, from what the holder wrote: 'pid N (doit build, since 20:05:01)'."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def _waiting(self) -> str:
        return f"waiting for {self.what}: held by {self.holder()}"

    def __enter__(self) -> FileLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise MicrotvmError(
                            f"{self.what} stayed busy for {self.timeout:.0f} s (lock {self.path}, held by "
                            f"{self.holder()}); {self.busy_hint}"
                        ) from None
                    if not told:
                        (self.say or (lambda m: print(m, flush=True)))(self._waiting())
                        told = True
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} ({_command()}, since {time.strftime('%H:%M:%S')})\n".encode())
        except BaseException:
            os.close(fd)  # closing drops the flock too
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class device_lock(FileLock):  # noqa: N801 - used like a function in a with statement
    """The lock of one device (`.tvmc/locks/<key>.lock`) for a flash, run or tune."""

    busy_hint = "is another flash or run stuck?"

    def __init__(self, lock_dir: str, key: str, timeout: float = LOCK_TIMEOUT_SEC) -> None:
        super().__init__(lock_dir, key, timeout, what=f"device {key!r}")

    def _waiting(self) -> str:
        return f"waiting for device {self.key!r} (another task is using it: {self.holder()})"


class project_lock(FileLock):  # noqa: N801 - used like a function in a with statement
    """The lock of one project directory (`.tvmc/locks/project-<name>.lock`): one stage at a time."""

    busy_hint = "is another doit or microtvm stuck on it?"

    def __init__(self, lock_dir: str, name: str, timeout: float = LOCK_TIMEOUT_SEC) -> None:
        super().__init__(lock_dir, f"project-{name}", timeout, what=f"project {name!r}")


class workspace_lock(FileLock):  # noqa: N801 - used like a function in a with statement
    """The lock of a whole workspace (`.tvmc/locks/workspace.lock`), held by one `doit` run."""

    busy_hint = "is another doit stuck? (stop it, or wait)"

    def __init__(self, lock_dir: str, root: str, timeout: float = LOCK_TIMEOUT_SEC) -> None:
        super().__init__(lock_dir, "workspace", timeout, what=f"the workspace {root}",
                         say=lambda m: print(f"microtvm: {m} (another doit is running there)",
                                             file=sys.stderr, flush=True))


def device_key(spec: ProjectSpec, options: Mapping[str, Any]) -> str:
    """Which device a project's flash/run talks to: its port or serial, else platform+board."""
    for name in DEVICE_OPTIONS:
        if options.get(name):
            return f"{name}-{options[name]}"
    platform = spec.platform or (spec.template.name if spec.template else "device")
    board = options.get("board")
    return f"{platform}-{board}" if board else platform
