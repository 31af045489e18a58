"""Supervising a Project API server process, apart from the protocol spoken with it.

`launch` starts a template's or project's server with a pair of inherited pipes
(``--read-fd/--write-fd``), in the project directory, as TVM's client does;
`ServerProcess` watches it: a thread keeps the tail of its stderr (for error messages),
`wait` notices its exit at once (a pidfd), `reap` stops it politely and then less so, and
`status` says how it ended. `LineChannel` reads and writes the JSON-RPC lines on the pipes
with a deadline, so a silent server cannot hang the caller (`DeadlinePassed` says the
deadline is over; the client turns that into a `ServerTimeoutError` naming the method).
`client.ProjectAPIClient` does the protocol on top of these.

Lifetime: the server runs in a process group (a session) of its own, so what it starts
(build tools, emulators) is stopped with it: every stop signals the whole group, and
once the server has exited whatever is left in its group is killed. On Linux the server
also gets SIGKILL from the kernel when the client dies (prctl PR_SET_PDEATHSIG, set in
the child right after fork), so a client killed by SIGKILL or SIGTERM leaves nothing
running; a server built on `server.main` also keeps a watchdog in its group that kills
the group when the server or the client dies (see `server.CLIENT_PID_ENV`).
"""

from __future__ import annotations

import collections
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ProjectAPIServerNotFoundError
from .server import (
    CLIENT_PID_ENV,
    SERVER_FILENAMES,
    SERVER_LAUNCH_SCRIPT_FILENAME,
    SERVER_PYTHON_FILENAME,
    SERVER_SHELL_FILENAME,
)

STDERR_TAIL_LINES = 20

MAX_REPLY_BYTES = 64 << 20
"""The longest reply line accepted (64 MiB): a server sending endless garbage is stopped
with an error instead of growing the client's memory without bound."""

ABANDON_GRACE_SEC = 0.5
"""How long `ServerProcess.abandon` waits after SIGTERM before SIGKILL (Ctrl-C must be quick)."""

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


# ---------------------------------------------------------------------------------------
# The running server
# ---------------------------------------------------------------------------------------


class ServerProcess:
    """A running server: its process and the tail of its stderr.

    A thread drains stderr into a bounded deque (so a chatty server never blocks on a
    full pipe) and echoes it to our stderr when ``echo`` is set (build tools write their
    diagnostics there; a doit task's stderr is its log file).
    """

    def __init__(self, proc: subprocess.Popen[bytes], argv: list[str], echo: bool = False,
                 group: bool = False):
        self.proc = proc
        self.argv = argv
        self.echo = echo
        self.group = group
        """True when the server leads a process group of its own (`launch` starts it so):
        stops then signal the whole group, and leftovers are killed once it has exited."""
        self.exit_fd: int | None = None
        """A pidfd that becomes readable when the server exits (Linux), for `LineChannel`."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.exit_fd = pidfd_open(proc.pid)
            except OSError:
                self.exit_fd = None
        self._lines: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._partial = b""  # an unterminated last line, shown in tails too
        self._count = 0
        self._idle = True  # the drain thread is waiting in read(), holding no data
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="project-api-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        stream = self.proc.stderr
        if stream is None:
            return
        fd = stream.fileno()
        try:
            while True:
                self._idle = True
                chunk = os.read(fd, 1 << 16)
                self._idle = False
                if not chunk:
                    break
                with self._lock:
                    *complete, self._partial = (self._partial + chunk).split(b"\n")
                    for raw in complete:
                        self._lines.append(raw.decode("utf-8", "replace").rstrip("\r"))
                        self._count += 1
                if self.echo:
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
                    sys.stderr.flush()
        except (OSError, ValueError):
            pass
        finally:
            self._idle = True
            try:
                stream.close()
            except OSError:
                pass

    def sync(self, timeout: float = 0.2) -> None:
        """Wait (briefly) until everything already in the stderr pipe has been collected.

        The server writes its stderr before its reply, so once a reply is in, the lines
        that belong to it are in the pipe; this lets the drain thread catch up.
        """
        stream = self.proc.stderr
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                pending = stream is not None and select.select([stream.fileno()], [], [], 0)[0]
            except (OSError, ValueError):
                return
            if not pending and self._idle:
                return
            time.sleep(0.001)

    @property
    def line_count(self) -> int:
        """How many complete stderr lines have been seen so far (a bookmark for `tail`)."""
        with self._lock:
            return self._count

    def tail(self, since: int | None = None) -> list[str]:
        """The last stderr lines, or only those after bookmark ``since`` (at most 20)."""
        with self._lock:
            lines = list(self._lines)
            if since is not None:
                lines = lines[max(0, len(lines) - (self._count - since)) :]
            if self._partial:
                lines.append(self._partial.decode("utf-8", "replace"))
        return lines[-STDERR_TAIL_LINES:]

    def settle(self, timeout: float = 1.0) -> None:
        """Give a server that is exiting a moment to finish and flush its stderr."""
        if self.wait(timeout):
            self._thread.join(timeout=0.5)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the server to exit; True once it has (and is reaped).

        On Linux a pidfd wakes us the moment the process exits; Popen.wait(timeout=) would
        poll with growing sleeps and add milliseconds to every short-lived server.
        """
        proc = self.proc
        if proc.poll() is not None:
            return True
        if self.exit_fd is not None:
            try:
                select.select([self.exit_fd], [], [], timeout)
            except (OSError, ValueError):
                pass
            else:
                return proc.poll() is not None
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def status(self) -> str:
        """The exit status in words, e.g. ``exited with status 1``."""
        code = self.proc.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    grace_sec = 2.0
    """How long `reap` waits for the server to exit by itself, and again after SIGTERM."""

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the server's process group (or to the server alone without one)."""
        try:
            if self.group:
                os.killpg(self.proc.pid, signum)
            elif self.proc.poll() is None:
                self.proc.send_signal(signum)
        except (ProcessLookupError, PermissionError):
            pass

    def sweep(self) -> None:
        """Kill what the server left running in its process group after it exited.

        Nothing the server started in its group has an owner once the server is gone (the
        group id cannot be reused while any member lives, so this reaches only them).
        """
        if self.group and self.proc.poll() is not None:
            self.signal_group(signal.SIGKILL)

    def _stop(self, steps: tuple[tuple[int | None, float], ...]) -> None:
        """Run `steps` (a signal or None, then how long to wait for the exit), then sweep.

        An interruption (Ctrl-C) half-way kills the group at once before it propagates, so
        a server is never left running because its client was interrupted while stopping it.
        """
        try:
            for signum, wait in steps:
                if signum is not None:
                    self.signal_group(signum)
                if self.wait(wait):
                    break
        except BaseException:
            self.signal_group(signal.SIGKILL)
            raise
        finally:
            self.sweep()
        self._thread.join(timeout=0.5)
        self._close_exit_fd()

    def reap(self) -> None:
        """Stop the server: wait for it to exit on its own, then terminate, then kill (its
        whole process group each time), then kill whatever it left in its group."""
        self._stop(((None, self.grace_sec), (signal.SIGTERM, self.grace_sec), (signal.SIGKILL, 5.0)))

    def kill(self) -> None:
        """Stop the server at once (it broke the protocol or overran a timeout)."""
        self._stop(((signal.SIGKILL, 5.0),))

    def abandon(self) -> None:
        """Stop the server promptly because the client was interrupted in the middle of a
        call: the server is busy and would not see end of file, so SIGTERM to its group,
        `ABANDON_GRACE_SEC` to exit, then SIGKILL (bounded: about a second in all)."""
        self._stop(((signal.SIGTERM, ABANDON_GRACE_SEC), (signal.SIGKILL, 1.0)))

    def _close_exit_fd(self) -> None:
        if self.exit_fd is not None and self.proc.poll() is not None:
            try:
                os.close(self.exit_fd)
            except OSError:
                pass
            self.exit_fd = None


def reap_quietly(files: list[Any], process: ServerProcess | None) -> None:
    """Close `files` and reap `process` if it still runs (a client collected without close)."""
    for f in files:
        try:
            f.close()
        except (OSError, ValueError):
            pass
    if process is not None:
        if process.proc.poll() is None:
            process.reap()
        else:
            process.sweep()


# ---------------------------------------------------------------------------------------
# The pipes, with deadlines
# ---------------------------------------------------------------------------------------


class DeadlinePassed(Exception):
    """A read or write on the pipes did not complete before its deadline."""


class ServerExited(Exception):
    """The server process exited while a read or write on its pipes was waiting (a child it
    left behind may still hold the pipe open, so end of file would never come)."""


class ReplyTooLong(Exception):
    """A reply line grew past `MAX_REPLY_BYTES` without a newline."""


def wait_ready(fd: int, for_write: bool, deadline: float | None, exit_fd: int | None = None) -> None:
    """Block until `fd` can be read (or written), or raise `DeadlinePassed`; with `exit_fd`
    (a pidfd), raise `ServerExited` as soon as the process exits and `fd` is not ready."""
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        raise DeadlinePassed()
    rlist, wlist = ([], [fd]) if for_write else ([fd], [])
    if exit_fd is not None:
        rlist = [*rlist, exit_fd]
    ready = select.select(rlist, wlist, [], remaining)
    if fd in ready[0] or fd in ready[1]:
        return
    if exit_fd is not None and exit_fd in ready[0]:
        raise ServerExited()
    raise DeadlinePassed()


class LineChannel:
    """Newline-terminated messages over a pair of binary files, each read or write bounded
    by a deadline (`time.monotonic()` seconds; None waits forever).

    Over real pipes the write end is made non-blocking and both ends wait in select(), so
    the deadline holds even when the server stops reading or writing half-way; with
    ``exit_fd`` (the server's pidfd) a wait also ends the moment the server exits. Lines
    are read in 64 KiB chunks and refused past ``max_line`` bytes (`ReplyTooLong`), so
    memory stays bounded whatever the server sends. Files without a descriptor (an
    in-memory pair in tests) are read and written directly, and deadlines do not apply.
    """

    def __init__(self, read_file: BinaryIO, write_file: BinaryIO, exit_fd: int | None = None,
                 max_line: int = MAX_REPLY_BYTES) -> None:
        self.read_file = read_file
        self.write_file = write_file
        self.exit_fd = exit_fd
        self.max_line = max_line
        self._buffer = bytearray()
        try:
            self._read_fd: int | None = read_file.fileno()
            self._write_fd: int | None = write_file.fileno()
            os.set_blocking(self._write_fd, False)  # writes wait in select(), never in write()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._read_fd = self._write_fd = None

    def write(self, data: bytes, deadline: float | None) -> None:
        """Write all of `data`; `DeadlinePassed` if the reader does not take it in time."""
        if self._write_fd is None:
            self.write_file.write(data)
            self.write_file.flush()
            return
        view = memoryview(data)
        while view:
            wait_ready(self._write_fd, True, deadline, self.exit_fd)
            try:
                count = os.write(self._write_fd, view)
            except BlockingIOError:
                continue
            view = view[count:]

    def unread(self) -> int | None:
        """How many bytes we wrote that the server has not read yet (None: cannot tell).

        The liveness rule: a server that leaves a request unread in the pipe is not serving.
        """
        if self._write_fd is None:
            return None
        try:
            import fcntl
            import termios

            count = bytearray(4)
            fcntl.ioctl(self._write_fd, termios.FIONREAD, count)
        except (ImportError, OSError):
            return None
        return int.from_bytes(count, sys.byteorder)

    def read_line(self, deadline: float | None) -> bytes:
        """The next line with its newline; at end of file, what is left (maybe b"")."""
        if self._read_fd is None:
            line = self.read_file.readline(self.max_line + 1)
            if len(line) > self.max_line:
                raise ReplyTooLong()
            return line
        searched = 0  # the buffer before this holds no newline: a long line is scanned once
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            searched = len(self._buffer)
            if searched > self.max_line:
                self._buffer.clear()
                raise ReplyTooLong()
            try:
                wait_ready(self._read_fd, False, deadline, self.exit_fd)
            except ServerExited:
                chunk = b""  # as at end of file (a child it left may hold the pipe open)
            else:
                try:
                    chunk = os.read(self._read_fd, 1 << 16)
                except BlockingIOError:
                    continue
            if not chunk:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += chunk

    def close(self) -> None:
        """Close both files (the server sees end of file and exits by itself)."""
        for f in (self.write_file, self.read_file):
            try:
                f.close()
            except (OSError, ValueError):
                pass


# ---------------------------------------------------------------------------------------
# Launching
# ---------------------------------------------------------------------------------------


def server_command(project_dir: str | os.PathLike[str]) -> list[str]:
    """The argv that starts the server in ``project_dir`` (without the pipe flags).

    ``launch_microtvm_api_server.sh`` wins when present (as in TVM: it exists to prepare
    an environment) and is given the path of ``microtvm_api_server.py``; otherwise
    ``microtvm_api_server.py`` runs under this interpreter; otherwise
    ``microtvm_api_server.sh`` runs. Raises `ProjectAPIServerNotFoundError` if none exists.
    """
    directory = Path(project_dir).absolute()  # the server runs in it: relative paths would break
    python_script = directory / SERVER_PYTHON_FILENAME
    launch_script = directory / SERVER_LAUNCH_SCRIPT_FILENAME
    shell_script = directory / SERVER_SHELL_FILENAME
    if launch_script.is_file():
        return [*_script_argv(launch_script), str(python_script)]
    if python_script.is_file():
        return [sys.executable, str(python_script)]
    if shell_script.is_file():
        return _script_argv(shell_script)
    where = "directory" if directory.is_dir() else "path (not a directory)"
    raise ProjectAPIServerNotFoundError(
        f"no Project API server in {where} {directory}: looked for {', '.join(SERVER_FILENAMES)}. "
        "Give a template or generated project directory."
    )


def _script_argv(script: Path) -> list[str]:
    # A script that lost its executable bit (e.g. unpacked from a zip) still runs.
    return [str(script)] if os.access(script, os.X_OK) else ["/bin/sh", str(script)]


def launch(project_dir: str | os.PathLike[str], *, debug: bool = False,
           echo_stderr: bool = False) -> tuple[BinaryIO, BinaryIO, ServerProcess]:
    """Start the server in ``project_dir``: (the file to read its replies from, the file to
    write requests to, its `ServerProcess`).

    The server runs with ``project_dir`` as its working directory, reading requests on
    one inherited pipe and answering on another (``--read-fd/--write-fd``). Its stdout is
    ours (build output shows); its stderr is captured for error messages and echoed to
    ours when ``echo_stderr`` or ``debug`` is set (``debug`` also passes ``--debug``).
    Raises `ProjectAPIServerNotFoundError` when there is no server or it cannot start.
    """
    directory = Path(project_dir).absolute()
    argv = server_command(directory)
    server_read, client_write = os.pipe()
    client_read, server_write = os.pipe()
    full_argv = [*argv, "--read-fd", str(server_read), "--write-fd", str(server_write)]
    if debug:
        full_argv.append("--debug")
    env = {**os.environ, CLIENT_PID_ENV: str(os.getpid())}
    try:
        proc = subprocess.Popen(
            full_argv,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(server_read, server_write),
            bufsize=0,
            env=env,
            start_new_session=True,  # its own group: stopping it stops what it started
            preexec_fn=_parent_death_preexec(),  # noqa: PLW1509 - the kernel kills it with us
        )
    except OSError as exc:
        for fd in (client_read, client_write):
            os.close(fd)
        raise ProjectAPIServerNotFoundError(f"cannot start the Project API server {argv[-1]}: {exc}") from exc
    finally:
        os.close(server_read)
        os.close(server_write)
    return (
        os.fdopen(client_read, "rb", buffering=0),
        os.fdopen(client_write, "wb", buffering=0),
        ServerProcess(proc, full_argv, echo=debug or echo_stderr, group=True),
    )


_PRCTL: Any = None


def _parent_death_preexec() -> Callable[[], None] | None:
    """A preexec_fn giving the server SIGKILL when this client dies (Linux prctl
    PR_SET_PDEATHSIG, kept across exec); None elsewhere (there `reap` and the atexit
    finalizer are all there is).

    The kernel sends it when the thread that started the server exits: start a server from
    a thread that outlives its use of the client (every caller here uses a ``with`` block).
    prctl is looked up here, in the parent: ctypes in a forked child of a threaded parent is
    not safe. A client that died before prctl took effect is caught by the getppid check.
    """
    global _PRCTL
    if not sys.platform.startswith("linux"):
        return None
    if _PRCTL is None:
        import ctypes

        try:
            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _PRCTL = False
    prctl = _PRCTL
    if not prctl:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
