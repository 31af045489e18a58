"""Build tools of a template: find them, run them with their output streamed.

A missing tool is the commonest reason a stage fails on a fresh machine, so it is reported
before anything runs, with what to install. A build's output goes to the server's stdout
as it comes (the Project API client passes it on to the user and the task log), and a
failure carries the output's tail, so the reason is in the error itself.
"""

from __future__ import annotations

import collections
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from microtvm_tasks.errors import ToolNotFoundError


def find_tool(name: str, missing: str, error: Callable[[str], BaseException] = ToolNotFoundError) -> str:
    """The path of `name` on PATH, or ``error(missing)``: `missing` says what to install."""
    path = shutil.which(name)
    if path is None:
        raise error(missing)
    return path


def run_streamed(
    argv: list[str],
    *,
    timeout: float,
    error: Callable[[str], BaseException] = RuntimeError,
    tail_lines: int = 60,
) -> None:
    """Run a build command, copying its output (stdout and stderr) to our stdout as it comes.

    A non-zero exit raises ``error`` with the command, its status and the last `tail_lines`
    lines; after `timeout` seconds the command is killed and ``error`` says so.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    tail: collections.deque[bytes] = collections.deque(maxlen=tail_lines)
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise error(f"build timed out after {timeout:.0f} s: {' '.join(argv)}")
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            tail.extend(lines)
        if buf:
            tail.append(buf)
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        sel.close()
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    if status != 0:
        text = b"\n".join(tail).decode(errors="replace")
        raise error(f"build failed ({' '.join(argv)} exited {status}):\n{text}")
