"""The errors of the Project API client, apart from the code that raises them.

Every error a user may see derives from `microtvm_tasks.errors.MicrotvmError`, so the CLI
prints it without a Python traceback. Errors the server reports keep TVM's class names
(`TransportClosedError`, `IoTimeoutError`, `UnsupportedTVMVersionError`, `ServerError`,
`JSONRPCError`) and are subclasses of the `server` module's classes of the same name, so
``except server.IoTimeoutError`` works as it does with TVM. `client.py` (the protocol)
and `process.py` (the server process) both raise them; `client` re-exports them all.
"""

from __future__ import annotations

from microtvm_tasks.errors import MicrotvmError, TemplateError

from . import server


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
        return "\nThe server's stderr during the call:\n" + indent(list(self.server_stderr))


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


def indent(lines: list[str]) -> str:
    """Lines indented for an error message (a stderr tail, a remote traceback)."""
    return "\n".join("    " + line for line in lines)
