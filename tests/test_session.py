"""session.py against the real firmware (a built host program on pipes) through noisy,
duplicating and corrupting transports, and against scripted fake devices."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from microtvm_tasks.errors import SessionError
from microtvm_tasks.runtime.fake_mlf import extract_fake_mlf, fake_reference
from microtvm_tasks.runtime.glue import runtime_sources, write_model_glue
from microtvm_tasks.session import (
    CMD_HELLO,
    ERR_FRAME,
    FLAG,
    MSG_ERROR,
    REPLY_BIT,
    FrameDecoder,
    ModelDesc,
    ProcessTransport,
    Session,
    TensorDesc,
    encode_frame,
    make_inputs,
    run_session,
    to_tensor_bytes,
)

HOST_SRC = Path(__file__).resolve().parents[1] / "templates" / "host" / "src"


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> str:
    """The fake model's host_driven program, compiled directly (no Project API)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    tmp = tmp_path_factory.mktemp("fw")
    src = tmp / "src"
    src.mkdir()
    for p in [*runtime_sources(), HOST_SRC / "main.c", HOST_SRC / "platform_host.c"]:
        shutil.copy2(p, src / p.name)
    mlf = extract_fake_mlf(tmp / "mlf", n=300)
    write_model_glue(mlf, src)
    exe = tmp / "fw"
    sources = [str(p) for p in src.glob("*.c")] + [str(mlf / "codegen/host/src/default_lib1.c")]
    subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-DMT_MAX_PAYLOAD=64", f"-I{src}",
                    f"-I{mlf / 'codegen/host/include'}", *sources, "-o", str(exe)], check=True, timeout=120)
    return str(exe)


class Noisy:
    """Wraps a transport: garbage and boot chatter before/among device bytes, duplicated
    replies (stale frames), and corrupts some host frames so the device reports them."""

    def __init__(self, inner, seed: int, corrupt_every: int = 0, duplicate: bool = False) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.corrupt_every = corrupt_every
        self.duplicate = duplicate
        self.writes = 0
        self.sent_first = False
        self.dec = FrameDecoder()

    def read(self, n, timeout):
        data = self.inner.read(n, timeout)
        out = b""
        if not self.sent_first:
            out += b"Booting ~ v1.2\r\n\x00\xff\x7e\x7e garbage"
            self.sent_first = True
        if data and self.rng.random() < 0.5:
            out += bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 20))) + bytes([FLAG])
        out += data
        if self.duplicate and data:
            for f in self.dec.feed(data):
                out += encode_frame(f.type, f.seq, f.payload)  # the same reply again, later
        return out

    def write(self, data, timeout):
        self.writes += 1
        if self.corrupt_every and self.writes % self.corrupt_every == 0:
            b = bytearray(data)
            i = self.rng.randrange(1, len(b) - 1)
            special = (0x7D, 0x7E)
            b[i] = (b[i] + 1) % 256 if b[i] not in special and (b[i] + 1) % 256 not in special else 0x41
            data = bytes(b)
        self.inner.write(data, timeout)


@pytest.mark.parametrize("seed", [1, 2])
def test_session_over_noise_corruption_and_stale_replies(firmware, seed):
    x = np.random.default_rng(seed).integers(-128, 127, size=(1, 300), endpoint=True).astype(np.int8)
    with ProcessTransport([firmware]) as pt:
        t = Noisy(pt, seed, corrupt_every=5, duplicate=True)
        s = Session(t, timeout=2, retries=3)
        assert s.hello()["max_payload"] == 64
        r = run_session(s, [x], repeat=2, number=3)
    y_ref, z_ref = fake_reference(x)
    np.testing.assert_array_equal(r.outputs[0], y_ref)
    np.testing.assert_array_equal(r.outputs[1], z_ref)
    assert t.writes > 10  # 300 bytes in 58-byte chunks: many frames, some resent
    assert r.description.outputs[1].dtype == "float32"


def test_firmware_exits_cleanly_when_host_closes(firmware):
    pt = ProcessTransport([firmware])
    s = Session(pt, timeout=2)
    s.hello()
    assert pt.close() == 0


class Scripted:
    """A fake device: answers each decoded request with reply(frame) -> bytes or None."""

    def __init__(self, reply):
        self.reply = reply
        self.dec = FrameDecoder()
        self.out = b""

    def write(self, data, timeout):
        for f in self.dec.feed(data):
            r = self.reply(f)
            if r:
                self.out += r

    def read(self, n, timeout):
        data, self.out = self.out[:n], self.out[n:]
        return data


def test_version_mismatch_is_an_error():
    dev = Scripted(lambda f: encode_frame(CMD_HELLO | REPLY_BIT, f.seq, b"MT\x02\x00\x00\x01"))
    with pytest.raises(SessionError, match="version 2"):
        Session(dev, timeout=0.5).hello()


def test_not_our_firmware_is_an_error():
    dev = Scripted(lambda f: encode_frame(CMD_HELLO | REPLY_BIT, f.seq, b"XX\x01\x00\x00\x01"))
    with pytest.raises(SessionError, match="not from a microtvm-tasks runtime"):
        Session(dev, timeout=0.5).hello()


def test_silence_times_out_with_a_useful_message():
    dev = Scripted(lambda f: None)
    with pytest.raises(SessionError, match="no reply to command 0x01 after 3 timed-out attempt"):
        Session(dev, timeout=0.05, retries=2).request(CMD_HELLO, b"\x01")


def test_frame_error_triggers_a_resend():
    calls = []

    def reply(f):
        calls.append(f.seq)
        if len(calls) == 1:
            return encode_frame(MSG_ERROR, 0, struct.pack("<H", ERR_FRAME) + b"bad frame")
        return encode_frame(f.type | REPLY_BIT, f.seq, b"MT\x01\x00\x40\x00")

    s = Session(Scripted(reply), timeout=0.5)
    assert s.hello() == {"version": 1, "max_payload": 64}
    assert len(calls) == 2 and calls[0] != calls[1]


def test_stale_reply_is_ignored():
    def reply(f):
        stale = encode_frame(f.type | REPLY_BIT, (f.seq - 1) % 256, b"MT\x01\x00\x00\x02")
        return stale + encode_frame(f.type | REPLY_BIT, f.seq, b"MT\x01\x00\x00\x01")

    assert Session(Scripted(reply), timeout=0.5).hello()["max_payload"] == 256


def test_inputs_quantise_and_fill():
    t = TensorDesc(0, "in", "int8", (1, 3), 3, 0.5, -1)
    assert to_tensor_bytes(t, np.array([0.0, 1.0, -70.0], np.float32)) == bytes([0xFF, 0x01, 0x80])
    assert to_tensor_bytes(t, [1, 2, 3]) == bytes([1, 2, 3])
    with pytest.raises(SessionError, match="outside the range"):
        to_tensor_bytes(t, [1, 2, 300])
    with pytest.raises(SessionError, match="needs shape"):
        to_tensor_bytes(t, [1, 2])
    np.testing.assert_allclose(t.dequantize(np.array([-1, 1], np.int8)), [0.0, 1.0])
    d = ModelDesc("m", 0, [t, TensorDesc(1, "f", "float32", (2,), 8)], [])
    a, b = make_inputs(d, {"input_1": [1.5, 2.5]}, fill_mode="ones")
    assert a.tolist() == [[1, 1, 1]] and b.tolist() == [1.5, 2.5]
    with pytest.raises(SessionError, match="not one of the model's inputs"):
        make_inputs(d, {"nope": [1]})
    r1 = make_inputs(d, fill_mode="random", seed=4)
    r2 = make_inputs(d, fill_mode="random", seed=4)
    assert all((p == q).all() for p, q in zip(r1, r2, strict=True))


SILENT_DEVICE_SERVER = '''
"""A template whose device never answers; open_transport records the options it is given."""
import json
import pathlib
import time

from microtvm_tasks.project_api import server

OPTIONS = [
    server.ProjectOption("gen_only", optional=["generate_project"], type="str", help="not open_transport's"),
    server.ProjectOption("port", optional=["open_transport"], type="int", help="typed for open_transport"),
    server.ProjectOption("baud", optional=["open_transport"], type="int", default=9600, help="a default"),
]


class Handler(server.ProjectAPIHandler):
    def server_info_query(self, tvm_version):
        return server.ServerInfo("silent", True, None, OPTIONS)

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        raise NotImplementedError

    def build(self, options):
        pass

    def flash(self, options):
        pass

    def open_transport(self, options):
        pathlib.Path("open_options.json").write_text(json.dumps(options, sort_keys=True))
        return server.TransportTimeouts(session_start_retry_timeout_sec=0, session_start_timeout_sec=0.5,
                                        session_established_timeout_sec=1.0)

    def close_transport(self):
        pass

    def read_transport(self, n, timeout_sec):
        time.sleep(min(timeout_sec or 0.0, 1.0))
        raise server.IoTimeoutError()

    def write_transport(self, data, timeout_sec):
        pass


if __name__ == "__main__":
    server.main(Handler())
'''


@pytest.fixture
def silent_project(tmp_path: Path) -> Path:
    """A directory holding only the silent template's server (no .tvmc.json yet)."""
    script = tmp_path / "silent" / "microtvm_api_server.py"
    script.parent.mkdir()
    script.write_text(SILENT_DEVICE_SERVER)
    return script.parent


def test_run_project_waits_for_hello_as_long_as_open_transport_says(silent_project):
    """open_transport's reply is {"timeouts": {...}}: its session_start_timeout_sec (0.5 s)
    bounds the HELLO wait, not run_project's own timeout (3 s)."""
    from microtvm_tasks.session import run_project

    start = time.monotonic()
    with pytest.raises(SessionError,
                       match=r"no reply to command 0x01 after 1 timed-out attempt\(s\) of 0\.5 s"):
        run_project(silent_project, timeout=3.0)
    assert time.monotonic() - start < 2.5


def test_run_project_passes_open_transport_only_its_options_typed(silent_project):
    """The .tvmc.json layer (typed at create time) and --option values (typed here) are
    filtered to what open_transport takes, defaults filled."""
    from microtvm_tasks.errors import OptionError
    from microtvm_tasks.session import run_project
    from microtvm_tasks.state import ProjectState, save_state

    with pytest.raises(SessionError):  # no .tvmc.json: the template's own record fills the rest
        run_project(silent_project, timeout=1.0, raw_options={"port": "3"})
    assert json.loads((silent_project / "open_options.json").read_text()) == {"port": 3}
    save_state(silent_project, ProjectState(options={"gen_only": "x", "port": 5}))
    with pytest.raises(SessionError):
        run_project(silent_project, timeout=1.0)
    assert json.loads((silent_project / "open_options.json").read_text()) == {"baud": 9600, "port": 5}
    with pytest.raises(SessionError):
        run_project(silent_project, timeout=1.0, raw_options={"port": "0x10"})
    assert json.loads((silent_project / "open_options.json").read_text()) == {"baud": 9600, "port": 16}
    with pytest.raises(OptionError, match="'port' .*must be an int"):
        run_project(silent_project, timeout=1.0, raw_options={"port": "COM3"})
