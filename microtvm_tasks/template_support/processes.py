"""Child processes of a template server: run a build tool with a log, reap process groups,
die with the server.

A template's tools (make, west, arduino-cli, QEMU) start children of their own, so a stuck
or abandoned one must be killed as a process group, and an emulator must not outlive a
server that was killed (SIGKILL leaves no chance to clean up; the kernel's parent-death
signal does).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

_LOG = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def tail_lines(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file (empty if unreadable): error messages quote it."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def kill_group(proc: subprocess.Popen, grace: float = 3.0, *, term_first: bool = True) -> None:
    """Stop a process started with start_new_session=True and everything it started.

    SIGTERM first (make and west pass it on), SIGKILL after `grace` seconds; with
    `term_first=False` SIGKILL at once (an emulator has nothing to save).
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM if term_first else signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)


def parent_death_preexec() -> Callable[[], None]:
    """A preexec_fn making the child get SIGKILL when this server dies (Linux prctl
    PR_SET_PDEATHSIG); elsewhere a no-op, and the servers' close/atexit paths still reap.

    libc is loaded here, in the parent: ctypes in a forked child of a threaded parent is not
    safe. A parent that died before prctl took effect is caught by the getppid check.
    """
    libc = None
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            libc = None
    parent = os.getpid()

    def preexec() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def run_logged(
    argv: list[str],
    *,
    cwd: Path,
    log: Path,
    timeout: float,
    what: str,
    error: Callable[[str], BaseException],
    prefix: str = "",
    env: dict[str, str] | None = None,
) -> int:
    """Run a build or flash tool with its output in `log`; return its exit status.

    The command line heads the log so a user can rerun it by hand. On timeout the whole
    process group is killed (no compiler is left behind) and ``error(message)`` is raised:
    `prefix` (the template's name), `what` timed out, where the log is and its last lines.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in argv)
    _LOG.info("run (in %s): %s", cwd, command)
    with open(log, "wb") as out:
        out.write(("$ " + command + "\n").encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise error(
                f"{prefix}{what} did not finish within {timeout:.0f} s and was stopped; "
                f"log: {log}\n{tail_lines(log)}"
            ) from None
