"""The host side of the run protocol (microtvm_tasks/runtime/PROTOCOL.md).

`Session` speaks the protocol over any transport with ``read(n, timeout) -> bytes`` (b""
when nothing arrived in time) and ``write(data, timeout)``; `ProjectAPITransport` adapts a
Project API client's read_transport/write_transport to that. `run_project` is the whole
`microtvm run` flow: start the project's own server, open the transport with the options
`options.resolve` gives open_transport (`.tvmc.json`, then overrides), handshake, describe,
load inputs, run, read outputs, close, and always reap the server.

The wire format (frames, CRC, stuffing, command and error codes) lives in `frames.py`; its
names are importable from here too. Replies carry the request's sequence number, so a
stale reply is never taken for a new one.

numpy is imported lazily: doit loads this module to build its task list.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import SessionError
from .frames import (  # noqa: F401 - the codec's names stay importable from here for users and tests
    CMD_DESCRIBE,
    CMD_DESCRIBE_TENSOR,
    CMD_GET_OUTPUT,
    CMD_HELLO,
    CMD_PROFILE,
    CMD_RUN,
    CMD_SET_INPUT,
    CRC,
    ERR_BAD_ARGS,
    ERR_FRAME,
    ERR_INDEX,
    ERR_NO_HELLO,
    ERR_RANGE,
    ERR_RUN,
    ERR_TOO_LONG,
    ERR_UNKNOWN_CMD,
    ERR_VERSION,
    ERROR_NAMES,
    ESC,
    FLAG,
    HEADER,
    MSG_ERROR,
    PROTOCOL_VERSION,
    REPLY_BIT,
    XOR,
    Frame,
    FrameDecoder,
    crc16,
    decode_body,
    encode_frame,
)
from .options import Layer, resolve

# ---- model description ----------------------------------------------------------------


@dataclass
class TensorDesc:
    """One input or output as the device describes it."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    scale: float | None = None
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype != "float32"

    def quantize(self, real: Any) -> Any:
        """Real values -> this tensor's integer dtype with its scale and zero point (rounded, clipped)."""
        import numpy as np

        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(real, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: Any) -> Any:
        """This tensor's integer values -> real values (float32)."""
        import numpy as np

        if not self.quantized:
            return np.asarray(q, dtype=np.float32)
        return ((np.asarray(q, dtype=np.float64) - self.zero_point) * self.scale).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dtype": self.dtype, "shape": list(self.shape), "nbytes": self.nbytes,
            "scale": self.scale, "zero_point": self.zero_point,
        }


@dataclass
class ModelDesc:
    """What DESCRIBE and DESCRIBE_TENSOR report."""

    name: str
    arena_bytes: int
    inputs: list[TensorDesc] = field(default_factory=list)
    outputs: list[TensorDesc] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "arena_bytes": self.arena_bytes,
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
        }


# ---- transports -------------------------------------------------------------------------


class Transport(Protocol):
    def read(self, n: int, timeout: float | None) -> bytes:
        """Up to n bytes; b"" when nothing arrived within timeout; SessionError when closed."""

    def write(self, data: bytes, timeout: float | None) -> None:
        """All of data, or SessionError."""


class ProjectAPITransport:
    """Adapter from a ProjectAPIClient's read_transport/write_transport to `Transport`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self, n: int, timeout: float | None) -> bytes:
        from .project_api import server

        try:
            return self.client.read_transport(n, timeout)
        except server.IoTimeoutError:
            return b""
        except server.TransportClosedError as exc:
            raise SessionError(f"the device's transport closed while reading: {exc}") from None

    def write(self, data: bytes, timeout: float | None) -> None:
        from .project_api import server

        try:
            self.client.write_transport(data, timeout)
        except server.IoTimeoutError:
            raise SessionError(f"timed out writing {len(data)} bytes to the device") from None
        except server.TransportClosedError as exc:
            raise SessionError(f"the device's transport closed while writing: {exc}") from None


class ProcessTransport:
    """A program started with pipes as the transport (its stdin/stdout), without a Project API
    server in between: for tests and for timing the protocol alone. Use as a context manager."""

    def __init__(self, argv: list[str], cwd: str | Path | None = None) -> None:
        import os
        import subprocess

        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, cwd=cwd)
        os.set_blocking(self.proc.stdout.fileno(), False)

    def read(self, n: int, timeout: float | None) -> bytes:
        import os
        import select

        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(fd, n)
        except BlockingIOError:
            return b""
        if not data:
            raise SessionError(f"the program exited (status {self.proc.wait(timeout=5)})")
        return data

    def write(self, data: bytes, timeout: float | None) -> None:
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError) as exc:
            raise SessionError(f"the program's input is closed: {exc}") from None

    def close(self) -> int:
        """Close the pipes, wait for (or kill) the program, return its exit status."""
        import subprocess

        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def __enter__(self) -> ProcessTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the session --------------------------------------------------------------------------


class Session:
    """A run-protocol session over `transport`.

    `timeout` bounds each request's wait for its reply; `retries` is how many times a
    request is sent again after a timeout or after the device reported a corrupted frame
    (every command is idempotent, so repeating one is safe).
    """

    MAX_FRAME_ERRORS = 8

    def __init__(self, transport: Transport, *, timeout: float = 10.0, retries: int = 2,
                 read_size: int = 4096) -> None:
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.read_size = read_size
        self.decoder = FrameDecoder()
        self.max_payload: int | None = None
        self.device_version: int | None = None
        self._seq = 0
        self._pending: list[Frame] = []
        self.description: ModelDesc | None = None

    # -- plumbing --

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 is the device's "unknown request"
        return self._seq

    def _frames(self, deadline: float) -> Frame | None:
        """The next received frame, or None once `deadline` has passed."""
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.transport.read(self.read_size, left)
            if data:
                self._pending.extend(self.decoder.feed(data))
        return self._pending.pop(0)

    def request(self, cmd: int, payload: bytes = b"", *, timeout: float | None = None,
                retries: int | None = None) -> bytes:
        """Send `cmd`, return the payload of its reply; SessionError on a device error."""
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        frame_errors = 0
        attempts = 0
        while attempts <= retries:
            seq = self._next_seq()
            self.transport.write(encode_frame(cmd, seq, payload), timeout)
            deadline = time.monotonic() + timeout
            resend = False
            while not resend:
                frame = self._frames(deadline)
                if frame is None:
                    attempts += 1
                    break  # timed out: send again
                if frame.type == MSG_ERROR:
                    code, msg = _parse_error(frame.payload)
                    if frame.seq == seq and code not in (ERR_FRAME, ERR_TOO_LONG):
                        raise SessionError(
                            f"device error {code} ({ERROR_NAMES.get(code, 'unknown')}) on command "
                            f"0x{cmd:02x}: {msg}"
                        )
                    if frame.seq == 0 and code in (ERR_FRAME, ERR_TOO_LONG):
                        frame_errors += 1
                        # our request may have been the corrupted one: send it again (bounded
                        # separately from timeouts, so a noisy line cannot loop forever)
                        resend = True
                        if frame_errors > self.MAX_FRAME_ERRORS:
                            attempts = retries + 1
                    continue
                if frame.seq != seq:
                    continue  # a stale reply to an earlier attempt
                if frame.type != (cmd | REPLY_BIT):
                    raise SessionError(
                        f"device replied type 0x{frame.type:02x} to command 0x{cmd:02x}; "
                        "host and firmware disagree on the protocol"
                    )
                return frame.payload
        raise SessionError(
            f"no reply to command 0x{cmd:02x} after {attempts} timed-out attempt(s) of {timeout:.1f} s"
            + (f" ({frame_errors} corrupted-frame report(s) from the device)" if frame_errors else "")
            + (f"; {self.decoder.dropped} malformed frame(s) dropped" if self.decoder.dropped else "")
            + ": is the firmware running the host_driven session, and is the transport right?"
        )

    # -- commands --

    def hello(self, *, timeout: float | None = None, retry_every: float = 1.0) -> dict[str, int]:
        """Version handshake; retried every `retry_every` s within `timeout` (boards boot slowly)."""
        total = self.timeout if timeout is None else timeout
        tries = max(1, int(total / retry_every + 0.5))
        reply = self.request(CMD_HELLO, bytes([PROTOCOL_VERSION]), timeout=min(retry_every, total),
                             retries=tries - 1)
        if len(reply) < 6 or reply[:2] != b"MT":
            raise SessionError(f"HELLO reply {reply!r} is not from a microtvm-tasks runtime")
        version = reply[2]
        (max_payload,) = struct.unpack_from("<H", reply, 4)
        self.device_version = version
        if version != PROTOCOL_VERSION:
            raise SessionError(
                f"the firmware speaks run protocol version {version}, this host speaks {PROTOCOL_VERSION}: "
                "regenerate and rebuild the project with this microtvm-tasks"
            )
        if max_payload < 64:
            raise SessionError(f"device advertises a max payload of {max_payload} bytes (minimum 64)")
        self.max_payload = max_payload
        return {"version": version, "max_payload": max_payload}

    def describe(self) -> ModelDesc:
        reply = self.request(CMD_DESCRIBE)
        if len(reply) < 9:
            raise SessionError(f"DESCRIBE reply too short ({len(reply)} bytes)")
        arena, n_in, n_out = struct.unpack_from("<IHH", reply)
        name = _parse_name(reply, 8)
        desc = ModelDesc(name=name, arena_bytes=arena)
        for kind, count, target in ((0, n_in, desc.inputs), (1, n_out, desc.outputs)):
            for i in range(count):
                target.append(self._describe_tensor(kind, i))
        self.description = desc
        return desc

    def _describe_tensor(self, kind: int, index: int) -> TensorDesc:
        reply = self.request(CMD_DESCRIBE_TENSOR, struct.pack("<BH", kind, index))
        try:
            rkind, rindex, dtype, ndim = struct.unpack_from("<BHBB", reply)
            shape = struct.unpack_from(f"<{ndim}i", reply, 5)
            off = 5 + 4 * ndim
            scale_bits, zp, nbytes = struct.unpack_from("<IiI", reply, off)
            name = _parse_name(reply, off + 12)
        except struct.error:
            raise SessionError(f"DESCRIBE_TENSOR reply malformed: {reply!r}") from None
        if (rkind, rindex) != (kind, index):
            raise SessionError(f"DESCRIBE_TENSOR answered tensor {rkind}/{rindex}, asked {kind}/{index}")
        from .mlf import DTYPE_BY_CODE as DTYPES  # run-protocol dtype code -> name

        if dtype not in DTYPES:
            raise SessionError(f"device reports dtype code {dtype} for tensor {name!r}; unknown to this host")
        scale = struct.unpack("<f", struct.pack("<I", scale_bits))[0] if scale_bits else None
        return TensorDesc(index, name, DTYPES[dtype], tuple(shape), nbytes, scale, zp)

    def _desc(self) -> ModelDesc:
        return self.description if self.description is not None else self.describe()

    def _payload(self) -> int:
        if self.max_payload is None:
            self.hello()
        assert self.max_payload is not None
        return self.max_payload

    def set_input(self, i: int, array: Any) -> None:
        """Load input `i`; float values for a quantised input are quantised first."""
        desc = self._desc()
        if not 0 <= i < len(desc.inputs):
            raise SessionError(f"input {i}: the model has {len(desc.inputs)} input(s)")
        t = desc.inputs[i]
        data = to_tensor_bytes(t, array)
        chunk = self._payload() - 6
        for off in range(0, len(data), chunk):
            part = data[off : off + chunk]
            reply = self.request(CMD_SET_INPUT, struct.pack("<HI", i, off) + part)
            if len(reply) != 8 or struct.unpack_from("<HIH", reply) != (i, off, len(part)):
                raise SessionError(f"SET_INPUT acknowledged {reply!r} for input {i} offset {off}")

    def run(self, n: int = 1, *, timeout: float | None = None) -> tuple[int, int]:
        """Run the model `n` times; returns (elapsed ticks for all n runs, tick frequency in Hz)."""
        if n < 1:
            raise SessionError("run count must be >= 1")
        timeout = timeout if timeout is not None else self.timeout * (1 + n / 100)
        reply = self.request(CMD_RUN, struct.pack("<I", n), timeout=timeout, retries=0)
        if len(reply) != 16:
            raise SessionError(f"RUN reply has {len(reply)} bytes, expected 16")
        count, lo, hi, hz = struct.unpack("<IIII", reply)
        if count != n:
            raise SessionError(f"RUN ran {count} times, asked {n}")
        return (hi << 32) | lo, hz

    def profile(self) -> list[int]:
        """Ticks of each operator in the last run (a profiling build, compiled with
        profile=True; operators in the order of the archive's src/<name>.profile.json)."""
        ticks: list[int] = []
        while True:
            reply = self.request(CMD_PROFILE, struct.pack("<H", len(ticks)))
            if len(reply) < 6:
                raise SessionError(f"PROFILE reply has {len(reply)} bytes, expected at least 6")
            num, first, count = struct.unpack_from("<HHH", reply)
            if first != len(ticks) or len(reply) != 6 + 4 * count or (count == 0 and first < num):
                raise SessionError(f"PROFILE reply for operators {first}+{count} of {num} is malformed")
            ticks += struct.unpack_from(f"<{count}I", reply, 6)
            if num == 0:
                raise SessionError(
                    "the firmware times no operators: it was not built from a profiling archive "
                    "(compile with profile=True, as `microtvm run --profile` and `microtvm tune` do)"
                )
            if len(ticks) >= num:
                return ticks

    def get_output_bytes(self, i: int) -> bytes:
        desc = self._desc()
        if not 0 <= i < len(desc.outputs):
            raise SessionError(f"output {i}: the model has {len(desc.outputs)} output(s)")
        t = desc.outputs[i]
        chunk = self._payload()
        out = bytearray()
        while len(out) < t.nbytes:
            want = min(chunk, t.nbytes - len(out))
            part = self.request(CMD_GET_OUTPUT, struct.pack("<HIH", i, len(out), want))
            if len(part) != want:
                raise SessionError(f"GET_OUTPUT returned {len(part)} bytes, asked {want}")
            out += part
        return bytes(out)

    def get_output(self, i: int) -> Any:
        """Output `i` as a numpy array of its dtype and shape."""
        import numpy as np

        data = self.get_output_bytes(i)
        t = self._desc().outputs[i]
        return np.frombuffer(data, dtype=t.dtype).reshape(t.shape).copy()


def to_tensor_bytes(t: TensorDesc, array: Any) -> bytes:
    """`array` as the raw bytes of tensor `t` (quantising floats for a quantised tensor)."""
    import numpy as np

    a = np.asarray(array)
    if a.size * np.dtype(t.dtype).itemsize != t.nbytes:
        raise SessionError(
            f"input {t.name!r}: {a.size} values of shape {a.shape} given, the model needs shape "
            f"{list(t.shape)} ({t.nbytes // np.dtype(t.dtype).itemsize} values)"
        )
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        bad = int(a.size - np.isfinite(a).sum())
        raise SessionError(f"input {t.name!r}: {bad} of {a.size} values are NaN or infinite; the model "
                           "needs finite numbers")
    if a.dtype.kind == "f" and t.quantized:
        info = np.iinfo(t.dtype)
        lo, hi = (info.min - t.zero_point) * t.scale, (info.max - t.zero_point) * t.scale
        clipped = int(np.count_nonzero((a < lo - t.scale / 2) | (a > hi + t.scale / 2)))
        if clipped:
            import sys

            print(f"microtvm: warning: input {t.name!r}: {clipped} of {a.size} values lie outside the "
                  f"quantised range [{lo:.6g}, {hi:.6g}] (scale {t.scale:.6g}, zero point {t.zero_point}) "
                  "and were clipped to it", file=sys.stderr)
        a = t.quantize(a)
    elif a.dtype != np.dtype(t.dtype):
        if a.dtype.kind in "iub" and np.dtype(t.dtype).kind in "iu":
            info = np.iinfo(t.dtype)
            if a.size and (a.min() < info.min or a.max() > info.max):
                raise SessionError(f"input {t.name!r}: values outside the range of {t.dtype}")
        elif not (a.dtype.kind in "iubf" and np.dtype(t.dtype).kind == "f"):
            raise SessionError(f"input {t.name!r}: cannot use {a.dtype} values for a {t.dtype} tensor")
        a = a.astype(t.dtype)
    return np.ascontiguousarray(a, dtype=t.dtype).tobytes()


def _parse_name(buf: bytes, off: int) -> str:
    if off >= len(buf):
        raise SessionError("reply truncated before the name")
    n = buf[off]
    return buf[off + 1 : off + 1 + n].decode("utf-8", errors="replace")


def _parse_error(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        return 0, "(empty error frame)"
    (code,) = struct.unpack_from("<H", payload)
    return code, payload[2:].decode("ascii", errors="replace")


# ---- the whole run ------------------------------------------------------------------------


@dataclass
class RunResult:
    """What `run_project` returns."""

    outputs: list[Any]
    inputs: list[Any]
    timings: list[float]  # seconds per inference, one entry per repeat (device ticks / Hz / number)
    description: ModelDesc
    ticks: list[int] = field(default_factory=list)
    tick_hz: int = 0
    round_trip_s: float = 0.0  # wall time of set inputs + one RUN + get outputs, over the transport
    number: int = 1  # runs per measurement
    op_ticks: list[int] | None = None  # a profiling build: ticks per operator in the last run

    def summary(self) -> dict[str, Any]:
        import statistics

        return {
            "model": self.description.name,
            "repeat": len(self.timings),
            "number": self.number,
            "tick_hz": self.tick_hz,
            "ticks": self.ticks,
            "seconds_per_inference": self.timings,
            "median_seconds_per_inference": statistics.median(self.timings) if self.timings else None,
            "round_trip_seconds": self.round_trip_s,
            "description": self.description.to_dict(),
        }


def make_inputs(desc: ModelDesc, inputs: Any = None, *, fill_mode: str = "random",
                seed: int | None = 0) -> list[Any]:
    """The arrays to load: given ones (a list, or a mapping by ``input_<i>`` or tensor name),
    the rest filled with zeros, ones or seeded random values of the tensor's dtype."""
    import numpy as np

    if fill_mode not in ("zeros", "ones", "random"):
        raise SessionError(f"fill mode {fill_mode!r}: use zeros, ones or random")
    rng = np.random.default_rng(seed)
    given: dict[int, Any] = {}
    if isinstance(inputs, (list, tuple)):
        given = dict(enumerate(inputs))
    elif inputs is not None:
        names = {t.name: t.index for t in desc.inputs}
        for key in inputs:
            if key in names:
                given[names[key]] = inputs[key]
            elif key.startswith("input_") and key[6:].isdigit() and int(key[6:]) < len(desc.inputs):
                given[int(key[6:])] = inputs[key]
            else:
                raise SessionError(
                    f"input {key!r} is not one of the model's inputs "
                    f"({', '.join(f'input_{t.index} / {t.name}' for t in desc.inputs)})"
                )
    out = []
    for t in desc.inputs:
        if t.index in given:
            a = np.asarray(given[t.index])
            want = tuple(t.shape)
            if a.shape != want and not (want[:1] == (1,) and a.shape == want[1:]):
                # equal element counts are not enough: (1, 10, 49, 1) for [1, 49, 10, 1] would
                # run on transposed data; only a left-out leading batch axis of 1 is added
                raise SessionError(
                    f"input {t.name!r}: shape {list(a.shape)} given, the model needs {list(want)}"
                    + (f" (or {list(want[1:])}, without the batch axis)" if want[:1] == (1,) else "")
                )
            out.append(a.reshape(want))
            continue
        if fill_mode == "zeros":
            out.append(np.zeros(t.shape, dtype=t.dtype))
        elif fill_mode == "ones":
            out.append(np.ones(t.shape, dtype=t.dtype))
        elif np.dtype(t.dtype).kind == "f":
            out.append(rng.standard_normal(t.shape).astype(t.dtype))
        else:
            info = np.iinfo(t.dtype)
            out.append(rng.integers(info.min, info.max, size=t.shape, endpoint=True).astype(t.dtype))
    return out


def _remembered_layer(project_dir: Path) -> Layer | None:
    """The options given at create time, as `options.resolve`'s `.tvmc.json` layer (typed
    when they were recorded); None for a project without a .tvmc.json (one generated
    straight through the Project API)."""
    from .state import STATE_FILE, try_load_state

    st = try_load_state(project_dir)
    return None if st is None else Layer(st.options, f"{project_dir / STATE_FILE}", typed=True)


def _open_transport_options(client: Any, project_dir: Path, options: Mapping[str, Any] | None,
                            raw_options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """open_transport's options through `options.resolve` (the one way to a call's options):
    `.tvmc.json`, then `options`, then `raw_options` from the command line, typed, checked
    and filtered against what the project's server declares (defaults filled, as for build
    and flash, when the project has its `.tvmc.json`)."""
    from .server_info import TVM_VERSION

    info = client.server_info_query(TVM_VERSION)
    where = f"options of {project_dir}"
    if raw_options:  # a command-line option run would ignore is an error, not silence
        from .options import check_taken, coerce_options

        cli = "--option on the command line"
        po = info.get("project_options", [])
        check_taken(coerce_options(raw_options, po, where=cli), po, "open_transport", cli)
    remembered = _remembered_layer(project_dir)
    call = resolve("open_transport", remembered, Layer(options, where),
                   Layer(raw_options, "--option on the command line"), server_info=info, where=where)
    if remembered is None:
        # No .tvmc.json (generated straight through the Project API): the generate-time
        # options are known only to the template's own record, so pass just what was given
        # here; the declared defaults would override that record (emulate=true, say).
        given = set(options or {}) | set(raw_options or {})
        call = {name: value for name, value in call.items() if name in given}
    return call


def run_session(session: Session, inputs: Any = None, *, fill_mode: str = "random", repeat: int = 1,
                number: int = 1, seed: int | None = 0, profile: bool = False) -> RunResult:
    """Handshake, describe, load inputs, run `repeat` x RUN `number`, read the outputs (and,
    with `profile`, the ticks of each operator in the last run)."""
    if repeat < 1 or number < 1:
        raise SessionError("repeat and number must be >= 1")
    if session.max_payload is None:
        session.hello()
    desc = session.describe()
    arrays = make_inputs(desc, inputs, fill_mode=fill_mode, seed=seed)
    t0 = time.perf_counter()
    for i, a in enumerate(arrays):
        session.set_input(i, a)
    ticks_list, hz = [], 0
    ticks, hz = session.run(number)
    ticks_list.append(ticks)
    outputs = [session.get_output(i) for i in range(len(desc.outputs))]
    round_trip = time.perf_counter() - t0
    for _ in range(repeat - 1):
        ticks, hz = session.run(number)
        ticks_list.append(ticks)
    timings = [t / hz / number if hz else 0.0 for t in ticks_list]
    op_ticks = session.profile() if profile else None
    return RunResult(outputs=outputs, inputs=arrays, timings=timings, description=desc, ticks=ticks_list,
                     tick_hz=hz, round_trip_s=round_trip, number=number, op_ticks=op_ticks)


def run_project(project_dir: str | Path, inputs: Any = None, *, fill_mode: str = "random", repeat: int = 1,
                number: int = 1, options: dict[str, Any] | None = None, seed: int | None = 0,
                timeout: float = 30.0, raw_options: dict[str, str] | None = None,
                profile: bool = False) -> RunResult:
    """`microtvm run`: start the project's server, open its transport, run, close, reap.

    open_transport gets its options from `options.resolve`, as build and flash do: the
    options given at create time (`.tvmc.json`), then `options` (e.g. projects.yaml's),
    then `raw_options` (strings from the command line), each typed and checked against the
    server's option metadata, and only those open_transport takes are passed.

    The HELLO handshake waits as long as open_transport's TransportTimeouts say (a board
    that boots slowly says so); each later reply waits `timeout` s, or longer when the
    platform says its replies may take longer (an emulator).
    """
    from .platforms import is_template_dir
    from .project_api.client import instantiate_from_dir

    project_dir = Path(project_dir)
    if not is_template_dir(project_dir):
        raise SessionError(
            f"{project_dir}: not a generated project (no microtvm_api_server.py); create it first"
        )
    with instantiate_from_dir(project_dir) as client:
        opts = _open_transport_options(client, project_dir, options, raw_options)
        timeouts = transport_timeouts(client.open_transport(opts))
        start_timeout = _timeout_field(timeouts, "session_start_timeout_sec", timeout)
        retry_every = _timeout_field(timeouts, "session_start_retry_timeout_sec", 0.0) or start_timeout
        # a platform that says its replies may take longer (an emulator) gets that long
        reply_timeout = max(timeout, _timeout_field(timeouts, "session_established_timeout_sec", timeout))
        try:
            session = Session(ProjectAPITransport(client), timeout=reply_timeout)
            session.hello(timeout=start_timeout, retry_every=min(retry_every, start_timeout))
            return run_session(session, inputs, fill_mode=fill_mode, repeat=repeat, number=number, seed=seed,
                               profile=profile)
        finally:
            try:
                client.close_transport()
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                pass


def read_standalone_output(project_dir: str | Path, *, timeout: float = 30.0,
                           options: dict[str, Any] | None = None) -> str:
    """Start an aot_standalone_demo project (open_transport) and return the text it prints,
    up to its ``mt: status`` line (or until it exits); SessionError if it prints nothing."""
    from .project_api import server
    from .project_api.client import instantiate_from_dir

    project_dir = Path(project_dir)
    text = b""
    with instantiate_from_dir(project_dir) as client:
        client.open_transport(_open_transport_options(client, project_dir, options))
        deadline = time.monotonic() + timeout
        try:
            while b"mt: status" not in text or not text.rstrip(b"\r").endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    text += client.read_transport(4096, min(left, 1.0))
                except server.IoTimeoutError:
                    continue
                except server.TransportClosedError:
                    break
        finally:
            try:
                client.close_transport()
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                pass
    if b"mt: " not in text:
        raise SessionError(
            f"{project_dir}: the standalone demo printed nothing recognisable in {timeout:.0f} s"
            + (f" (got {text[:200]!r})" if text else "")
        )
    return text.decode("utf-8", errors="replace")


def transport_timeouts(reply: Any) -> Any:
    """The TransportTimeouts of an open_transport reply.

    Over the wire (our client, as TVM v0.18's) the reply is ``{"timeouts": {...}}``; TVM's
    ``tvm.micro.project`` unwraps it into a ``TransportTimeouts``. Either form is accepted,
    as is a bare mapping of the three fields.
    """
    if isinstance(reply, dict) and "timeouts" in reply:
        return reply["timeouts"]
    return reply


def _timeout_field(timeouts: Any, name: str, default: float) -> float:
    """One TransportTimeouts field (a mapping or a namedtuple) in seconds; `default` when it
    is absent, None or 0 (TVM: 0 means "no limit" / "no retry": the caller's own bound)."""
    value = timeouts.get(name) if isinstance(timeouts, dict) else getattr(timeouts, name, None)
    return float(value) if value else default


def __getattr__(name: str) -> Any:
    """`session.DTYPES` (code -> dtype name) stays importable; mlf.py owns the table, and
    is imported only when asked, so importing session stays cheap."""
    if name == "DTYPES":
        from .mlf import DTYPE_BY_CODE

        return DTYPE_BY_CODE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
