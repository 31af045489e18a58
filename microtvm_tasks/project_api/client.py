"""The client half of the Project API: launch a template's server and call it.

Wire-compatible with TVM v0.18's ``tvm.micro.project_api.client`` (the protocol is
specified in `microtvm_tasks.project_api.server`), with what a build tool needs on top:

* every call has a timeout; a server that stays silent past it is killed and the error
  names the method and the limit, instead of hanging the build;
* `ProjectAPIClient` is a context manager that always reaps the server process (close
  the pipes so it exits on its own, then terminate, then kill);
* when the server dies or answers something that is not a valid reply (not JSON, wrong
  ``id``, neither ``result`` nor ``error``, wrong ``jsonrpc``), the error names the
  method, the server's exit status and the last lines of its stderr;
* every error a user may see derives from `microtvm_tasks.errors.MicrotvmError`, so the
  CLI prints it without a Python traceback. Errors the server reports keep TVM's class
  names (`TransportClosedError`, `IoTimeoutError`, `UnsupportedTVMVersionError`,
  `ServerError`, `JSONRPCError`) and are subclasses of the `server` module's classes
  of the same name, so ``except server.IoTimeoutError`` works as it does with TVM.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import EllipsisType
from typing import Any, BinaryIO, NoReturn

from microtvm_tasks.errors import MicrotvmError, TemplateError

from . import server
from .server import (  # noqa: F401 - re-exported: TVM's client defines them here
    SERVER_FILENAMES,
    SERVER_LAUNCH_SCRIPT_FILENAME,
    SERVER_PYTHON_FILENAME,
    SERVER_SHELL_FILENAME,
)

DEFAULT_TIMEOUT_SEC = 60.0
"""Default limit for one quick call, in seconds (``instantiate_from_dir(timeout=...)``)."""

STAGE_TIMEOUT_SEC = 3600.0
"""Default limit for generate_project, build and flash (``stage_timeout=``): a Zephyr build
or a first Arduino core download takes minutes; only a truly hung server should hit this."""

STAGE_METHODS = frozenset({"generate_project", "build", "flash"})

TRANSPORT_GRACE_SEC = 5.0
"""Added to a transport call's own ``timeout_sec`` so the server can time out first."""

STDERR_TAIL_LINES = 20

_DEFAULT: Any = ...  # "use the client's default timeout" in the per-call timeout= argument


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class ProjectAPIErrorBase(MicrotvmError):
    """Base of every error the Project API client raises."""


class ConnectionShutdownError(ProjectAPIErrorBase):
    """The connection is closed: the server exited, or the client was shut down."""


class MalformedReplyError(ProjectAPIErrorBase):
    """The server answered something that is not a valid JSON-RPC 2.0 reply."""


class MismatchedIdError(MalformedReplyError):
    """The reply's ``id`` is not the id of the request just sent."""


class ProjectAPIServerNotFoundError(ProjectAPIErrorBase, TemplateError):
    """The directory has no Project API server, or the server could not be started."""


class UnsupportedProtocolVersionError(ProjectAPIErrorBase):
    """The server speaks a Project API protocol version other than ours (1)."""


class ServerTimeoutError(ProjectAPIErrorBase):
    """The server did not answer a call within its timeout (it has been stopped)."""


class RPCError(ProjectAPIErrorBase):
    """Base of the errors the server itself reported in a JSON-RPC ``error`` object.

    ``server_stderr`` holds the lines the server wrote to stderr while serving the call
    (when this client launched the server); they are appended to the message.
    """

    server_stderr: tuple[str, ...] = ()

    def _stderr_text(self) -> str:
        if not self.server_stderr:
            return ""
        return "\nThe server's stderr during the call:\n" + _indent(list(self.server_stderr))


class JSONRPCError(server.JSONRPCError, RPCError):
    """The server refused the request (a -326xx code: parse, invalid request/params...)."""

    @property
    def summary(self) -> str:
        """The remote cause in one line, e.g. ``RuntimeError: compiler exited 2``.

        Taken from the traceback's final ``Class: text`` line when the message is a class
        name; a ``detail`` in ``data`` (our templates put the reason there) is appended.
        """
        data = self.data if isinstance(self.data, dict) else {}
        text = str(self.message)
        traceback = data.get("traceback")
        if isinstance(traceback, str) and self.code == server.ErrorCode.SERVER_ERROR:
            lines = traceback.rstrip().splitlines()
            for index in range(len(lines) - 1, -1, -1):
                head = lines[index].split(":", 1)[0]
                if not lines[index].startswith(" ") and head.rsplit(".", 1)[-1] == text:
                    rest = lines[index].split(":", 1)[1].strip() if ":" in lines[index] else ""
                    # A ServerError's own text repeats the JSON-RPC framing: keep just the class.
                    if rest and not rest.startswith("JSON-RPC error"):
                        text = f"{text}: {rest}"
                    break
            else:
                # TVM's server sends "calling method X" as the message: the cause is the
                # traceback's last line.
                last = lines[-1].strip() if lines else ""
                if last and ": JSON-RPC error # " not in last:
                    # (a ServerError(message=...) raised by the template ends its traceback
                    # with its own JSON-RPC text, which would only repeat the message)
                    text = (
                        last
                        if text in ("", self.client_context) or text.startswith("calling method")
                        else (f"{text}: {last}")
                    )
        elif self.code != server.ErrorCode.SERVER_ERROR:
            text = f"{text} (JSON-RPC error {int(self.code)})"
        if data.get("detail"):
            text = f"{text}: {data['detail']}"
        return text

    def __str__(self) -> str:
        # The remote cause first (what the CLI user reads), then TVM's full text.
        head = f"{self.client_context}: {self.summary}" if self.client_context else self.summary
        return head + "\n" + server.JSONRPCError.__str__(self) + self._stderr_text()


class ServerError(server.ServerError, JSONRPCError):
    """The template's handler raised while serving the call (code -32000).

    ``message`` is the remote exception's class name and ``data["traceback"]`` its
    server-side traceback, both part of the text.
    """


class TransportClosedError(server.TransportClosedError, ServerError):
    """The server reports that the transport to the device is closed."""


class IoTimeoutError(server.IoTimeoutError, ServerError):
    """The server reports that a transport read or write timed out."""


class UnsupportedTVMVersionError(server.UnsupportedTVMVersionError, ServerError):
    """The server refused the version string passed to ``server_info_query``."""


def _indent(lines: list[str]) -> str:
    return "\n".join("    " + line for line in lines)


# ---------------------------------------------------------------------------------------
# The launched server process
# ---------------------------------------------------------------------------------------


class ServerProcess:
    """A running server: its process and the tail of its stderr.

    A thread drains stderr into a bounded deque (so a chatty server never blocks on a
    full pipe) and echoes it to our stderr when ``echo`` is set (build tools write their
    diagnostics there; a doit task's stderr is its log file).
    """

    def __init__(self, proc: subprocess.Popen[bytes], argv: list[str], echo: bool = False):
        self.proc = proc
        self.argv = argv
        self.echo = echo
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
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                pidfd = pidfd_open(proc.pid)
            except OSError:
                pidfd = None
            if pidfd is not None:
                try:
                    select.select([pidfd], [], [], timeout)
                finally:
                    os.close(pidfd)
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
            import signal

            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    grace_sec = 2.0
    """How long `reap` waits for the server to exit by itself, and again after SIGTERM."""

    def reap(self) -> None:
        """Stop the server: wait for it to exit on its own, then terminate, then kill."""
        proc = self.proc
        for step, wait in ((None, self.grace_sec), (proc.terminate, self.grace_sec), (proc.kill, 5.0)):
            if step is not None:
                try:
                    step()
                except OSError:
                    pass
            if self.wait(wait):
                break
        self._thread.join(timeout=0.5)

    def kill(self) -> None:
        """Stop the server at once (it broke the protocol or overran a timeout)."""
        try:
            self.proc.kill()
        except OSError:
            pass
        self.wait(5.0)
        self._thread.join(timeout=0.5)


def _reap_quietly(files: list[Any], process: ServerProcess | None) -> None:
    for f in files:
        try:
            f.close()
        except (OSError, ValueError):
            pass
    if process is not None and process.proc.poll() is None:
        process.reap()


# ---------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------


class ProjectAPIClient:
    """Calls a Project API server over a pair of binary files (normally pipes).

    Create it with `instantiate_from_dir` to launch a template's server, or directly over
    any pair of files (tests do this with a server running in a thread). Each method
    sends one request and waits for its reply, at most ``timeout`` seconds
    (``stage_timeout``, by default the same, for generate_project, build and flash;
    None waits forever);
    ``timeout=`` on any method overrides the limit for that call.

    Use it as a context manager: leaving the ``with`` block closes the pipes and reaps
    the server even when a call failed.
    """

    def __init__(
        self,
        read_file: BinaryIO,
        write_file: BinaryIO,
        testonly_did_write_request: Callable[[], None] | None = None,
        *,
        timeout: float | None = None,
        stage_timeout: float | None | EllipsisType = ...,
        server_process: ServerProcess | None = None,
        description: str = "the Project API server",
    ):
        self.read_file = read_file
        self.write_file = write_file
        self.testonly_did_write_request = testonly_did_write_request
        self.timeout = timeout
        self.stage_timeout = timeout if stage_timeout is ... else stage_timeout
        self.server_process = server_process
        self.description = description
        self.next_request_id = 1
        self._buffer = bytearray()
        self._closed = False
        try:
            self._read_fd: int | None = read_file.fileno()
            self._write_fd: int | None = write_file.fileno()
            os.set_blocking(self._write_fd, False)  # writes wait in select(), never in write()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._read_fd = self._write_fd = None
        self._finalizer = weakref.finalize(self, _reap_quietly, [read_file, write_file], server_process)

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def is_shutdown(self) -> bool:
        """True once the connection has been closed (by us, or after a fatal error)."""
        return self._closed

    def shutdown(self) -> None:
        """Close the connection and reap the server; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for f in (self.write_file, self.read_file):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        if self.server_process is not None:
            self.server_process.reap()
        self._finalizer.detach()

    close = shutdown

    def __enter__(self) -> ProjectAPIClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- one call ---------------------------------------------------------------------------

    def _limit(self, timeout: float | None | EllipsisType, method: str = "") -> float | None:
        if timeout is not ...:
            return timeout
        return self.stage_timeout if method in STAGE_METHODS else self.timeout

    def _request_reply(self, method: str, params: dict[str, Any], timeout: float | None = _DEFAULT) -> Any:
        if self._closed:
            raise ConnectionShutdownError(
                f"cannot call {method}: the connection to {self.description} is already closed"
            )
        limit = self._limit(timeout, method)
        deadline = None if limit is None else time.monotonic() + limit
        bookmark = self.server_process.line_count if self.server_process else 0
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": self.next_request_id}
        self.next_request_id += 1

        try:
            line = json.dumps(request, default=_json_default).encode("utf-8") + b"\n"
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cannot send {method}: its parameters are not JSON data: {exc}") from exc
        try:
            self._write(line, deadline)
        except _Deadline:
            self._timed_out(method, limit)
        except (BrokenPipeError, ValueError, OSError):
            self._died(method, "stopped reading requests")
        if self.testonly_did_write_request is not None:
            self.testonly_did_write_request()

        try:
            line = self._read_line(deadline)
        except _Deadline:
            self._timed_out(method, limit)
        except (OSError, ValueError):
            line = b""
        if not line.endswith(b"\n"):
            if line:
                self._broken(method, f"sent an unterminated reply {_excerpt(line)} and closed the connection")
            self._died(method, "closed the connection without replying")

        try:
            reply = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._broken(method, f"replied with a line that is not UTF-8 JSON: {_excerpt(line)}")
        if not isinstance(reply, dict):
            self._broken(
                method, f"replied with a JSON {type(reply).__name__}, not an object: {_excerpt(line)}"
            )
        if reply.get("jsonrpc") != "2.0":
            self._broken(method, f'replied with "jsonrpc": {reply.get("jsonrpc")!r}, want "2.0"')
        reply_id = reply.get("id")
        if "error" in reply:
            # The server may not have been able to read our id; then JSON-RPC says null.
            if reply_id is not None and reply_id != request["id"]:
                self._broken(
                    method, f"replied with id {reply_id!r} to request id {request['id']!r}", MismatchedIdError
                )
            raise self._remote_error(method, reply["error"], bookmark, line)
        if reply_id != request["id"]:
            self._broken(
                method, f"replied with id {reply_id!r} to request id {request['id']!r}", MismatchedIdError
            )
        if "result" not in reply:
            self._broken(method, f"replied with neither result nor error: {_excerpt(line)}")
        return reply["result"]

    def _write(self, data: bytes, deadline: float | None) -> None:
        if self._write_fd is None:
            self.write_file.write(data)
            self.write_file.flush()
            return
        view = memoryview(data)
        while view:
            _wait_ready(self._write_fd, True, deadline)
            try:
                count = os.write(self._write_fd, view)
            except BlockingIOError:
                continue
            view = view[count:]

    def _read_line(self, deadline: float | None) -> bytes:
        if self._read_fd is None:
            return self.read_file.readline()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            _wait_ready(self._read_fd, False, deadline)
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += chunk

    # -- failures ---------------------------------------------------------------------------

    def _diagnosis(self, lines: list[str] | None = None) -> str:
        """Exit status and stderr tail of the server, for an error message."""
        process = self.server_process
        if process is None:
            return ""
        process.sync()
        lines = process.tail() if lines is None else lines
        text = f" The server {process.status()}."
        if lines:
            text += f" The last {len(lines)} line(s) of its stderr:\n" + _indent(lines)
        else:
            text += " Its stderr was empty."
        return text

    def _timed_out(self, method: str, limit: float | None) -> NoReturn:
        process = self.server_process
        if process is not None:
            process.kill()
        self.shutdown()
        raise ServerTimeoutError(
            f"{self.description} did not answer {method} within {limit:g} s, so it was stopped; "
            f"give a larger timeout if the step is just slow.{self._diagnosis()}"
        )

    def _died(self, method: str, what: str) -> NoReturn:
        if self.server_process is not None:
            self.server_process.settle()
        diagnosis = self._diagnosis()
        self.shutdown()
        raise ConnectionShutdownError(f"{self.description} {what} while serving {method}.{diagnosis}")

    def _broken(
        self, method: str, what: str, cls: type[MalformedReplyError] = MalformedReplyError
    ) -> NoReturn:
        # After a reply we cannot trust, later replies cannot be matched to requests: stop
        # the server (briefly patient: it misbehaves) so that its exit status and last
        # words can be reported.
        if self.server_process is not None:
            self.server_process.grace_sec = min(self.server_process.grace_sec, 0.2)
        self.shutdown()
        raise cls(
            f"{self.description} broke the Project API protocol calling {method}: {what}.{self._diagnosis()}"
        )

    def _remote_error(self, method: str, error: Any, bookmark: int, line: bytes) -> server.JSONRPCError:
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            self._broken(method, f"replied with a malformed error object: {_excerpt(line)}")
        context = f"calling method {method}"
        if error["code"] == server.ErrorCode.SERVER_ERROR:
            exc: server.JSONRPCError = ServerError.from_json(context, error)
        else:
            exc = JSONRPCError(error["code"], error.get("message"), error.get("data"), client_context=context)
        if self.server_process is not None:
            self.server_process.sync()
            exc.server_stderr = tuple(self.server_process.tail(since=bookmark))  # type: ignore[attr-defined]
        return exc

    # -- the Project API --------------------------------------------------------------------

    def server_info_query(self, tvm_version: str, *, timeout: float | None = _DEFAULT) -> dict[str, Any]:
        """Ask for the platform name, template flag and project options (a dict).

        Raises `UnsupportedProtocolVersionError` unless the server speaks protocol 1.
        """
        reply = self._request_reply("server_info_query", {"tvm_version": tvm_version}, timeout)
        if not isinstance(reply, dict) or not isinstance(reply.get("project_options", []), list):
            self._broken("server_info_query", f"replied with a malformed server info: {reply!r}")
        version = reply.get("protocol_version")
        if version != server.PROTOCOL_VERSION:
            raise UnsupportedProtocolVersionError(
                f"{self.description} speaks Project API protocol version {version!r}; this tool "
                f"speaks version {server.PROTOCOL_VERSION}. Use a template written for it."
            )
        return reply

    def generate_project(
        self,
        model_library_format_path: str | os.PathLike[str],
        standalone_crt_dir: str | os.PathLike[str] | None,
        project_dir: str | os.PathLike[str],
        options: dict[str, Any] | None = None,
        *,
        timeout: float | None = _DEFAULT,
    ) -> Any:
        """Generate ``project_dir`` from an MLF archive (paths are sent as strings)."""
        params = {
            "model_library_format_path": os.fspath(model_library_format_path),
            "standalone_crt_dir": None if standalone_crt_dir is None else os.fspath(standalone_crt_dir),
            "project_dir": os.fspath(project_dir),
            "options": {} if options is None else options,
        }
        return self._request_reply("generate_project", params, timeout)

    def build(self, options: dict[str, Any] | None = None, *, timeout: float | None = _DEFAULT) -> Any:
        """Build the generated project."""
        return self._request_reply("build", {"options": {} if options is None else options}, timeout)

    def flash(self, options: dict[str, Any] | None = None, *, timeout: float | None = _DEFAULT) -> Any:
        """Program the device."""
        return self._request_reply("flash", {"options": {} if options is None else options}, timeout)

    def open_transport(
        self, options: dict[str, Any] | None = None, *, timeout: float | None = _DEFAULT
    ) -> Any:
        """Open the device transport; returns ``{"timeouts": {...}}`` as TVM's client does."""
        return self._request_reply("open_transport", {"options": {} if options is None else options}, timeout)

    def close_transport(self, *, timeout: float | None = _DEFAULT) -> Any:
        """Close the device transport."""
        return self._request_reply("close_transport", {}, timeout)

    def _transport_limit(
        self, timeout: float | None | EllipsisType, timeout_sec: float | None
    ) -> float | None:
        limit = self._limit(timeout)
        if timeout is ... and limit is not None and timeout_sec is not None:
            limit = max(limit, timeout_sec + TRANSPORT_GRACE_SEC)
        return limit

    def read_transport(self, n: int, timeout_sec: float | None, *, timeout: float | None = _DEFAULT) -> bytes:
        """Read between 1 and ``n`` bytes from the device (returned as bytes, not a dict)."""
        reply = self._request_reply(
            "read_transport",
            {"n": n, "timeout_sec": timeout_sec},
            self._transport_limit(timeout, timeout_sec),
        )
        try:
            return base64.b85decode(reply["data"])
        except (TypeError, KeyError, ValueError):
            self._broken("read_transport", f"replied without base85 data: {reply!r:.200}")

    def write_transport(
        self, data: bytes, timeout_sec: float | None, *, timeout: float | None = _DEFAULT
    ) -> Any:
        """Write all of ``data`` to the device."""
        params = {"data": base64.b85encode(bytes(data)).decode("ascii"), "timeout_sec": timeout_sec}
        return self._request_reply("write_transport", params, self._transport_limit(timeout, timeout_sec))


class _Deadline(Exception):
    """Internal: the call's deadline passed."""


def _wait_ready(fd: int, for_write: bool, deadline: float | None) -> None:
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        raise _Deadline()
    rlist, wlist = ([], [fd]) if for_write else ([fd], [])
    ready = select.select(rlist, wlist, [], remaining)
    if not ready[0] and not ready[1]:
        raise _Deadline()


def _json_default(value: Any) -> Any:
    """Paths in parameters (e.g. options naming files) travel as strings."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON data")


def _excerpt(line: bytes, limit: int = 200) -> str:
    text = line.decode("utf-8", "replace").rstrip("\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


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


def instantiate_from_dir(
    project_dir: str | os.PathLike[str],
    debug: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT_SEC,
    stage_timeout: float | None = STAGE_TIMEOUT_SEC,
    echo_stderr: bool = False,
) -> ProjectAPIClient:
    """Launch the server of a template or generated project and connect to it.

    The server runs with ``project_dir`` as its working directory, reading requests on
    one inherited pipe and answering on another (``--read-fd/--write-fd``). Its stdout is
    ours (build output shows); its stderr is captured for error messages and echoed to
    ours when ``echo_stderr`` or ``debug`` is set (``debug`` also passes ``--debug`` to the
    server). ``timeout`` is
    the default limit for each call, in seconds (None: wait forever), except for the
    long stages generate_project, build and flash, which get ``stage_timeout``; a
    method's own ``timeout=`` overrides both. Use the returned client in a ``with``
    block so the server is always reaped.
    """
    directory = Path(project_dir).absolute()
    argv = server_command(directory)
    server_read, client_write = os.pipe()
    client_read, server_write = os.pipe()
    full_argv = [*argv, "--read-fd", str(server_read), "--write-fd", str(server_write)]
    if debug:
        full_argv.append("--debug")
    try:
        proc = subprocess.Popen(
            full_argv,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(server_read, server_write),
            bufsize=0,
        )
    except OSError as exc:
        for fd in (client_read, client_write):
            os.close(fd)
        raise ProjectAPIServerNotFoundError(f"cannot start the Project API server {argv[-1]}: {exc}") from exc
    finally:
        os.close(server_read)
        os.close(server_write)
    description = f"the Project API server in {directory}"
    return ProjectAPIClient(
        os.fdopen(client_read, "rb", buffering=0),
        os.fdopen(client_write, "wb", buffering=0),
        timeout=timeout,
        stage_timeout=stage_timeout,
        server_process=ServerProcess(proc, full_argv, echo=debug or echo_stderr),
        description=description,
    )
