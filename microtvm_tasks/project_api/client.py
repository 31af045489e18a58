"""The client half of the Project API: launch a template's server and call it.

Wire-compatible with TVM v0.18's ``tvm.micro.project_api.client`` (the protocol is
specified in `microtvm_tasks.project_api.server`), with what a build tool needs on top:

* every call has a timeout (per method if the caller says so: ``method_timeouts=``); a
  server that stays silent past it is killed and the error names the method and the
  limit, instead of hanging the build. Two liveness rules end a wait early: a server that
  exits is noticed at once (even when a child it left holds the pipe open), and one that
  leaves a request unread for `REQUEST_READ_LIMIT_SEC` is not serving and is stopped.
  A reply line is refused past 64 MiB (`process.MAX_REPLY_BYTES`), read in bounded chunks;
* the server runs in a process group of its own that every stop signals, and dies with
  the client (see `process`); an interruption (Ctrl-C) in the middle of a call stops the
  server at once (SIGTERM, half a second, SIGKILL) instead of waiting for its reply;
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

This module is the protocol: requests, replies and what a bad reply means. Starting and
watching the server process (the pipes, its stderr tail, reading with deadlines, reaping)
is `process.py`; the error classes are `errors.py`. Every name users import from here
(`ProjectAPIClient`, `instantiate_from_dir`, `server_command`, the errors) still is.
"""

from __future__ import annotations

import base64
import json
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import EllipsisType
from typing import Any, BinaryIO, NoReturn

from . import server
from .errors import (  # noqa: F401 - re-exported: users catch them as client.<Name>
    ConnectionShutdownError,
    IoTimeoutError,
    JSONRPCError,
    MalformedReplyError,
    MismatchedIdError,
    ProjectAPIErrorBase,
    ProjectAPIServerNotFoundError,
    RPCError,
    ServerError,
    ServerTimeoutError,
    TransportClosedError,
    UnsupportedProtocolVersionError,
    UnsupportedTVMVersionError,
    indent,
)
from .process import (  # noqa: F401 - re-exported: launching and supervising the server
    MAX_REPLY_BYTES,
    STDERR_TAIL_LINES,
    DeadlinePassed,
    LineChannel,
    ReplyTooLong,
    ServerExited,
    ServerProcess,
    launch,
    reap_quietly,
    server_command,
)
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

REQUEST_READ_LIMIT_SEC = 30.0
"""A server that has not read a request this long after it was sent is not serving (it
waits for nothing we could give it): it is stopped and the error says so, whatever the
method's own limit (a build may take an hour; reading its request never does)."""

TRANSPORT_GRACE_SEC = 5.0
"""Added to a transport call's own ``timeout_sec`` so the server can time out first."""

_DEFAULT: Any = ...  # "use the client's default timeout" in the per-call timeout= argument


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
    ``method_timeouts`` maps a method name to its own limit (e.g. ``{"build": 600}``);
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
        method_timeouts: dict[str, float | None] | None = None,
    ):
        self.read_file = read_file
        self.write_file = write_file
        self.testonly_did_write_request = testonly_did_write_request
        self.timeout = timeout
        self.stage_timeout = timeout if stage_timeout is ... else stage_timeout
        self.method_timeouts = dict(method_timeouts or {})
        self.request_read_limit: float | None = REQUEST_READ_LIMIT_SEC
        self.server_process = server_process
        self.description = description
        self.next_request_id = 1
        self._closed = False
        self._channel = LineChannel(
            read_file, write_file, exit_fd=server_process.exit_fd if server_process else None
        )
        self._finalizer = weakref.finalize(self, reap_quietly, [read_file, write_file], server_process)

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
        self._channel.close()
        if self.server_process is not None:
            self.server_process.reap()
        self._finalizer.detach()

    close = shutdown

    def __enter__(self) -> ProjectAPIClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception) and self.server_process:
            # interrupted (Ctrl-C, SystemExit): an idle server exits at end of file at once;
            # do not wait long for one that does not
            self.server_process.grace_sec = min(self.server_process.grace_sec, 0.5)
        self.shutdown()

    def abandon(self) -> None:
        """Stop the server promptly without a word to it (the client was interrupted in the
        middle of a call, so a reply is still due and the connection cannot be reused)."""
        if self._closed:
            return
        self._closed = True
        self._channel.close()
        if self.server_process is not None:
            self.server_process.abandon()
        self._finalizer.detach()

    # -- one call ---------------------------------------------------------------------------

    def _limit(self, timeout: float | None | EllipsisType, method: str = "") -> float | None:
        if timeout is not ...:
            return timeout
        if method in self.method_timeouts:
            return self.method_timeouts[method]
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
            line = self._exchange(method, line, deadline, limit)
        except BaseException:
            # Interrupted half-way (Ctrl-C): the reply is still due, so the connection is
            # unusable and the server busy; stop it now rather than wait for its reply.
            if not self._closed:
                self.abandon()
            raise
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

    def _exchange(self, method: str, line: bytes, deadline: float | None, limit: float | None) -> bytes:
        """Send one request line and return the reply line (with its newline).

        The liveness rules apply here: the server's exit ends any wait at once, and a
        request still unread after `request_read_limit` seconds stops the server.
        """
        channel = self._channel
        read_limit = self.request_read_limit
        checkpoint = None if read_limit is None else time.monotonic() + read_limit

        def overdue() -> bool:  # the method's own limit is over (not just the read check)
            return checkpoint is None or (deadline is not None and time.monotonic() >= deadline)

        while True:
            try:
                channel.write(line, _earliest(deadline, checkpoint))
                break
            except DeadlinePassed:
                if overdue():
                    self._timed_out(method, limit)
                self._not_reading(method, read_limit)
            except ServerExited:
                self._died(method, "exited before reading the request")
            except (BrokenPipeError, ValueError, OSError):
                self._died(method, "stopped reading requests")
        if self.testonly_did_write_request is not None:
            self.testonly_did_write_request()
        while True:
            try:
                line = channel.read_line(_earliest(deadline, checkpoint))
                break
            except DeadlinePassed:
                if overdue():
                    self._timed_out(method, limit)
                if channel.unread():
                    self._not_reading(method, read_limit)
                checkpoint = None  # it read the request: only the method's limit is left
            except ServerExited:
                line = b""  # it exited without replying (a child of it may hold the pipe)
                break
            except ReplyTooLong:
                self._broken(
                    method, f"sent a reply line longer than {channel.max_line >> 20} MiB (the limit) "
                    "without a newline"
                )
            except (OSError, ValueError):
                line = b""
                break
        if not line.endswith(b"\n"):
            if line:
                self._broken(method, f"sent an unterminated reply {_excerpt(line)} and closed the connection")
            self._died(method, "closed the connection without replying")
        return line

    # -- failures ---------------------------------------------------------------------------

    def _not_reading(self, method: str, read_limit: float | None) -> NoReturn:
        if self.server_process is not None:
            self.server_process.kill()
        self.shutdown()
        raise ServerTimeoutError(
            f"{self.description} did not read the {method} request within {read_limit:g} s "
            f"(it is not serving: hung, or waiting for something else), so it was stopped."
            f"{self._diagnosis()}"
        )

    def _diagnosis(self, lines: list[str] | None = None) -> str:
        """Exit status and stderr tail of the server, for an error message."""
        process = self.server_process
        if process is None:
            return ""
        process.sync()
        lines = process.tail() if lines is None else lines
        text = f" The server {process.status()}."
        if lines:
            text += f" The last {len(lines)} line(s) of its stderr:\n" + indent(lines)
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


def _earliest(a: float | None, b: float | None) -> float | None:
    """The earlier of two deadlines, None meaning never."""
    if a is None:
        return b
    return a if b is None else min(a, b)


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


def instantiate_from_dir(
    project_dir: str | os.PathLike[str],
    debug: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT_SEC,
    stage_timeout: float | None = STAGE_TIMEOUT_SEC,
    echo_stderr: bool = False,
    method_timeouts: dict[str, float | None] | None = None,
) -> ProjectAPIClient:
    """Launch the server of a template or generated project and connect to it.

    `process.launch` starts it (the pipes, the working directory, stderr kept and echoed
    when ``echo_stderr`` or ``debug`` is set; ``debug`` also passes ``--debug`` to the
    server); this client speaks the protocol with it. ``timeout`` is
    the default limit for each call, in seconds (None: wait forever), except for the
    long stages generate_project, build and flash, which get ``stage_timeout``; a
    ``method_timeouts`` gives single methods a limit of their own (``{"flash": 120}``); a
    method's own ``timeout=`` overrides all of these. Use the returned client in a ``with``
    block so the server is always reaped.
    """
    directory = Path(project_dir).absolute()
    read_file, write_file, process = launch(directory, debug=debug, echo_stderr=echo_stderr)
    return ProjectAPIClient(
        read_file,
        write_file,
        timeout=timeout,
        stage_timeout=stage_timeout,
        server_process=process,
        description=f"the Project API server in {directory}",
        method_timeouts=method_timeouts,
    )
