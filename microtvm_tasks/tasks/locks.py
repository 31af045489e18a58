"""Device locks: flash and run of two tasks never talk to the same device at once.

One fcntl lock file per device in `.tvmc/locks/`; `device_key` says which device a
project's flash/run uses (its port or serial number, else platform and board).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ProjectSpec
from ..errors import MicrotvmError

#: Longest wait for a device lock (a flash or run of another task on the same device).
LOCK_TIMEOUT_SEC = 3600.0

#: Options that name a physical device: flash/run on the same value never overlap.
DEVICE_OPTIONS = ("serial_port", "port", "serial_number", "device", "usb_serial")


class device_lock:  # noqa: N801 - used like a function in a with statement
    """An exclusive fcntl lock on `.tvmc/locks/<key>.lock` for a flash or run.

    Held locks are released by the kernel when the process dies, so a crash never leaves
    a device locked. Waits (polling) at most `timeout` seconds.
    """

    def __init__(self, lock_dir: str, key: str, timeout: float = LOCK_TIMEOUT_SEC) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", key)
        self.path = Path(lock_dir) / f"{safe}.lock"
        self.key = key
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> device_lock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise MicrotvmError(
                        f"device {self.key!r} stayed busy for {self.timeout:.0f} s (lock {self.path}); "
                        "is another flash or run stuck?"
                    ) from None
                if not told:
                    print(f"waiting for device {self.key!r} (another task is using it)", flush=True)
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def device_key(spec: ProjectSpec, options: Mapping[str, Any]) -> str:
    """Which device a project's flash/run talks to: its port or serial, else platform+board."""
    for name in DEVICE_OPTIONS:
        if options.get(name):
            return f"{name}-{options[name]}"
    platform = spec.platform or (spec.template.name if spec.template else "device")
    board = options.get("board")
    return f"{platform}-{board}" if board else platform
