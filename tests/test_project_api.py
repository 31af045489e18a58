"""Project API server and client in one process: wire bytes, round trips, error paths.

The server side is driven with literal request lines (checking the exact JSON that goes
back); the client side runs against a `ProjectAPIServer` in a thread over real pipes,
or against a scripted fake server that misbehaves on purpose.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import pathlib
import threading
import time

import pytest

from microtvm_tasks.errors import MicrotvmError
from microtvm_tasks.project_api import client, server

pytestmark = pytest.mark.timeout(20)


class RecordingHandler(server.ProjectAPIHandler):
    """Remembers every call; echoes transport writes back through reads (a loopback)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.loopback = bytearray()
        self.raise_on: dict[str, BaseException] = {}

    def _record(self, name: str, *args: object) -> None:
        self.calls.append((name, args))
        if name in self.raise_on:
            raise self.raise_on[name]

    def server_info_query(self, tvm_version):
        self._record("server_info_query", tvm_version)
        return server.ServerInfo(
            platform_name="recorder",
            is_template=True,
            model_library_format_path=None,
            project_options=[
                *server.default_project_options(board={"choices": ["a", "b"]}),
                server.ProjectOption("speed", optional=["build"], type="int", default=3, help="how fast"),
            ],
        )

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        self._record("generate_project", model_library_format_path, standalone_crt_dir, project_dir, options)

    def build(self, options):
        self._record("build", options)

    def flash(self, options):
        self._record("flash", options)
        return {"flashed": True}

    def open_transport(self, options):
        self._record("open_transport", options)
        return server.TransportTimeouts(
            session_start_retry_timeout_sec=2.0,
            session_start_timeout_sec=5,
            session_established_timeout_sec=0,
        )

    def close_transport(self):
        self._record("close_transport")

    def read_transport(self, n, timeout_sec):
        self._record("read_transport", n, timeout_sec)
        if not self.loopback:
            raise server.IoTimeoutError()
        data = bytes(self.loopback[:n])
        del self.loopback[:n]
        return data

    def write_transport(self, data, timeout_sec):
        self._record("write_transport", data, timeout_sec)
        self.loopback += data


# ---------------------------------------------------------------------------------------
# Server side: exact wire behaviour
# ---------------------------------------------------------------------------------------


def serve_lines(handler: server.ProjectAPIHandler, *lines: bytes) -> list[dict]:
    """Feed request lines to a server, return the decoded replies (one per line)."""
    out = io.BytesIO()
    srv = server.ProjectAPIServer(io.BytesIO(b"".join(lines)), out, handler)
    served = 0
    while srv.serve_one_request():
        served += 1
    assert served == len(lines)
    raw = out.getvalue()
    assert raw.endswith(b"\n") and raw.count(b"\n") == len(lines), raw
    return [json.loads(line) for line in raw.splitlines()]


def request(method: str, params: object, request_id: object = 1) -> bytes:
    return (
        json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode() + b"\n"
    )


def test_server_info_query_wire_format():
    handler = RecordingHandler()
    (reply,) = serve_lines(handler, request("server_info_query", {"tvm_version": "0.18.0"}, 7))
    assert reply["jsonrpc"] == "2.0" and reply["id"] == 7 and "error" not in reply
    result = reply["result"]
    assert result["protocol_version"] == 1
    assert result["platform_name"] == "recorder"
    assert result["is_template"] is True
    assert result["model_library_format_path"] is None
    options = {o["name"]: o for o in result["project_options"]}
    assert list(options) == [
        "verbose",
        "project_type",
        "board",
        "cmsis_path",
        "warning_as_error",
        "compile_definitions",
        "extra_files_tar",
        "speed",
    ]
    for option in options.values():
        assert set(option) == {"name", "choices", "default", "type", "required", "optional", "help"}
    assert options["board"] == {
        "name": "board",
        "choices": ["a", "b"],
        "default": None,
        "type": "str",
        "required": ["generate_project"],
        "optional": None,
        "help": options["board"]["help"],
    }
    assert options["speed"]["optional"] == ["build"] and options["speed"]["default"] == 3
    assert handler.calls == [("server_info_query", ("0.18.0",))]


def test_server_info_path_and_protocol_version_kept():
    class Generated(RecordingHandler):
        def server_info_query(self, tvm_version):
            return server.ServerInfo("x", False, pathlib.Path("/p/model.tar"), [])

    (reply,) = serve_lines(Generated(), request("server_info_query", {"tvm_version": "v"}))
    assert reply["result"] == {
        "platform_name": "x",
        "is_template": False,
        "model_library_format_path": "/p/model.tar",
        "project_options": [],
        "protocol_version": 1,
    }


def test_transport_payloads_are_base85():
    handler = RecordingHandler()
    payload = bytes(range(256))
    replies = serve_lines(
        handler,
        request("write_transport", {"data": base64.b85encode(payload).decode(), "timeout_sec": 1.5}, 1),
        request("read_transport", {"n": 300, "timeout_sec": None}, 2),
    )
    assert replies[0] == {"jsonrpc": "2.0", "id": 1, "result": None}
    assert replies[1]["result"] == {"data": base64.b85encode(payload).decode()}
    assert handler.calls[0] == ("write_transport", (payload, 1.5))
    assert handler.calls[1] == ("read_transport", (300, None))


def test_generate_project_gets_paths():
    handler = RecordingHandler()
    params = {
        "model_library_format_path": "/m.tar",
        "standalone_crt_dir": "/crt",
        "project_dir": "/p",
        "options": {"board": "a"},
    }
    (reply,) = serve_lines(handler, request("generate_project", params))
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": None}
    name, args = handler.calls[0]
    assert args == (pathlib.Path("/m.tar"), pathlib.Path("/crt"), pathlib.Path("/p"), {"board": "a"})
    assert all(isinstance(a, pathlib.Path) for a in args[:3])


def test_open_transport_reply_shape():
    (reply,) = serve_lines(RecordingHandler(), request("open_transport", {"options": {}}, "abc"))
    assert reply == {
        "jsonrpc": "2.0",
        "id": "abc",
        "result": {
            "timeouts": {
                "session_start_retry_timeout_sec": 2.0,
                "session_start_timeout_sec": 5,
                "session_established_timeout_sec": 0,
            }
        },
    }


@pytest.mark.parametrize(
    ("line", "code", "reply_id"),
    [
        (b"this is not json\n", -32700, None),
        (b"\xff\xfe{}\n", -32700, None),
        (b"[1, 2]\n", -32600, None),
        (b'{"jsonrpc": "1.0", "id": 3, "method": "build", "params": {"options": {}}}\n', -32600, 3),
        (b'{"jsonrpc": "2.0", "id": 3, "method": "bu ild", "params": {}}\n', -32600, 3),
        (b'{"jsonrpc": "2.0", "id": 3, "method": 5, "params": {}}\n', -32600, 3),
        (b'{"jsonrpc": "2.0", "id": 3, "method": "build", "params": [{}]}\n', -32600, 3),
        (b'{"jsonrpc": "2.0", "id": [3], "method": "build", "params": {"options": {}}}\n', -32600, None),
        (b'{"jsonrpc": "2.0", "id": 4, "method": "reboot", "params": {}}\n', -32601, 4),
        (b'{"jsonrpc": "2.0", "id": 4, "method": "build", "params": {}}\n', -32602, 4),
        (b'{"jsonrpc": "2.0", "id": 4, "method": "build", "params": {"options": 1}}\n', -32602, 4),
        (b'{"jsonrpc": "2.0", "id": 4, "method": "build", "params": {"options": {}, "x": 1}}\n', -32602, 4),
        (
            b'{"jsonrpc": "2.0", "id": 4, "method": "read_transport", '
            b'"params": {"n": true, "timeout_sec": 1}}\n',
            -32602,
            4,
        ),
        (
            b'{"jsonrpc": "2.0", "id": 4, "method": "read_transport", '
            b'"params": {"n": 1, "timeout_sec": "1"}}\n',
            -32602,
            4,
        ),
        (
            b'{"jsonrpc": "2.0", "id": 4, "method": "write_transport", '
            b'"params": {"data": "~~~", "timeout_sec": 1}}\n',
            -32602,
            4,
        ),
    ],
)
def test_invalid_requests_get_jsonrpc_codes_and_server_keeps_serving(line, code, reply_id):
    handler = RecordingHandler()
    replies = serve_lines(handler, line, request("close_transport", {}, 99))
    assert replies[0]["jsonrpc"] == "2.0" and replies[0]["id"] == reply_id
    assert replies[0]["error"]["code"] == code and isinstance(replies[0]["error"]["message"], str)
    assert "result" not in replies[0]
    assert replies[1] == {"jsonrpc": "2.0", "id": 99, "result": None}
    assert handler.calls == [("close_transport", ())]  # the bad request never reached the handler


def test_random_garbage_always_gets_exactly_one_error_reply():
    import random

    rng = random.Random(1234)
    pieces = [b"{", b"}", b'"jsonrpc"', b'"2.0"', b'"method"', b'"build"', b'"params"', b":", b",", b"[",
              b"]", b"null", b"1", b'"id"', b"\xff", b" ", b'"options"', b"{}", b"true"]  # fmt: skip
    lines = []
    for _ in range(300):
        line = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        lines.append(line + b"\n")
    handler = RecordingHandler()
    replies = serve_lines(handler, *lines)
    for reply in replies:
        assert reply["jsonrpc"] == "2.0" and ("result" in reply) != ("error" in reply)
        if "error" in reply:
            assert reply["error"]["code"] in {-32700, -32600, -32601, -32602, -32603, -32000}


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (server.TransportClosedError(), "TransportClosedError"),
        (server.IoTimeoutError(), "IoTimeoutError"),
        (server.UnsupportedTVMVersionError(), "UnsupportedTVMVersionError"),
        (server.ServerError("custom words"), "custom words"),
        (RuntimeError("boom"), "RuntimeError"),
        (KeyError("k"), "KeyError"),
    ],
)
def test_handler_exceptions_become_server_errors(exc, message):
    handler = RecordingHandler()
    handler.raise_on["build"] = exc
    (reply,) = serve_lines(handler, request("build", {"options": {}}, 5))
    assert reply["id"] == 5
    error = reply["error"]
    assert error["code"] == -32000 and error["message"] == message
    traceback = error["data"]["traceback"]
    assert "in _record" in traceback and type(exc).__name__ in traceback.splitlines()[-1]
    assert "serve_one_request" not in traceback  # the server's own frames are trimmed


def test_unencodable_result_is_internal_error():
    class Bad(RecordingHandler):
        def build(self, options):
            return {1, 2}

    (reply,) = serve_lines(Bad(), request("build", {"options": {}}, 2))
    assert reply["id"] == 2 and reply["error"]["code"] == -32603


def test_server_stops_at_eof_and_when_client_gone():
    srv = server.ProjectAPIServer(io.BytesIO(b""), io.BytesIO(), RecordingHandler())
    assert srv.serve_one_request() is False

    class Gone(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise BrokenPipeError()

    srv = server.ProjectAPIServer(io.BytesIO(request("close_transport", {})), Gone(), RecordingHandler())
    assert srv.serve_one_request() is False


# ---------------------------------------------------------------------------------------
# ProjectOption, default_project_options, helpers
# ---------------------------------------------------------------------------------------


def test_project_option_construction():
    option = server.ProjectOption("x", required=["build"], type="bool")
    assert option == ("x", None, None, "bool", ["build"], None, None)
    assert option.replace({"optional": ["flash"]}).optional == ["flash"]
    assert copy.deepcopy(option) == option
    with pytest.raises(ValueError, match="required= or optional="):
        server.ProjectOption("x", type="str")
    with pytest.raises(TypeError):
        server.ProjectOption("x", ["choice"], required=["build"])  # everything but name is keyword-only
    with pytest.raises(ValueError, match="list of Project API method names"):
        server.ProjectOption("x", required="build")
    with pytest.raises(ValueError, match="non-empty string"):
        server.ProjectOption("", optional=["build"])
    with pytest.raises(ValueError, match="required= or optional="):
        option.replace({"required": None})
    with pytest.raises(ValueError, match="no such field"):
        option.replace({"colour": "red"})


def test_default_project_options_and_overrides():
    names = [o.name for o in server.default_project_options()]
    assert names == [
        "verbose",
        "project_type",
        "board",
        "cmsis_path",
        "warning_as_error",
        "compile_definitions",
        "extra_files_tar",
    ]
    defaults = {o.name: o for o in server.default_project_options()}
    assert defaults["project_type"].required == ["generate_project"]
    assert defaults["verbose"].type == "bool" and defaults["verbose"].default is False
    changed = {
        o.name: o
        for o in server.default_project_options(
            project_type={"choices": ["host_driven"]}, verbose={"optional": ["build"]}
        )
    }
    assert changed["project_type"].choices == ["host_driven"]
    assert changed["verbose"].optional == ["build"]
    with pytest.raises(ValueError, match="no default option 'colour'"):
        server.default_project_options(colour={"default": 1})


def test_read_write_with_timeout():
    r, w = os.pipe()
    try:
        with pytest.raises(server.IoTimeoutError):
            server.read_with_timeout(r, 10, 0.05)
        assert server.write_with_timeout(w, b"hello", 1.0) == 5
        assert server.read_with_timeout(r, 3, 1.0) == b"hel"
        assert server.read_with_timeout(r, 10, None) == b"lo"
        # Fill the pipe: a write that cannot start times out, one that got partway returns its count.
        os.set_blocking(w, False)
        big = b"x" * (1 << 20)
        first = server.write_with_timeout(w, big, 0.1)
        assert 0 < first < len(big)
        with pytest.raises(server.IoTimeoutError):
            server.write_with_timeout(w, b"y", 0.05)
        os.close(w)
        w = -1
        drained = 0
        while True:
            try:
                drained += len(server.read_with_timeout(r, 1 << 16, 1.0))
            except server.TransportClosedError:
                break
        assert drained == first
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(server.TransportClosedError):
            server.write_with_timeout(w, b"z", 1.0)
    finally:
        os.close(w)


def test_main_argument_parsing(capsys):
    assert server._parse_args(["--read-fd", "3", "--write-fd=4"]) == (3, 4, False)
    assert server._parse_args(["--debug", "--write-fd", "9", "--read-fd", "8"]) == (8, 9, True)
    for bad in (["--read-fd", "3"], ["--read-fd", "x", "--write-fd", "4"], ["--bogus"], ["--read-fd"]):
        with pytest.raises(SystemExit) as info:
            server._parse_args(bad)
        assert "usage:" in str(info.value.code)


def test_jsonrpc_error_from_json_maps_names():
    for cls in (server.TransportClosedError, server.IoTimeoutError, server.UnsupportedTVMVersionError):
        exc = server.JSONRPCError.from_json("ctx", {"code": -32000, "message": cls.__name__, "data": None})
        assert type(exc) is cls
    exc = server.JSONRPCError.from_json("ctx", {"code": -32000, "message": "ValueError", "data": None})
    assert type(exc) is server.ServerError and exc.message == "ValueError"
    exc = server.JSONRPCError.from_json("ctx", {"code": -32601, "message": "nope"})
    assert type(exc) is server.JSONRPCError and exc.code == -32601


# ---------------------------------------------------------------------------------------
# Client against a real server in a thread
# ---------------------------------------------------------------------------------------


@pytest.fixture
def threaded():
    """A client connected over os.pipe pairs to a ProjectAPIServer running in a thread."""
    handler = RecordingHandler()
    server_read, client_write = os.pipe()
    client_read, server_write = os.pipe()
    srv = server.ProjectAPIServer(
        os.fdopen(server_read, "rb"), os.fdopen(server_write, "wb", buffering=0), handler
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    api = client.ProjectAPIClient(
        os.fdopen(client_read, "rb", buffering=0), os.fdopen(client_write, "wb", buffering=0), timeout=5.0
    )
    yield api, handler
    api.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the server did not stop when the client hung up"


def test_every_rpc_round_trip_in_process(threaded, tmp_path):
    api, handler = threaded
    info = api.server_info_query("0.18.0")
    assert info["protocol_version"] == 1 and info["platform_name"] == "recorder"
    assert (
        api.generate_project(
            model_library_format_path=tmp_path / "m.tar",
            standalone_crt_dir=None,
            project_dir=str(tmp_path / "p"),
            options={"board": "a"},
        )
        is None
    )
    assert api.build({"speed": 2}) is None
    assert api.flash() == {"flashed": True}
    assert api.open_transport({}) == {
        "timeouts": {
            "session_start_retry_timeout_sec": 2.0,
            "session_start_timeout_sec": 5,
            "session_established_timeout_sec": 0,
        }
    }
    blob = os.urandom(70000)  # bigger than a pipe buffer, both ways
    assert api.write_transport(blob, 2.0) is None
    assert api.read_transport(len(blob), 2.0) == blob
    assert api.close_transport() is None
    assert [name for name, _ in handler.calls] == [
        "server_info_query",
        "generate_project",
        "build",
        "flash",
        "open_transport",
        "write_transport",
        "read_transport",
        "close_transport",
    ]
    assert handler.calls[1][1] == (tmp_path / "m.tar", None, tmp_path / "p", {"board": "a"})
    assert handler.calls[2][1] == ({"speed": 2},)
    assert handler.calls[3][1] == ({},)


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (server.TransportClosedError(), client.TransportClosedError),
        (server.IoTimeoutError(), client.IoTimeoutError),
        (server.UnsupportedTVMVersionError(), client.UnsupportedTVMVersionError),
        (ValueError("bad board"), client.ServerError),
    ],
)
def test_remote_errors_are_reraised_by_class(threaded, exc, cls):
    api, handler = threaded
    handler.raise_on["flash"] = exc
    with pytest.raises(cls) as info:
        api.flash({})
    error = info.value
    assert type(error) is cls and type(error).__name__ == (
        type(exc).__name__ if cls is not client.ServerError else "ServerError"
    )
    assert isinstance(error, server.ServerError) and isinstance(error, MicrotvmError)
    if cls is not client.ServerError:
        assert isinstance(error, type(exc))  # except server.IoTimeoutError still catches it
    text = str(error)
    assert text.startswith("calling method flash: ")
    assert "Traceback" in text and type(exc).__name__ in text
    if isinstance(exc, ValueError):
        assert text.splitlines()[0] == "calling method flash: ValueError: bad board"
    # The connection survives a remote error.
    assert api.close_transport() is None


def test_remote_detail_is_part_of_the_first_line(threaded):
    api, handler = threaded
    handler.raise_on["flash"] = server.TransportClosedError(data={"detail": "/dev/ttyACM0 vanished"})
    with pytest.raises(client.TransportClosedError) as info:
        api.flash({})
    assert str(info.value).splitlines()[0] == (
        "calling method flash: TransportClosedError: /dev/ttyACM0 vanished"
    )
    assert info.value.data["detail"] == "/dev/ttyACM0 vanished" and "traceback" in info.value.data


def test_error_from_a_tvm_server_reads_well():
    # TVM's own server names the call, not the exception, in "message".
    error = {
        "code": -32000,
        "message": "calling method build",
        "data": {
            "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom\n'
        },
    }
    exc = client.ServerError.from_json("calling method build", error)
    assert type(exc) is client.ServerError
    assert str(exc).splitlines()[0] == "calling method build: RuntimeError: boom"


def test_unknown_method_and_bad_params_via_client(threaded):
    api, _ = threaded
    with pytest.raises(client.JSONRPCError) as info:
        api._request_reply("reboot", {})
    assert info.value.code == server.ErrorCode.METHOD_NOT_FOUND and isinstance(info.value, MicrotvmError)
    with pytest.raises(client.JSONRPCError) as info:
        api.read_transport("many", 1.0)
    assert info.value.code == server.ErrorCode.INVALID_PARAMS and "parameter n" in str(info.value)
    assert api.build() is None


def test_testonly_hook_runs_after_each_write():
    seen = []
    server_read, client_write = os.pipe()
    client_read, server_write = os.pipe()
    srv = server.ProjectAPIServer(
        os.fdopen(server_read, "rb"), os.fdopen(server_write, "wb", buffering=0), RecordingHandler()
    )
    api = client.ProjectAPIClient(
        os.fdopen(client_read, "rb", buffering=0),
        os.fdopen(client_write, "wb", buffering=0),
        testonly_did_write_request=lambda: seen.append(srv.serve_one_request()),
    )
    assert api.build() is None and api.close_transport() is None
    assert seen == [True, True]
    api.shutdown()
    assert srv.serve_one_request() is False


def test_parameters_must_be_json(threaded, tmp_path):
    api, handler = threaded
    api.build({"extra_files_tar": tmp_path / "x.tar"})  # a path travels as a string
    assert handler.calls[-1] == ("build", ({"extra_files_tar": str(tmp_path / "x.tar")},))
    with pytest.raises(TypeError, match="cannot send build: .*set"):
        api.build({"bad": {1, 2}})
    assert api.close_transport() is None  # nothing was sent: the connection is intact


def test_calls_after_shutdown_fail(threaded):
    api, _ = threaded
    api.shutdown()
    assert api.is_shutdown
    with pytest.raises(client.ConnectionShutdownError, match="already closed"):
        api.build()


# ---------------------------------------------------------------------------------------
# Client against a scripted, misbehaving server
# ---------------------------------------------------------------------------------------


def scripted(answer):
    """A client whose 'server' reads one request and answers answer(request) (bytes or None)."""
    server_read, client_write = os.pipe()
    client_read, server_write = os.pipe()

    def run():
        with os.fdopen(server_read, "rb") as rf, os.fdopen(server_write, "wb", buffering=0) as wf:
            line = rf.readline()
            if not line:
                return
            data = answer(json.loads(line))
            if data is None:
                rf.read()  # stay silent until the client hangs up
                return
            wf.write(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    api = client.ProjectAPIClient(
        os.fdopen(client_read, "rb", buffering=0), os.fdopen(client_write, "wb", buffering=0), timeout=2.0
    )
    return api, thread


def reply_bytes(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    ("answer", "cls", "words"),
    [
        (lambda r: b"hello there\n", client.MalformedReplyError, "not UTF-8 JSON"),
        (lambda r: b'"a string"\n', client.MalformedReplyError, "not an object"),
        (
            lambda r: reply_bytes({"jsonrpc": "2.0", "id": r["id"] + 1, "result": None}),
            client.MismatchedIdError,
            "replied with id",
        ),
        (
            lambda r: reply_bytes({"jsonrpc": "2.0", "id": r["id"]}),
            client.MalformedReplyError,
            "neither result nor error",
        ),
        (
            lambda r: reply_bytes({"jsonrpc": "1.0", "id": r["id"], "result": None}),
            client.MalformedReplyError,
            '"jsonrpc"',
        ),
        (
            lambda r: reply_bytes({"jsonrpc": "2.0", "id": r["id"], "error": "oops"}),
            client.MalformedReplyError,
            "malformed error object",
        ),
        (lambda r: b'{"jsonrpc": "2.0", "id": 1, "res', client.MalformedReplyError, "unterminated"),
        (lambda r: b"", client.ConnectionShutdownError, "closed the connection without replying"),
    ],
)
def test_broken_replies_raise_and_close(answer, cls, words):
    api, thread = scripted(answer)
    start = time.monotonic()
    with pytest.raises(cls, match=words) as info:
        api.build({})
    assert time.monotonic() - start < 1.5
    assert "build" in str(info.value)
    assert isinstance(info.value, MicrotvmError)
    assert api.is_shutdown
    thread.join(timeout=2)


def test_other_protocol_version_is_refused():
    info = {"platform_name": "x", "is_template": True, "model_library_format_path": None,
            "project_options": [], "protocol_version": 2}  # fmt: skip
    api, thread = scripted(lambda r: reply_bytes({"jsonrpc": "2.0", "id": r["id"], "result": info}))
    with pytest.raises(client.UnsupportedProtocolVersionError, match="protocol version 2") as caught:
        api.server_info_query("0.18.0")
    assert isinstance(caught.value, MicrotvmError)
    api.shutdown()
    thread.join(timeout=2)


def test_error_reply_with_null_id_is_accepted():
    api, thread = scripted(
        lambda r: reply_bytes({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}})
    )
    with pytest.raises(client.JSONRPCError) as info:
        api.build()
    assert info.value.code == -32700
    api.shutdown()
    thread.join(timeout=2)


def test_silent_server_times_out():
    api, thread = scripted(lambda r: None)
    start = time.monotonic()
    with pytest.raises(client.ServerTimeoutError, match=r"did not answer build within 0\.3 s"):
        api.build({}, timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 1.5
    assert api.is_shutdown
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_long_stages_have_their_own_default_limit():
    api, thread = scripted(lambda r: None)
    api.stage_timeout = 0.2
    api.timeout = 30.0
    start = time.monotonic()
    with pytest.raises(client.ServerTimeoutError, match=r"did not answer flash within 0\.2 s"):
        api.flash({})
    assert time.monotonic() - start < 1.5
    thread.join(timeout=2)
    assert api._limit(..., "build") == 0.2 and api._limit(..., "open_transport") == 30.0
    assert api._limit(5.0, "build") == 5.0 and api._limit(None, "build") is None


def test_transport_timeout_extends_call_limit():
    api, thread = scripted(lambda r: None)
    assert api._transport_limit(..., 10.0) == 10.0 + client.TRANSPORT_GRACE_SEC
    assert api._transport_limit(..., 0.5) == 0.5 + client.TRANSPORT_GRACE_SEC
    api.timeout = 60.0
    assert api._transport_limit(..., 0.5) == 60.0
    assert api._transport_limit(1.0, 10.0) == 1.0
    assert api._transport_limit(..., None) == 60.0
    api.shutdown()
    thread.join(timeout=2)
