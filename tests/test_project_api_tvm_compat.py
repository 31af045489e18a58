"""The Project API as TVM v0.18 speaks it: exact request and reply lines, pinned without TVM.

Every literal line below was checked in an ad hoc side-by-side run against TVM v0.18.0's own
``python/tvm/micro/project_api/{client,server}.py`` (imported from a scratch directory,
never part of this tree): TVM's client wrote the same request bytes as ours, and TVM's
server wrote the same reply bytes as ours for the same handler. The lines are written out
here so that a regression fails in CI, where TVM is not installed.

Where the two servers differ on purpose (see the ``server`` module docstring) the tests
pin our behaviour and say what TVM does, so that a change there is a conscious one.
"""

from __future__ import annotations

import collections
import inspect
import io
import json
import os
import pathlib
import shlex
import sys
import threading
import time

import pytest

from microtvm_tasks.project_api import client, server

pytestmark = pytest.mark.timeout(30)

# The request lines TVM v0.18's ProjectAPIClient writes (json.dumps of
# {"jsonrpc", "method", "params", "id"} in that order, then "\n"), for the calls named.
TVM_REQUESTS: dict[str, bytes] = {
    "server_info_query": (
        b'{"jsonrpc": "2.0", "method": "server_info_query", "params": {"tvm_version": "0.18.0"}, "id": 1}\n'
    ),
    "generate_project": (
        b'{"jsonrpc": "2.0", "method": "generate_project", "params": {"model_library_format_path": "/m.tar", '
        b'"standalone_crt_dir": "/crt", "project_dir": "/p", "options": {"a": 1}}, "id": 2}\n'
    ),
    "build": b'{"jsonrpc": "2.0", "method": "build", "params": {"options": {}}, "id": 3}\n',
    "flash": b'{"jsonrpc": "2.0", "method": "flash", "params": {"options": {"x": true}}, "id": 4}\n',
    "open_transport": b'{"jsonrpc": "2.0", "method": "open_transport", "params": {"options": {}}, "id": 5}\n',
    "close_transport": b'{"jsonrpc": "2.0", "method": "close_transport", "params": {}, "id": 6}\n',
    "read_transport": (
        b'{"jsonrpc": "2.0", "method": "read_transport", "params": {"n": 128, "timeout_sec": 0.5}, "id": 7}\n'
    ),
    "write_transport": (
        b'{"jsonrpc": "2.0", "method": "write_transport", "params": {"data": "egOdg", "timeout_sec": null}, '
        b'"id": 8}\n'
    ),
}


class Handler(server.ProjectAPIHandler):
    """A handler that records its arguments and returns fixed values."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.timeouts: object = server.TransportTimeouts(
            session_start_retry_timeout_sec=0,
            session_start_timeout_sec=5.0,
            session_established_timeout_sec=0,
        )
        self.raise_in: dict[str, BaseException] = {}

    def _call(self, *record: object) -> None:
        self.calls.append(record)
        if record[0] in self.raise_in:
            raise self.raise_in[str(record[0])]

    def server_info_query(self, tvm_version):
        self._call("server_info_query", tvm_version)
        return server.ServerInfo(
            platform_name="p",
            is_template=False,
            model_library_format_path=pathlib.Path("/x/model.tar"),
            project_options=[
                server.ProjectOption("a", optional=["build"], type="int", default=1, help="h"),
                server.ProjectOption("b", required=["flash"], choices=["x", "y"], type="str", help=None),
            ],
        )

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        self._call("generate_project", model_library_format_path, standalone_crt_dir, project_dir, options)

    def build(self, options):
        self._call("build", options)

    def flash(self, options):
        self._call("flash", options)
        return {"n": 1}

    def open_transport(self, options):
        self._call("open_transport", options)
        return self.timeouts

    def close_transport(self):
        self._call("close_transport")

    def read_transport(self, n, timeout_sec):
        self._call("read_transport", n, timeout_sec)
        return bytes(range(5))

    def write_transport(self, data, timeout_sec):
        self._call("write_transport", data, timeout_sec)
        return len(data)  # some templates return a count; the wire says null regardless


def serve(handler: server.ProjectAPIHandler, *lines: bytes) -> list[bytes]:
    """Our server's reply lines (raw bytes) for the request lines given."""
    out = io.BytesIO()
    srv = server.ProjectAPIServer(io.BytesIO(b"".join(lines)), out, handler)
    while srv.serve_one_request():
        pass
    return out.getvalue().splitlines(keepends=True)


# ---------------------------------------------------------------------------------------
# Replies: byte for byte what TVM v0.18's server sends
# ---------------------------------------------------------------------------------------


def test_successful_replies_are_tvms_bytes():
    handler = Handler()
    replies = serve(handler, *TVM_REQUESTS.values())
    assert replies == [
        b'{"jsonrpc": "2.0", "id": 1, "result": {"platform_name": "p", "is_template": false, '
        b'"model_library_format_path": "/x/model.tar", "project_options": ['
        b'{"name": "a", "choices": null, "default": 1, "type": "int", "required": null, '
        b'"optional": ["build"], "help": "h"}, '
        b'{"name": "b", "choices": ["x", "y"], "default": null, "type": "str", "required": ["flash"], '
        b'"optional": null, "help": null}], "protocol_version": 1}}\n',
        b'{"jsonrpc": "2.0", "id": 2, "result": null}\n',
        b'{"jsonrpc": "2.0", "id": 3, "result": null}\n',
        b'{"jsonrpc": "2.0", "id": 4, "result": {"n": 1}}\n',  # a handler's result passes through
        b'{"jsonrpc": "2.0", "id": 5, "result": {"timeouts": {"session_start_retry_timeout_sec": 0, '
        b'"session_start_timeout_sec": 5.0, "session_established_timeout_sec": 0}}}\n',
        b'{"jsonrpc": "2.0", "id": 6, "result": null}\n',
        b'{"jsonrpc": "2.0", "id": 7, "result": {"data": "009C61O"}}\n',  # base85 of bytes 0..4
        b'{"jsonrpc": "2.0", "id": 8, "result": null}\n',  # null although the handler returned 4
    ]
    # What the handler saw: TVM's server hands generate_project pathlib.Paths, write_transport
    # the decoded bytes, read_transport n and timeout_sec as sent.
    assert handler.calls == [
        ("server_info_query", "0.18.0"),
        ("generate_project", pathlib.Path("/m.tar"), pathlib.Path("/crt"), pathlib.Path("/p"), {"a": 1}),
        ("build", {}),
        ("flash", {"x": True}),
        ("open_transport", {}),
        ("close_transport",),
        ("read_transport", 128, 0.5),
        ("write_transport", b"\x7e\x01\x00\xff", None),
    ]


def test_template_server_info_with_empty_mlf_path():
    # TVM's own templates (crt, arduino, zephyr) report "" as the MLF path of a template.
    class Template(Handler):
        def server_info_query(self, tvm_version):
            return server.ServerInfo("host", True, "", [])

    (reply,) = serve(Template(), TVM_REQUESTS["server_info_query"])
    assert reply == (
        b'{"jsonrpc": "2.0", "id": 1, "result": {"platform_name": "host", "is_template": true, '
        b'"model_library_format_path": "", "project_options": [], "protocol_version": 1}}\n'
    )


@pytest.mark.parametrize(
    "timeouts",
    [
        {
            "session_start_retry_timeout_sec": 0,
            "session_start_timeout_sec": 5.0,
            "session_established_timeout_sec": 0,
        },
        collections.namedtuple(
            "Foreign",
            "session_start_retry_timeout_sec session_start_timeout_sec session_established_timeout_sec",
        )(0, 5.0, 0),
    ],
)
def test_open_transport_timeouts_in_other_shapes_give_the_same_bytes(timeouts):
    handler = Handler()
    handler.timeouts = timeouts
    (reply,) = serve(handler, TVM_REQUESTS["open_transport"])
    assert reply == serve(Handler(), TVM_REQUESTS["open_transport"])[0]


@pytest.mark.parametrize(
    "timeouts",
    [
        {"session_start_timeout_sec": 5.0},  # missing keys
        {
            "session_start_retry_timeout_sec": 0,
            "session_start_timeout_sec": 5.0,
            "session_established_timeout_sec": 0,
            "extra": 1,
        },
        (0, 5.0, 0),
        None,
    ],
)
def test_open_transport_timeouts_must_be_the_three_keys(timeouts):
    # TVM's tvm.micro.project rebuilds the reply with TransportTimeouts(**reply["timeouts"]):
    # anything but exactly the three keys would break it later, so the server refuses it now.
    handler = Handler()
    handler.timeouts = timeouts
    (reply,) = serve(handler, TVM_REQUESTS["open_transport"])
    error = json.loads(reply)["error"]
    assert error["code"] == -32000 and error["message"] == "TypeError"
    assert "TransportTimeouts" in error["data"]["traceback"]


# ---------------------------------------------------------------------------------------
# Error replies
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc, message",
    [
        (server.IoTimeoutError(), "IoTimeoutError"),
        (server.TransportClosedError(), "TransportClosedError"),
        (server.UnsupportedTVMVersionError(), "UnsupportedTVMVersionError"),
        (server.ServerError(message="custom text"), "custom text"),
        # TVM's server sends "calling method build" here; ours the class name (see server's
        # docstring). Both clients turn either into a plain ServerError.
        (ValueError("boom"), "ValueError"),
    ],
)
def test_handler_exception_reply_shape(exc, message):
    handler = Handler()
    handler.raise_in["build"] = exc
    (reply,) = serve(handler, TVM_REQUESTS["build"])
    decoded = json.loads(reply)
    assert list(decoded) == ["jsonrpc", "id", "error"] and decoded["id"] == 3
    error = decoded["error"]
    assert list(error) == ["code", "message", "data"]
    assert error["code"] == -32000 and error["message"] == message
    assert list(error["data"]) == ["traceback"]
    assert "Traceback (most recent call last)" in error["data"]["traceback"]
    # TVM's client looks the class up by message among ServerError's subclasses.
    rebuilt = server.JSONRPCError.from_json("calling method build", error)
    expected = type(exc) if isinstance(exc, server.ServerError) else server.ServerError
    assert type(rebuilt) is expected


def test_request_errors_tvm_answers_the_same_way():
    replies = serve(
        Handler(),
        b'{"jsonrpc": "2.0", "method": "build", "params": {}, "id": 1}\n',
        b'{"jsonrpc": "2.0", "method": "frobnicate", "params": {}, "id": "abc"}\n',
        b'{"jsonrpc": "2.0", "method": "build", "params": {"options": {}, "zz": 1}, "id": 2}\n',
        b'{"jsonrpc": "2.0", "method": "build", "params": {"options": []}, "id": 3}\n',
        b'{"jsonrpc": "2.0", "method": "close_transport", "params": {}, "id": null}\n',
    )
    # Identical bytes to TVM's server:
    assert replies[0] == (
        b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": '
        b'"method build: parameter options not given", "data": null}}\n'
    )
    assert replies[4] == b'{"jsonrpc": "2.0", "id": null, "result": null}\n'
    # Same code, id and data as TVM's server; our message texts say more.
    decoded = [json.loads(line) for line in replies[1:4]]
    assert [(d["id"], d["error"]["code"], d["error"]["data"]) for d in decoded] == [
        ("abc", -32601, None),
        (2, -32602, None),
        (3, -32602, None),
    ]
    assert decoded[0]["error"]["message"].startswith("frobnicate: no such method")


def test_invalid_request_and_garbage_keep_the_server_serving():
    # TVM's server stops after these (replying id null to -32600, nothing to -32700); ours
    # answers and goes on. A client sending only valid requests (TVM's) never sees either.
    replies = serve(
        Handler(),
        b'{"jsonrpc": "1.0", "method": "build", "params": {"options": {}}, "id": 3}\n',
        b"{not json\n",
        TVM_REQUESTS["close_transport"],
    )
    codes = [json.loads(line).get("error", {}).get("code") for line in replies]
    assert codes == [-32600, -32700, None]
    assert json.loads(replies[1])["id"] is None


def test_request_written_in_two_pieces_gets_one_reply():
    # TVM's client writes the JSON text and the "\n" with two write() calls on an
    # unbuffered pipe; the server must wait for the newline and answer once.
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    srv = server.ProjectAPIServer(
        os.fdopen(request_read, "rb", buffering=0), os.fdopen(reply_write, "wb", 0), Handler()
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    with os.fdopen(request_write, "wb", buffering=0) as w, os.fdopen(reply_read, "rb") as r:
        w.write(TVM_REQUESTS["close_transport"][:-1])
        time.sleep(0.05)
        w.write(b"\n")
        assert r.readline() == b'{"jsonrpc": "2.0", "id": 6, "result": null}\n'
    thread.join(timeout=5)
    assert not thread.is_alive()


# ---------------------------------------------------------------------------------------
# Requests: byte for byte what TVM v0.18's client sends
# ---------------------------------------------------------------------------------------

_CANNED_RESULTS = {
    "server_info_query": {
        "platform_name": "p",
        "is_template": True,
        "model_library_format_path": "",
        "project_options": [],
        "protocol_version": 1,
    },
    "read_transport": {"data": "009C61O"},
    "open_transport": {
        "timeouts": {
            "session_start_retry_timeout_sec": 0,
            "session_start_timeout_sec": 0,
            "session_established_timeout_sec": 0,
        }
    },
}


def call_with_canned_reply(
    method: str, request_id: int, *args: object, **kwargs: object
) -> tuple[bytes, object]:
    """Call one client method; return the request line it wrote and what it returned."""
    reply = {"jsonrpc": "2.0", "id": request_id, "result": _CANNED_RESULTS.get(method)}
    written = io.BytesIO()
    api = client.ProjectAPIClient(io.BytesIO(json.dumps(reply).encode() + b"\n"), written)
    api.next_request_id = request_id
    result = getattr(api, method)(*args, **kwargs)
    return written.getvalue(), result


def test_client_requests_are_tvms_bytes():
    calls = {
        "server_info_query": ("0.18.0",),
        "generate_project": (),
        "build": (),
        "flash": ({"x": True},),
        "open_transport": (None,),  # None -> {} as in TVM's client
        "close_transport": (),
        "read_transport": (128, 0.5),
        "write_transport": (b"\x7e\x01\x00\xff", None),
    }
    kwargs = {
        "generate_project": {
            "model_library_format_path": "/m.tar",
            "standalone_crt_dir": "/crt",
            "project_dir": "/p",
            "options": {"a": 1},
        }
    }
    for request_id, (method, args) in enumerate(calls.items(), start=1):
        line, result = call_with_canned_reply(method, request_id, *args, **kwargs.get(method, {}))
        assert line == TVM_REQUESTS[method], method
        if method == "read_transport":
            # TVM's client returns {"data": b"..."}; ours (this tool's contract) the bytes.
            assert result == bytes(range(5))
        elif method in _CANNED_RESULTS:
            assert result == _CANNED_RESULTS[method]


def test_client_requests_are_ascii_json():
    # Both clients use json.dumps' default ensure_ascii: non-ASCII travels as \\u escapes.
    line, _ = call_with_canned_reply("build", 1, {"board": "caf\u00e9"})
    assert (
        line
        == b'{"jsonrpc": "2.0", "method": "build", "params": {"options": {"board": "caf\\u00e9"}}, "id": 1}\n'
    )


# ---------------------------------------------------------------------------------------
# Our client reading what TVM v0.18's server writes
# ---------------------------------------------------------------------------------------

_TVM_TRACEBACK_HEAD = (
    "Traceback (most recent call last):\n"
    '  File "/t/microtvm_api_server.py", line 30, in build  # <--- Outermost server-side stack frame\n'
)


def reply_to_one_call(reply: bytes, method: str = "build", chunks: int = 1) -> object:
    """Run one client call against a fake server that answers ``reply`` over real pipes.

    With ``chunks`` 2 the reply is written as TVM's server writes it: the JSON text, then
    the newline in a second write.
    """
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()

    def fake_server() -> None:
        with os.fdopen(request_read, "rb") as r, os.fdopen(reply_write, "wb", buffering=0) as w:
            r.readline()
            if chunks == 2:
                w.write(reply.rstrip(b"\n"))
                time.sleep(0.05)
                w.write(b"\n")
            else:
                w.write(reply)
            r.read()  # until the client hangs up

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    with client.ProjectAPIClient(
        os.fdopen(reply_read, "rb", buffering=0), os.fdopen(request_write, "wb", buffering=0), timeout=10
    ) as api:
        try:
            return getattr(api, method)({})
        finally:
            api.shutdown()
            thread.join(timeout=5)


def test_client_reads_a_reply_written_in_two_pieces():
    assert reply_to_one_call(b'{"jsonrpc": "2.0", "id": 1, "result": null}\n', chunks=2) is None


def test_client_reads_tvm_handler_exception():
    error = {
        "code": -32000,
        "message": "calling method build",
        "data": {
            "traceback": _TVM_TRACEBACK_HEAD
            + '    raise ValueError("level 2 is broken")\nValueError: level 2 is broken\n'
        },
    }
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "error": error}).encode() + b"\n"
    with pytest.raises(client.ServerError) as info:
        reply_to_one_call(reply)
    exc = info.value
    assert type(exc) is client.ServerError and isinstance(exc, server.ServerError)
    assert exc.message == "calling method build" and exc.summary == "ValueError: level 2 is broken"
    assert str(exc).splitlines()[0] == "calling method build: ValueError: level 2 is broken"


@pytest.mark.parametrize(
    "name, cls",
    [
        ("IoTimeoutError", client.IoTimeoutError),
        ("TransportClosedError", client.TransportClosedError),
        ("UnsupportedTVMVersionError", client.UnsupportedTVMVersionError),
    ],
)
def test_client_maps_tvm_error_classes(name, cls):
    traceback_text = (
        _TVM_TRACEBACK_HEAD
        + f"    raise server.{name}()\ntvm.micro.project_api.server.{name}: JSON-RPC error # -32000: {name}\n"
    )
    error = {"code": -32000, "message": name, "data": {"traceback": traceback_text}}
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "error": error}).encode() + b"\n"
    with pytest.raises(cls) as info:
        reply_to_one_call(reply)
    assert info.value.summary == name


def test_client_summary_of_a_templates_own_server_error():
    # A TVM template raising ServerError(message=...) ends its traceback with that error's
    # own JSON-RPC text; the one-line summary must not repeat it.
    traceback_text = (
        _TVM_TRACEBACK_HEAD
        + '    raise server.ServerError(message="flash failed: no board")\n'
        + "tvm.micro.project_api.server.ServerError: JSON-RPC error # -32000: flash failed: no board\n"
    )
    error = {"code": -32000, "message": "flash failed: no board", "data": {"traceback": traceback_text}}
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "error": error}).encode() + b"\n"
    with pytest.raises(client.ServerError) as info:
        reply_to_one_call(reply, "flash")
    assert info.value.summary == "flash failed: no board"


def test_client_accepts_tvms_invalid_request_reply_with_null_id():
    reply = (
        b'{"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": '
        b'"request[\\"params\\"]: want dict; got <class \'list\'>", "data": null}}\n'
    )
    with pytest.raises(client.JSONRPCError) as info:
        reply_to_one_call(reply)
    assert info.value.code == -32600 and not isinstance(info.value, client.MalformedReplyError)


# ---------------------------------------------------------------------------------------
# Launch and API surface
# ---------------------------------------------------------------------------------------


def test_launch_arguments_fit_tvms_main_and_launch_script(tmp_path: pathlib.Path, monkeypatch):
    # TVM's main() parses --read-fd INT --write-fd INT [--debug] with argparse; TVM's launch
    # scripts run "$PYTHON $1 $2 $3 $4 $5": the server path, then exactly those four words.
    (tmp_path / "microtvm_api_server.py").write_text(
        "import argparse, json, os, sys\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--read-fd', type=int, required=True)\n"
        "p.add_argument('--write-fd', type=int, required=True)\n"
        "p.add_argument('--debug', action='store_true')\n"
        "a = p.parse_args()\n"
        "r, w = os.fdopen(a.read_fd, 'rb'), os.fdopen(a.write_fd, 'wb', buffering=0)\n"
        "line = json.loads(r.readline())\n"
        "argv_file = os.environ.get('ARGV_FILE')\n"
        "argv = open(argv_file).read().split('\\x00')[:-1] if argv_file else []\n"
        "result = {'argv': sys.argv[1:], 'launch_argv': argv, 'debug': a.debug}\n"
        "w.write(json.dumps({'jsonrpc': '2.0', 'id': line['id'], 'result': result}).encode())\n"
        "w.write(b'\\n')\n"
        "r.read()\n"
    )
    with client.instantiate_from_dir(tmp_path, timeout=20) as api:
        result = api.build({})
    assert result["debug"] is False
    argv = result["argv"]
    assert argv[0::2] == ["--read-fd", "--write-fd"] and all(fd.isdigit() for fd in argv[1::2])

    launch = tmp_path / "launch_microtvm_api_server.sh"
    launch.write_text(
        '#!/bin/sh\nprintf "%s\\0" "$@" > "$ARGV_FILE"\n'
        f'exec {shlex.quote(sys.executable)} "$1" "$2" "$3" "$4" "$5"\n'
    )
    launch.chmod(0o755)
    monkeypatch.setenv("ARGV_FILE", str(tmp_path / "argv"))
    with client.instantiate_from_dir(tmp_path, timeout=20) as api:
        result = api.build({})
    launch_argv = result["launch_argv"]
    assert len(launch_argv) == 5 and launch_argv[0] == str((tmp_path / "microtvm_api_server.py").absolute())
    assert launch_argv[1::2] == ["--read-fd", "--write-fd"]


def test_api_surface_matches_tvm():
    # Parameter names are part of the wire (named JSON-RPC params) and of the template API.
    handler_params = {
        name: list(inspect.signature(getattr(server.ProjectAPIHandler, name)).parameters)[1:]
        for name in (
            "server_info_query",
            "generate_project",
            "build",
            "flash",
            "open_transport",
            "close_transport",
            "read_transport",
            "write_transport",
        )
    }
    assert handler_params == {
        "server_info_query": ["tvm_version"],
        "generate_project": ["model_library_format_path", "standalone_crt_dir", "project_dir", "options"],
        "build": ["options"],
        "flash": ["options"],
        "open_transport": ["options"],
        "close_transport": [],
        "read_transport": ["n", "timeout_sec"],
        "write_transport": ["data", "timeout_sec"],
    }
    assert server.ServerInfo._fields == (
        "platform_name",
        "is_template",
        "model_library_format_path",
        "project_options",
    )
    assert server.TransportTimeouts._fields == (
        "session_start_retry_timeout_sec",
        "session_start_timeout_sec",
        "session_established_timeout_sec",
    )
    assert server.ProjectOption._fields == (
        "name",
        "choices",
        "default",
        "type",
        "required",
        "optional",
        "help",
    )
    assert {code.name: int(code) for code in server.ErrorCode} == {
        "SERVER_ERROR": -32000,
        "PARSE_ERROR": -32700,
        "INVALID_REQUEST": -32600,
        "METHOD_NOT_FOUND": -32601,
        "INVALID_PARAMS": -32602,
        "INTERNAL_ERROR": -32603,
    }
    assert server.ProjectAPIServer._PROTOCOL_VERSION == 1  # TVM's client reads this attribute
    assert client.SERVER_LAUNCH_SCRIPT_FILENAME == "launch_microtvm_api_server.sh"
    assert client.SERVER_PYTHON_FILENAME == "microtvm_api_server.py"


def test_default_project_options_match_tvm_apart_from_help():
    fields = [tuple(option)[:-1] for option in server.default_project_options()]
    assert fields == [
        ("verbose", None, False, "bool", None, ["generate_project"]),
        ("project_type", None, None, "str", ["generate_project"], None),
        ("board", None, None, "str", ["generate_project"], None),
        ("cmsis_path", None, None, "str", None, ["generate_project"]),
        ("warning_as_error", None, False, "bool", None, ["generate_project"]),
        ("compile_definitions", None, None, "str", None, ["generate_project"]),
        ("extra_files_tar", None, None, "str", None, ["generate_project"]),
    ]
    replaced = server.default_project_options(verbose={"optional": ["build"]})
    assert replaced[0].optional == ["build"] and replaced[0].name == "verbose"
