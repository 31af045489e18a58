"""The server half of the microTVM Project API: what a platform template imports.

A *template* is a directory holding ``microtvm_api_server.py``. That script subclasses
`ProjectAPIHandler` and ends with ``server.main(MyHandler())``. The tool that drives the
template (this project's client, or TVM's own ``tvm.micro.project_api.client``) starts the
script as a child process and talks to it over two pipes. This module implements the
server side of that conversation, wire-compatible with TVM v0.18 (Project API protocol
version 1), so a template written for TVM runs here unchanged and ours run under TVM.

It uses the standard library only and imports nothing costly at start-up (``base64``,
``pathlib``, ``traceback`` and ``logging`` are loaded only when first needed), because a
server is launched for every query and a template may vendor this single file.

The protocol
============

Launch
    The client runs ``microtvm_api_server.py --read-fd R --write-fd W [--debug]`` with the
    two pipe ends inherited. The server reads requests from descriptor R and writes replies
    to W. Its stdout and stderr are not part of the protocol (build tools may print there).
    The server exits when R reaches end-of-file, i.e. when the client closes its end.

Framing
    Every message is one JSON-RPC 2.0 object (https://www.jsonrpc.org/specification)
    serialised on a single line of UTF-8 text and terminated by ``\\n``. Exactly one reply
    follows each request, in order; there is no batching and no concurrency.

Request
    ``{"jsonrpc": "2.0", "id": ID, "method": NAME, "params": {...}}``. ``id`` is a string,
    an integer or null; ``params`` is always an object of named parameters (positional
    arrays are refused). The methods and their parameters are:

    =====================  ==========================================================
    method                 params
    =====================  ==========================================================
    ``server_info_query``  ``tvm_version`` (str)
    ``generate_project``   ``model_library_format_path`` (str), ``standalone_crt_dir``
                           (str), ``project_dir`` (str), ``options`` (object)
    ``build``              ``options`` (object)
    ``flash``              ``options`` (object)
    ``open_transport``     ``options`` (object)
    ``close_transport``    (none)
    ``read_transport``     ``n`` (int), ``timeout_sec`` (number or null)
    ``write_transport``    ``data`` (str, base85), ``timeout_sec`` (number or null)
    =====================  ==========================================================

Successful reply
    ``{"jsonrpc": "2.0", "id": ID, "result": R}`` where ``R`` is:

    * ``server_info_query``: ``{"platform_name": str, "is_template": bool,
      "model_library_format_path": str or null, "project_options": [OPTION, ...],
      "protocol_version": 1}``; each OPTION is an object with exactly the seven fields
      ``name, choices, default, type, required, optional, help`` (see `ProjectOption`).
    * ``open_transport``: ``{"timeouts": {"session_start_retry_timeout_sec": x,
      "session_start_timeout_sec": y, "session_established_timeout_sec": z}}``.
    * ``read_transport``: ``{"data": str}``, the bytes read, encoded with
      ``base64.b85encode`` (the same encoding ``write_transport`` uses for ``data``).
    * ``write_transport``: null, whatever the handler returned (as TVM's server does).
    * every other method: whatever the handler returned, normally null.

Error reply
    ``{"jsonrpc": "2.0", "id": ID, "error": {"code": C, "message": M, "data": D}}``.
    Malformed traffic gets the standard JSON-RPC codes (see `ErrorCode`): -32700 when the
    line is not UTF-8 JSON (``id`` is then null), -32600 when it is not a valid request
    object, -32601 for an unknown method, -32602 for missing, extra or ill-typed
    parameters, -32603 when the handler's result cannot be encoded. An exception raised by
    the handler gives code -32000 with ``message`` set to the exception's class name
    (`ServerError` and its subclasses may carry their own message) and ``data`` set to
    ``{"traceback": "<server-side traceback>"}``. A client maps the class names
    ``TransportClosedError``, ``IoTimeoutError`` and ``UnsupportedTVMVersionError`` back to
    those classes and any other -32000 error to `ServerError`.

Differences from TVM v0.18's server (checked by running both on the same requests; every
successful reply is byte-for-byte the same, and TVM's client behaves the same with either):

* A handler exception that is not a `ServerError` is sent with ``message`` set to its class
  name (``"ValueError"``); TVM's server sends ``"calling method <method>"``. Either becomes
  a plain ServerError in both clients; the class name makes a one-line error readable.
* After a line that is not JSON (-32700) or not a valid request (-32600) this server keeps
  serving, and echoes the request's ``id`` when it is readable; TVM's server stops (without
  a reply for -32700, with id null for -32600). The line framing is intact, so the next
  request can still be understood.
* Parameter types are checked for every method (-32602); TVM's server checks only build,
  flash and open_transport. ``standalone_crt_dir`` may be null here (this tool brings its
  own runtime), which TVM's server cannot take.
* Only the eight Project API methods can be called (else -32601); TVM's server looks any
  name up on the handler class. A request without ``id`` is answered with id null.
* The texts of the -326xx messages differ; clients act on the codes.
"""

from __future__ import annotations

import abc
import collections
import enum
import io
import json
import os
import select
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs milliseconds
if TYPE_CHECKING:  # pragma: no cover - annotations only
    import pathlib
    from collections.abc import Sequence
    from typing import Any, BinaryIO

PROTOCOL_VERSION = 1
"""The Project API protocol version spoken here, reported by ``server_info_query``."""

SERVER_PYTHON_FILENAME = "microtvm_api_server.py"
SERVER_SHELL_FILENAME = "microtvm_api_server.sh"
SERVER_LAUNCH_SCRIPT_FILENAME = "launch_microtvm_api_server.sh"
SERVER_FILENAMES = (SERVER_LAUNCH_SCRIPT_FILENAME, SERVER_PYTHON_FILENAME, SERVER_SHELL_FILENAME)
"""What makes a directory a template (or a generated project): one of these files, which
start its server. In the order a client prefers them, as TVM's: the launch script (it
prepares an environment and is given the Python script's path), the Python script, the
shell script."""

CLIENT_PID_ENV = "MICROTVM_PROJECT_API_CLIENT_PID"
"""Set by this package's client when it starts a server in a process group of its own: the
client's pid. `main` then leaves a watchdog in that group (`_watch_group`) and removes the
variable, so nothing the server starts inherits it."""

# The methods a client may call, with each named parameter and the JSON types it accepts.
# TVM derives this table from the handler's type hints at every call; a static table is
# faster to start and makes the wire contract visible in one place.
_NUMBER_OR_NULL = (int, float, type(None))
_METHOD_PARAMS: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "server_info_query": (("tvm_version", (str,)),),
    "generate_project": (
        ("model_library_format_path", (str,)),
        ("standalone_crt_dir", (str, type(None))),
        ("project_dir", (str,)),
        ("options", (dict,)),
    ),
    "build": (("options", (dict,)),),
    "flash": (("options", (dict,)),),
    "open_transport": (("options", (dict,)),),
    "close_transport": (),
    "read_transport": (("n", (int,)), ("timeout_sec", _NUMBER_OR_NULL)),
    "write_transport": (("data", (str,)), ("timeout_sec", _NUMBER_OR_NULL)),
}

_METHOD_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

_DEBUG = False  # set by main(--debug): log every request and reply to stderr


def _debug(fmt: str, *args: object) -> None:
    if _DEBUG:
        import logging

        logging.getLogger(__name__).debug(fmt, *args)


# ---------------------------------------------------------------------------------------
# Plain data exchanged with the handler
# ---------------------------------------------------------------------------------------

PROJECT_OPTION_FIELDS = ("name", "choices", "default", "type", "required", "optional", "help")

_ProjectOptionTuple = collections.namedtuple("ProjectOption", PROJECT_OPTION_FIELDS)


def _check_method_list(option: str, field: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"ProjectOption {option!r}: {field}= must be a list of Project API method names "
            f"such as ['generate_project', 'build']; got {value!r}"
        )
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"ProjectOption {option!r}: {field}= holds a non-string entry {item!r}")


class ProjectOption(_ProjectOptionTuple):
    """Describes one option a template accepts (``-o name=value`` on the command line).

    Fields (all seven are sent on the wire, as an object, in ``server_info_query``):

    name
        The option's key in the ``options`` objects of later calls.
    choices
        A list of the permitted values, or None for any value of the type.
    default
        The value the template uses when the option is not given (informational: the
        client does not substitute it).
    type
        ``"bool"``, ``"int"`` or ``"str"`` (how a client should parse a command-line value).
    required / optional
        Lists of method names (``generate_project``, ``build``, ``flash``,
        ``open_transport``) that need the option, or may use it. At least one of the two
        must be given, otherwise no client could know when to pass the option.
    help
        One line for ``--list-options``.

    Everything except the name is keyword-only, so a field added later cannot silently
    shift positional arguments.
    """

    __slots__ = ()

    def __new__(
        cls,
        name: str,
        *,
        choices: Sequence[Any] | None = None,
        default: Any = None,
        type: str | None = None,
        required: Sequence[str] | None = None,
        optional: Sequence[str] | None = None,
        help: str | None = None,
    ) -> ProjectOption:
        if not isinstance(name, str) or not name:
            raise ValueError(f"ProjectOption name must be a non-empty string; got {name!r}")
        if required is None and optional is None:
            raise ValueError(
                f"ProjectOption {name!r}: give required= or optional= (or both), the methods "
                "that need or accept this option"
            )
        _check_method_list(name, "required", required)
        _check_method_list(name, "optional", optional)
        return super().__new__(cls, name, choices, default, type, required, optional, help)

    def __getnewargs_ex__(self) -> tuple[tuple[str], dict[str, Any]]:
        # Lets copy and pickle rebuild the option through the keyword-only constructor.
        fields = dict(self._asdict())
        return (fields.pop("name"),), fields

    def replace(self, attributes: dict[str, Any]) -> ProjectOption:
        """Return a copy with the fields in ``attributes`` replaced (validated again)."""
        unknown = sorted(set(attributes) - set(PROJECT_OPTION_FIELDS))
        if unknown:
            raise ValueError(f"ProjectOption {self.name!r}: no such field(s): {', '.join(unknown)}")
        fields = self._asdict()
        fields.update(attributes)
        name = fields.pop("name")
        return ProjectOption(name, **fields)

    def to_json(self) -> dict[str, Any]:
        """The option as it travels on the wire: an object with all seven fields."""
        return {
            "name": self.name,
            "choices": None if self.choices is None else list(self.choices),
            "default": self.default,
            "type": self.type,
            "required": None if self.required is None else list(self.required),
            "optional": None if self.optional is None else list(self.optional),
            "help": self.help,
        }


ServerInfo = collections.namedtuple(
    "ServerInfo", ("platform_name", "is_template", "model_library_format_path", "project_options")
)
ServerInfo.__doc__ = """What ``server_info_query`` returns.

platform_name: short name of the platform (``"host"``, ``"zephyr"``...).
is_template: True when the server runs from the template directory, False when it runs
    from a generated project (generate_project copies the server into the project).
model_library_format_path: in a generated project, the path of the MLF archive it was
    generated from; None in a template.
project_options: list of `ProjectOption` the server accepts.
"""

#: What generate_project copies the model to, beside the server: what tells a generated
#: project (it has one) from its template (it has none) in `template_server_info`.
PROJECT_MLF_FILENAME = "model.tar"


def template_server_info(platform_name: str, server_dir: str, project_options: Sequence[ProjectOption]
                         ) -> ServerInfo:
    """The server_info_query answer of a template whose generate_project copies the model
    to `PROJECT_MLF_FILENAME` beside the server: a generated project (with the path of that
    copy) when it is there, the template (path None) when it is not."""
    mlf = os.path.join(server_dir, PROJECT_MLF_FILENAME)
    project = os.path.exists(mlf)
    return ServerInfo(platform_name=platform_name, is_template=not project,
                      model_library_format_path=mlf if project else None,
                      project_options=list(project_options))


TransportTimeouts = collections.namedtuple(
    "TransportTimeouts",
    ("session_start_retry_timeout_sec", "session_start_timeout_sec", "session_established_timeout_sec"),
)
TransportTimeouts.__doc__ = """What ``open_transport`` returns: how patient the host side should be.

session_start_retry_timeout_sec: seconds to wait for the device to answer a session-start
    message before sending it again (0 disables retrying).
session_start_timeout_sec: seconds after which establishing a session is given up.
session_established_timeout_sec: seconds to wait for each reply once a session runs
    (0 disables the limit).
"""


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class ErrorCode(enum.IntEnum):
    """The ``code`` of a JSON-RPC error object: the standard codes plus one server code."""

    SERVER_ERROR = -32000  # the handler raised while serving a valid request
    PARSE_ERROR = -32700  # the line is not UTF-8 JSON
    INVALID_REQUEST = -32600  # JSON, but not a JSON-RPC 2.0 request object
    METHOD_NOT_FOUND = -32601  # no such Project API method
    INVALID_PARAMS = -32602  # a parameter is missing, extra or of the wrong type
    INTERNAL_ERROR = -32603  # the server could not encode the handler's result


class JSONRPCError(Exception):
    """An error that travels as a JSON-RPC error object (``code``, ``message``, ``data``).

    ``client_context`` is set on the client side only: a short phrase such as
    ``"calling method build"`` prefixed to the text.
    """

    def __init__(self, code: int, message: str, data: Any = None, client_context: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.client_context = client_context

    def to_json(self) -> dict[str, Any]:
        """The error object placed in the reply's ``error`` member."""
        return {"code": int(self.code), "message": self.message, "data": self.data}

    def __str__(self) -> str:
        text = f"JSON-RPC error # {int(self.code)}: {self.message}"
        if isinstance(self.data, dict) and self.data.get("traceback"):
            text += "\n" + str(self.data["traceback"]).rstrip("\n")
        elif self.data:
            text += f"\n{self.data!r}"
        if self.client_context:
            text = f"{self.client_context}: {text}"
        return text

    @classmethod
    def from_json(cls, client_context: str | None, json_error: dict[str, Any]) -> JSONRPCError:
        """Rebuild the exception a reply's ``error`` object describes (used by clients).

        Code -32000 becomes `ServerError` or, when ``message`` names one, the subclass of
        that name; any other code becomes a plain `JSONRPCError`.
        """
        code = json_error.get("code")
        if code == ErrorCode.SERVER_ERROR:
            return ServerError.from_json(client_context, json_error)
        return cls(code, json_error.get("message"), json_error.get("data"), client_context=client_context)


class ServerError(JSONRPCError):
    """The handler failed while serving a valid request (code -32000).

    A subclass travels by name: its ``message`` is the class name, so the client can raise
    the same class again. A plain ServerError carries a free-text message (on our server,
    the class name of the exception the handler raised). ``data`` holds
    ``{"traceback": ...}``, the server-side traceback.
    """

    def __init__(self, message: str | None = None, data: Any = None, client_context: str | None = None):
        if message is None:
            message = type(self).__name__
        super().__init__(ErrorCode.SERVER_ERROR, message, data, client_context)

    @classmethod
    def from_exception(cls, exc: BaseException, **kw: Any) -> ServerError:
        """Wrap an arbitrary exception, recording its traceback in ``data``."""
        error = cls(**kw)
        error.set_traceback(_format_traceback(exc))
        return error

    def set_traceback(self, traceback_lines: Sequence[str]) -> None:
        """Store a formatted traceback as ``data["traceback"]`` unless one is already set."""
        if self.data is None:
            self.data = {}
        if isinstance(self.data, dict) and "traceback" not in self.data:
            self.data["traceback"] = "(on the Project API server) " + "".join(traceback_lines)

    @classmethod
    def from_json(cls, client_context: str | None, json_error: dict[str, Any]) -> ServerError:
        """Rebuild a server error: the subclass named by ``message`` if there is one."""
        message = json_error.get("message")
        data = json_error.get("data")
        pending = list(cls.__subclasses__())
        while pending:
            sub = pending.pop(0)
            if sub.__name__ == message:
                return sub(data=data, client_context=client_context)
            pending.extend(sub.__subclasses__())
        return cls(message if isinstance(message, str) else repr(message), data, client_context)


def _format_traceback(exc: BaseException) -> list[str]:
    """The traceback of ``exc`` without this module's own frames (they say nothing)."""
    import traceback

    info = traceback.TracebackException.from_exception(exc)
    frames = [frame for frame in info.stack if frame.filename != __file__]
    if frames:
        info.stack = traceback.StackSummary.from_list(frames)
    return list(info.format())


class TransportClosedError(ServerError):
    """The transport cannot carry data any more (descriptor closed, cable pulled, EOF)."""


class IoTimeoutError(ServerError):
    """A transport read or write could not make progress before its timeout.

    A read times out when *no* byte arrived in time; a write when *no* byte could be
    written (a partial write returns the count instead).
    """


class UnsupportedTVMVersionError(ServerError):
    """``server_info_query`` was given a TVM version this template does not support."""


# ---------------------------------------------------------------------------------------
# The handler interface
# ---------------------------------------------------------------------------------------


class ProjectAPIHandler(metaclass=abc.ABCMeta):
    """What a template implements: one method per Project API call.

    ``options`` arguments are plain dicts ``{option name: value}`` holding only what the
    client chose to send. Raise any exception to report failure: the client receives it
    as a -32000 error named after the exception's class, with this server's traceback.
    """

    @abc.abstractmethod
    def server_info_query(self, tvm_version: str) -> ServerInfo:
        """Describe the platform and its options; the first call a client makes.

        ``tvm_version`` is the client's version string (TVM's ``tvm.__version__``, or this
        tool's version). Raise `UnsupportedTVMVersionError` to refuse it.
        """

    @abc.abstractmethod
    def generate_project(
        self,
        model_library_format_path: pathlib.Path,
        standalone_crt_dir: pathlib.Path,
        project_dir: pathlib.Path,
        options: dict,
    ) -> None:
        """Create ``project_dir`` (which does not exist yet) from the MLF archive.

        The generated project must contain a copy of the server so that later calls
        (build, flash, transport) run from the project directory. ``standalone_crt_dir``
        is TVM's C runtime directory (may be None under this tool, which has its own).
        """

    @abc.abstractmethod
    def build(self, options: dict) -> None:
        """Compile the generated project (the server runs inside the project directory)."""

    @abc.abstractmethod
    def flash(self, options: dict) -> None:
        """Program the built firmware onto the device (or record it, for emulators)."""

    @abc.abstractmethod
    def open_transport(self, options: dict) -> TransportTimeouts:
        """Open the byte channel to the running firmware and say how patient to be."""

    @abc.abstractmethod
    def close_transport(self) -> None:
        """Close the byte channel; a no-op when it is not open."""

    @abc.abstractmethod
    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        """Return between 1 and ``n`` bytes from the device.

        ``timeout_sec`` None blocks until data arrives; 0 polls. Raise `IoTimeoutError`
        when no byte arrived in time and `TransportClosedError` when the channel is gone.
        """

    @abc.abstractmethod
    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        """Write all of ``data`` to the device or raise.

        Raise `IoTimeoutError` when the data could not be written in time and
        `TransportClosedError` when the channel is gone.
        """


class DelegatingProjectAPIHandler(ProjectAPIHandler):
    """A handler that answers `server_info_query` itself and hands every other call to a
    full handler built on first use (not part of TVM's API; a convenience for templates).

    Why: a server is launched for every query and most queries are server_info_query,
    which only needs the options. A template whose script subclasses this and keeps its
    bulk elsewhere (imported inside `create_full_handler`) answers it at the cost of a
    bare interpreter start. Subclasses implement `server_info_query` and
    `create_full_handler`.
    """

    _full_handler: ProjectAPIHandler | None = None

    def create_full_handler(self) -> ProjectAPIHandler:
        """Build the handler that serves generate_project, build, flash and the transport."""
        raise NotImplementedError

    def full_handler(self) -> ProjectAPIHandler:
        if self._full_handler is None:
            self._full_handler = self.create_full_handler()
        return self._full_handler

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        return self.full_handler().generate_project(
            model_library_format_path, standalone_crt_dir, project_dir, options
        )

    def build(self, options):
        return self.full_handler().build(options)

    def flash(self, options):
        return self.full_handler().flash(options)

    def open_transport(self, options):
        return self.full_handler().open_transport(options)

    def close_transport(self):
        if self._full_handler is not None:  # nothing can be open before another call ran
            self._full_handler.close_transport()

    def read_transport(self, n, timeout_sec):
        return self.full_handler().read_transport(n, timeout_sec)

    def write_transport(self, data, timeout_sec):
        return self.full_handler().write_transport(data, timeout_sec)


class LazyImplementation:
    """Runs a template's bulk file in its server script's namespace on first use (not
    part of TVM's API; a convenience for templates, used with DelegatingProjectAPIHandler).

    Why a namespace and not an import: a name replaced on the script's module (a test's
    monkeypatch) is then the one the implementation sees, and the module reads as one
    file. Why not keep it all in the script: a script is compiled at every start, while
    `SourceFileLoader.get_code` reads and writes the file's byte code in ``__pycache__``.

        _IMPL = server.LazyImplementation(globals(), "mytemplate_impl.py")
        _load_impl, __getattr__ = _IMPL.load, _IMPL.module_getattr  # the namespace; names on demand
        Handler = _IMPL.handler("mytemplate", "MyTemplateHandler", PROJECT_OPTIONS)
    """

    def __init__(self, namespace: dict[str, Any], filename: str) -> None:
        self.namespace = namespace
        self.path = os.path.join(os.path.dirname(os.path.realpath(namespace["__file__"])), filename)
        self.loaded = False

    def handler(self, platform_name: str, full_handler_name: str, project_options: Any
                ) -> type[LazyTemplateHandler]:
        """The script's `Handler` class (see `LazyTemplateHandler.for_template`)."""
        return LazyTemplateHandler.for_template(platform_name, self, full_handler_name, project_options)

    def load(self) -> dict[str, Any]:
        if not self.loaded:
            import importlib.machinery

            name = os.path.splitext(os.path.basename(self.path))[0]
            code = importlib.machinery.SourceFileLoader(name, self.path).get_code(name)
            self.loaded = True  # while it runs, its own lookups must not load it again
            try:
                exec(code, self.namespace)  # noqa: S102 - the template's own file, by design
            except BaseException:
                self.loaded = False  # a half-run file is not a loaded one
                raise
        return self.namespace

    def module_getattr(self, name: str) -> Any:
        """A module-level ``__getattr__``: a name of the implementation, asked for first."""
        if not name.startswith("__") and not self.loaded:
            namespace = self.load()
            if name in namespace:
                return namespace[name]
        raise AttributeError(f"module {self.namespace.get('__name__')!r} has no attribute {name!r}")


class LazyTemplateHandler(DelegatingProjectAPIHandler):
    """The handler of a template script that keeps its bulk in a `LazyImplementation`
    (not part of TVM's API): `server_info_query` is `template_server_info` of the
    script's directory, and every other call goes to the implementation's handler class,
    built on first use. A script makes its `Handler` with `for_template`.
    """

    platform_name: str = ""
    implementation: LazyImplementation
    full_handler_name: str = ""
    project_options: Any = ()  # the options, or a function returning them (read per query)

    @classmethod
    def for_template(cls, platform_name: str, implementation: LazyImplementation, full_handler_name: str,
                     project_options: Any) -> type[LazyTemplateHandler]:
        """A `Handler` class for the script: ``Handler = server.LazyTemplateHandler.for_template(
        "host", _IMPL, "HostHandler", PROJECT_OPTIONS)``; the implementation's handler class
        (named `full_handler_name`) subclasses it."""
        return type("Handler", (cls,), {
            "__doc__": f"The {platform_name} template's Project API handler: server_info_query here, "
                       f"every other call in {full_handler_name} ({os.path.basename(implementation.path)}).",
            "__module__": implementation.namespace.get("__name__", __name__),
            "platform_name": platform_name, "implementation": implementation,
            "full_handler_name": full_handler_name, "project_options": staticmethod(project_options)
            if callable(project_options) else project_options,
        })

    def create_full_handler(self) -> ProjectAPIHandler:
        return self.implementation.load()[self.full_handler_name]()

    def server_info_query(self, tvm_version: str) -> ServerInfo:
        options = self.project_options() if callable(self.project_options) else self.project_options
        return template_server_info(self.platform_name, os.path.dirname(self.implementation.path), options)


def find_executable(name: str) -> str | None:
    """`shutil.which(name)` for a bare command name, without importing shutil (and the
    compression modules it loads) into a server that may only answer server_info_query."""
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    seen = set()
    for directory in (path or "").split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.F_OK | os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


# ---------------------------------------------------------------------------------------
# The server loop
# ---------------------------------------------------------------------------------------


class _RequestError(Exception):
    """Internal: a request was refused before reaching the handler."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.error = JSONRPCError(code, message, None)


class ProjectAPIServer:
    """Serves Project API requests from ``read_file`` to ``handler``, one at a time.

    ``read_file``/``write_file`` are binary file objects (the two pipes, normally). The
    server is single-threaded and blocking: it reads one line, answers it, and repeats.
    """

    _PROTOCOL_VERSION = PROTOCOL_VERSION

    def __init__(self, read_file: BinaryIO, write_file: BinaryIO, handler: ProjectAPIHandler):
        # Unbuffered files would make readline() fetch one byte per system call; only this
        # server reads the request pipe, so buffering it is safe.
        if isinstance(read_file, io.RawIOBase):
            read_file = io.BufferedReader(read_file)
        self._read_file = read_file
        self._write_file = write_file
        self._handler = handler

    def serve_forever(self) -> None:
        """Serve requests until the client closes its end (EOF) or stops reading."""
        while self.serve_one_request():
            pass

    def serve_one_request(self) -> bool:
        """Read, handle and answer one request.

        Returns False when there is nothing more to serve (EOF on the request stream, or
        the reply could not be written because the client went away), True otherwise.
        Errors in the request or in the handler are answered, never raised.
        """
        try:
            line = self._read_file.readline()
        except (OSError, ValueError):
            return False
        if not line:
            return False
        _debug("request <- %r", line)
        try:
            request_id = None
            request = self._parse(line)
            candidate = request.get("id")
            if isinstance(candidate, (str, int)) and not isinstance(candidate, bool):
                request_id = candidate  # echoed in every reply, errors included
            method, params = self._validate(request)
            reply = {"jsonrpc": "2.0", "id": request_id, "result": self._dispatch(method, params)}
            text = self._encode(reply)
        except _RequestError as exc:
            text = self._error_reply(request_id, exc.error)
        except JSONRPCError as exc:
            if isinstance(exc, ServerError):
                exc.set_traceback(_format_traceback(exc))
            text = self._error_reply(request_id, exc)
        except Exception as exc:  # noqa: BLE001 - every handler failure goes back to the client
            text = self._error_reply(request_id, ServerError.from_exception(exc, message=type(exc).__name__))
        _debug("reply -> %s", text)
        try:
            self._write_file.write(text.encode("utf-8"))
            flush = getattr(self._write_file, "flush", None)
            if flush is not None:
                flush()
        except (OSError, ValueError):
            return False
        return True

    # -- request checking ---------------------------------------------------------------

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _RequestError(ErrorCode.PARSE_ERROR, f"request is not UTF-8 JSON: {exc}") from None
        if not isinstance(request, dict):
            raise _RequestError(
                ErrorCode.INVALID_REQUEST, f"request: want a JSON object; got {type(request).__name__}"
            )
        return request

    @staticmethod
    def _validate(request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        request_id = request.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
            raise _RequestError(
                ErrorCode.INVALID_REQUEST,
                f'request["id"]: want a string, integer or null; got {request_id!r}',
            )
        if request.get("jsonrpc") != "2.0":
            raise _RequestError(
                ErrorCode.INVALID_REQUEST, f'request["jsonrpc"]: want "2.0"; got {request.get("jsonrpc")!r}'
            )
        method = request.get("method")
        if not isinstance(method, str) or not method or not set(method) <= _METHOD_NAME_CHARS:
            raise _RequestError(
                ErrorCode.INVALID_REQUEST,
                f'request["method"]: want a name made of [A-Za-z0-9_]; got {method!r}',
            )
        params = request.get("params")
        if not isinstance(params, dict):
            raise _RequestError(
                ErrorCode.INVALID_REQUEST,
                f'request["params"]: want an object of named parameters; got {type(params).__name__}',
            )
        if method not in _METHOD_PARAMS:
            raise _RequestError(
                ErrorCode.METHOD_NOT_FOUND,
                f"{method}: no such method; the Project API has {', '.join(_METHOD_PARAMS)}",
            )
        for name, types in _METHOD_PARAMS[method]:
            if name not in params:
                raise _RequestError(ErrorCode.INVALID_PARAMS, f"method {method}: parameter {name} not given")
            value = params[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise _RequestError(
                    ErrorCode.INVALID_PARAMS,
                    f"method {method}: parameter {name}: want {want}; got {type(value).__name__}",
                )
        extra = sorted(set(params) - {name for name, _ in _METHOD_PARAMS[method]})
        if extra:
            raise _RequestError(
                ErrorCode.INVALID_PARAMS, f"method {method}: extra parameters: {', '.join(extra)}"
            )
        return method, params

    # -- calling the handler --------------------------------------------------------------

    def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        handler = self._handler
        if method == "server_info_query":
            return _server_info_to_json(handler.server_info_query(params["tvm_version"]))
        if method == "generate_project":
            import pathlib

            crt = params["standalone_crt_dir"]
            return handler.generate_project(
                pathlib.Path(params["model_library_format_path"]),
                None if crt is None else pathlib.Path(crt),
                pathlib.Path(params["project_dir"]),
                params["options"],
            )
        if method == "open_transport":
            return {"timeouts": _timeouts_to_json(handler.open_transport(params["options"]))}
        if method == "read_transport":
            import base64

            data = handler.read_transport(params["n"], params["timeout_sec"])
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"read_transport must return bytes; got {type(data).__name__}")
            return {"data": base64.b85encode(bytes(data)).decode("ascii")}
        if method == "write_transport":
            import base64

            try:
                data = base64.b85decode(params["data"])
            except ValueError as exc:
                raise _RequestError(
                    ErrorCode.INVALID_PARAMS, f"method write_transport: parameter data is not base85: {exc}"
                ) from None
            # TVM's server discards what the handler returns (some return a byte count) and
            # always answers null; so do we, so that both servers send the same bytes.
            handler.write_transport(data, params["timeout_sec"])
            return None
        return getattr(handler, method)(**params)

    # -- replies --------------------------------------------------------------------------

    @staticmethod
    def _encode(reply: dict[str, Any]) -> str:
        try:
            return json.dumps(reply) + "\n"
        except (TypeError, ValueError) as exc:
            raise _RequestError(
                ErrorCode.INTERNAL_ERROR, f"the handler's result cannot be sent as JSON: {exc}"
            ) from None

    @staticmethod
    def _error_reply(request_id: Any, error: JSONRPCError) -> str:
        body = error.to_json()
        try:
            return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": body}) + "\n"
        except (TypeError, ValueError):
            body["data"] = repr(body["data"])
            return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": body}) + "\n"


def _timeouts_to_json(timeouts: Any) -> dict[str, Any]:
    """open_transport's return value -> the wire object: exactly the three TransportTimeouts keys.

    TVM's ``tvm.micro.project`` rebuilds the reply with ``TransportTimeouts(**timeouts)``, so a
    missing or extra key would break a TVM client after the transport opened; a handler that
    returns a dict is therefore checked here, where the template author sees the error.
    """
    if isinstance(timeouts, tuple) and hasattr(timeouts, "_asdict"):
        timeouts = dict(timeouts._asdict())  # ours, or another namedtuple with the same fields
    if isinstance(timeouts, dict):
        try:
            timeouts = TransportTimeouts(**timeouts)
        except TypeError as exc:
            raise TypeError(
                "open_transport must return TransportTimeouts (keys "
                f"{', '.join(TransportTimeouts._fields)}); got {timeouts!r}: {exc}"
            ) from None
    if not isinstance(timeouts, TransportTimeouts):
        raise TypeError(f"open_transport must return TransportTimeouts; got {timeouts!r}")
    return dict(timeouts._asdict())


def _server_info_to_json(info: Any) -> dict[str, Any]:
    """ServerInfo -> the wire object (paths as strings, options as seven-field objects)."""
    if isinstance(info, tuple) and hasattr(info, "_asdict"):
        result = dict(info._asdict())
    elif isinstance(info, dict):
        result = dict(info)
    else:
        raise TypeError(f"server_info_query must return ServerInfo; got {info!r}")
    if result.get("model_library_format_path") is not None:
        result["model_library_format_path"] = str(result["model_library_format_path"])
    options = []
    for option in result.get("project_options") or ():
        if isinstance(option, ProjectOption):
            options.append(option.to_json())
        elif isinstance(option, tuple) and hasattr(option, "_asdict"):
            options.append({field: option._asdict().get(field) for field in PROJECT_OPTION_FIELDS})
        elif isinstance(option, dict):
            options.append({field: option.get(field) for field in PROJECT_OPTION_FIELDS})
        else:
            raise TypeError(f"server_info_query: project_options holds {option!r}, not a ProjectOption")
    result["project_options"] = options
    result.setdefault("protocol_version", PROTOCOL_VERSION)
    return result


# ---------------------------------------------------------------------------------------
# Helpers for transport implementations
# ---------------------------------------------------------------------------------------


def _wait(fd: int, for_write: bool, end_time: float | None) -> None:
    """Block until ``fd`` is ready, or raise IoTimeoutError once ``end_time`` has passed."""
    timeout = None if end_time is None else max(0.0, end_time - time.monotonic())
    rlist, wlist = ([], [fd]) if for_write else ([fd], [])
    ready = select.select(rlist, wlist, rlist + wlist, timeout)
    if not any(ready):
        raise IoTimeoutError()


def read_with_timeout(fd: int, n: int, timeout_sec: float | None) -> bytes:
    """Read between 1 and ``n`` bytes from descriptor ``fd``, waiting at most ``timeout_sec``.

    For a transport's ``read_transport``. ``timeout_sec`` None waits indefinitely, 0 polls.
    Raises `IoTimeoutError` when nothing arrived in time and `TransportClosedError` at
    end-of-file. Unlike TVM's helper this one never closes ``fd``: its owner does. Works
    with blocking and non-blocking descriptors (POSIX only: it relies on select()).
    """
    end_time = None if timeout_sec is None else time.monotonic() + timeout_sec
    while True:
        _wait(fd, False, end_time)
        try:
            data = os.read(fd, n)
            break
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            raise TransportClosedError(data={"os_error": str(exc)}) from exc
    if not data:
        raise TransportClosedError()
    return data


def write_with_timeout(fd: int, data: bytes, timeout_sec: float | None) -> int:
    """Write ``data`` to descriptor ``fd`` within ``timeout_sec``; return the count written.

    For a transport's ``write_transport``. Returns ``len(data)`` when everything went out,
    fewer when the time ran out after some bytes were written. Raises `IoTimeoutError`
    when not a single byte could be written in time and `TransportClosedError` when the
    reader is gone. With a blocking descriptor the data is written in chunks of at most
    ``select.PIPE_BUF`` bytes so that a ready descriptor never blocks.
    """
    end_time = None if timeout_sec is None else time.monotonic() + timeout_sec
    view = memoryview(bytes(data))
    chunk = len(view) if not os.get_blocking(fd) else getattr(select, "PIPE_BUF", 512)
    written = 0
    while written < len(view):
        try:
            _wait(fd, True, end_time)
        except IoTimeoutError:
            if written:
                return written
            raise
        try:
            count = os.write(fd, view[written : written + chunk])
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:  # BrokenPipeError, EBADF...
            raise TransportClosedError(data={"os_error": str(exc)}) from exc
        if count == 0:
            raise TransportClosedError()
        written += count
    return written


# ---------------------------------------------------------------------------------------
# Options shared by most templates
# ---------------------------------------------------------------------------------------


def default_project_options(**overrides: dict[str, Any]) -> list[ProjectOption]:
    """The options most templates share, as TVM defines them.

    Each keyword names one of these options and maps to a dict of fields to replace, e.g.
    ``default_project_options(board={"choices": ["a", "b"]}, verbose={"optional":
    ["generate_project", "build"]})``. An unknown option name raises ValueError.
    """
    options = [
        ProjectOption(
            "verbose",
            optional=["generate_project"],
            type="bool",
            default=False,
            help="Run the build with verbose output.",
        ),
        ProjectOption(
            "project_type",
            required=["generate_project"],
            type="str",
            help="Kind of project to generate (e.g. host_driven, aot_standalone_demo).",
        ),
        ProjectOption(
            "board",
            required=["generate_project"],
            type="str",
            help="Name of the board to build for.",
        ),
        ProjectOption(
            "cmsis_path",
            optional=["generate_project"],
            type="str",
            default=None,
            help="Path to a CMSIS (CMSIS_5 / CMSIS-NN) checkout.",
        ),
        ProjectOption(
            "warning_as_error",
            optional=["generate_project"],
            type="bool",
            default=False,
            help="Treat compiler warnings as errors.",
        ),
        ProjectOption(
            "compile_definitions",
            optional=["generate_project"],
            type="str",
            default=None,
            help="Extra preprocessor definitions added to the project's build.",
        ),
        ProjectOption(
            "extra_files_tar",
            optional=["generate_project"],
            type="str",
            default=None,
            help="A tar archive unpacked into the project directory by generate_project.",
        ),
    ]
    by_name = {option.name: index for index, option in enumerate(options)}
    for name, fields in overrides.items():
        if name not in by_name:
            raise ValueError(
                f"default_project_options: no default option {name!r}; the defaults are {', '.join(by_name)}"
            )
        if not isinstance(fields, dict):
            raise ValueError(f"default_project_options: {name}= must be a dict of fields; got {fields!r}")
        options[by_name[name]] = options[by_name[name]].replace(fields)
    return options


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------

_USAGE = "usage: microtvm_api_server.py --read-fd N --write-fd N [--debug]"


def _parse_args(argv: Sequence[str]) -> tuple[int, int, bool]:
    """Parse the three launch flags (argparse alone would cost more than the rest)."""
    read_fd = write_fd = None
    debug = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(
                _USAGE + "\n\nServe Project API requests read from one descriptor, "
                "replying on the other (JSON-RPC 2.0, one object per line)."
            )
            raise SystemExit(0)
        if arg == "--debug":
            debug = True
            continue
        key, eq, value = arg.partition("=")
        if key not in ("--read-fd", "--write-fd"):
            raise SystemExit(f"{_USAGE}\nerror: unrecognised argument {arg!r}")
        if not eq:
            if not args:
                raise SystemExit(f"{_USAGE}\nerror: {key} needs a descriptor number")
            value = args.pop(0)
        try:
            number = int(value)
        except ValueError:
            raise SystemExit(f"{_USAGE}\nerror: {key}: not a descriptor number: {value!r}") from None
        if key == "--read-fd":
            read_fd = number
        else:
            write_fd = number
    if read_fd is None or write_fd is None:
        raise SystemExit(f"{_USAGE}\nerror: --read-fd and --write-fd are required")
    return read_fd, write_fd, debug


def main(handler: ProjectAPIHandler, argv: Sequence[str] | None = None) -> None:
    """Run a Project API server for ``handler`` until the client hangs up.

    ``argv`` defaults to ``sys.argv[1:]``: ``--read-fd N --write-fd N [--debug]``.
    ``--debug`` logs every request and reply to stderr. If the template has imported
    ``logging`` already, the root logger is set up (INFO, stderr) as TVM's server does,
    so the template's log messages are seen; otherwise logging is not even imported.
    """
    global _DEBUG
    read_fd, write_fd, debug = _parse_args(sys.argv[1:] if argv is None else argv)
    _watch_group()
    if debug or "logging" in sys.modules:
        import logging

        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr)
    _DEBUG = debug
    with os.fdopen(read_fd, "rb") as read_file, os.fdopen(write_fd, "wb", buffering=0) as write_file:
        try:
            ProjectAPIServer(read_file, write_file, handler).serve_forever()
        except KeyboardInterrupt:
            # Ctrl-C reaches the whole process group; the client reports it (one line), so
            # the server leaves quietly with the shell's status for SIGINT
            raise SystemExit(130) from None


_WATCHDOG_PIPE: int | None = None  # the server's end of the watchdog's lifeline, never closed


def _watch_group() -> None:
    """Leave a watchdog process in the server's process group that kills the group (SIGKILL)
    as soon as the server or the client exits.

    Only when our client started the server in a group of its own (`CLIENT_PID_ENV`, and
    the group is its session's: a launch script may lead it). Then the build tools and
    emulators the server starts in its group never outlive it, even when the server is
    killed with SIGKILL (by the kernel when the client dies, or by the OOM killer), which
    leaves the server itself no chance to clean up. The watchdog is forked before the
    server starts any thread; it holds only the read end of a pipe whose write end only
    the server has (not inherited across exec), and a pidfd of the client; it closes every
    other descriptor, so it keeps no pipe of the protocol or of stderr open.
    """
    global _WATCHDOG_PIPE
    client = os.environ.pop(CLIENT_PID_ENV, None)
    if client is None or not hasattr(os, "fork") or _WATCHDOG_PIPE is not None:
        return
    try:
        client_pid = int(client)
        if os.getpgrp() != os.getsid(0):
            return  # not in the group our client made: killing it could hit a stranger
        lifeline, _WATCHDOG_PIPE = os.pipe()
        pid = os.fork()
    except (ValueError, OSError):
        return
    if pid:
        os.close(lifeline)
        return
    try:  # the watchdog: never returns
        watched = [lifeline]
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                watched.append(pidfd_open(client_pid))
            except OSError:
                watched = []  # the client is gone already
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        keep = sorted({0, 1, 2, *watched})
        for low, high in zip(keep, [*keep[1:], 1 << 20], strict=True):
            os.closerange(low + 1, high)
        while watched:
            try:
                select.select(watched, [], [])
                break
            except InterruptedError:
                continue
        os.killpg(0, 9)  # SIGKILL (9 on every POSIX system), this watchdog included
    finally:
        os._exit(0)
