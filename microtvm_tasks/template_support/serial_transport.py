"""The run protocol's byte pipe over pyserial, with the Project API's error semantics.

The host session must tell "slow" from "gone": a read that got nothing in time raises
IoTimeoutError, a port that vanished, a socket that closed or an emulator that exited
raises TransportClosedError (its reason in ``data``, since the class name is what travels).
Boards (a device path) and emulators (QEMU's pty, or a ``socket://`` URL to a UART on a
loopback socket) use the same class.

A ``socket://`` URL is served by `SocketPort` here, not by pyserial's socket handler: an
emulated UART needs TCP_NODELAY (small request frames must not wait for Nagle's
algorithm) and must keep what the firmware printed before we connected (pyserial's
open() drops pending input), and neither is reachable through pyserial's public API.
"""

from __future__ import annotations

import logging
import select
import socket
import subprocess
import time
from typing import Any

from microtvm_tasks.project_api import server
from microtvm_tasks.template_support.processes import kill_group

_LOG = logging.getLogger(__name__)

DEFAULT_BAUD = 115200


def read_available(port: Any, n: int, timeout_sec: float | None) -> bytes:
    """Wait up to `timeout_sec` for one byte, then take whatever else is there (up to n).

    pyserial's read(n) waits for all n bytes; the Project API wants what has arrived.
    """
    port.timeout = timeout_sec
    data = port.read(1)
    if data and n > 1:
        port.timeout = 0
        data += port.read(n - 1)
    return data


class SocketPort:
    """A TCP connection with the part of pyserial's port interface this module uses: `read`
    (up to `timeout` seconds for n bytes; None waits, 0 takes what is there), `write`
    (within `write_timeout`), `flush`, `close`. A connection the peer closed raises
    ConnectionError, as pyserial raises SerialException("socket disconnected")."""

    def __init__(self, host: str, port: int, *, timeout: float | None = 1.0,
                 write_timeout: float | None = 10.0, connect_timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)
        self.timeout = timeout
        self.write_timeout = write_timeout

    @classmethod
    def for_url(cls, url: str, **kwargs: Any) -> SocketPort:
        """`socket://HOST:PORT` (pyserial's URL form)."""
        host, _, port = url[len("socket://"):].partition("/")[0].rpartition(":")
        return cls(host or "127.0.0.1", int(port), **kwargs)

    def read(self, n: int) -> bytes:
        data = bytearray()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while len(data) < n:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._sock], [], [], wait)
            if not ready:
                break
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("socket disconnected")
            data += chunk
            if deadline is not None and time.monotonic() >= deadline:
                break
        return bytes(data)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        deadline = None if self.write_timeout is None else time.monotonic() + self.write_timeout
        while view:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, ready, _ = select.select([], [self._sock], [], wait)
            if not ready:
                raise TimeoutError(f"could not write {len(view)} bytes within {self.write_timeout} s")
            view = view[self._sock.send(view):]
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here (send hands bytes to the kernel)."""

    def close(self) -> None:
        self._sock.close()


class SerialTransport:
    """A serial device or ``socket://`` URL, optionally tied to the emulator process behind it.

    `escape_ctrl_a` doubles 0x01 bytes on writes: QEMU's mux chardev (console + monitor)
    treats 0x01 as its escape character. `close` also kills the emulator's process group.
    """

    def __init__(
        self,
        url: str,
        baud: int = DEFAULT_BAUD,
        *,
        proc: subprocess.Popen | None = None,
        escape_ctrl_a: bool = False,
    ) -> None:
        import serial  # lazy: pyserial only when a transport opens

        self._serial_mod = serial
        self._proc = proc
        self._escape = escape_ctrl_a
        self.url = url
        self._ser: Any
        if url.startswith("socket://"):
            self._ser = SocketPort.for_url(url)
        else:
            self._ser = serial.Serial(url, baudrate=baud, timeout=1.0, write_timeout=10.0)

    def _emulator_exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def _gone(self, why: str) -> server.TransportClosedError:
        """TransportClosedError travels by class name; the reason goes in its data and the log."""
        detail = f"{self.url}: {why}"
        if self._emulator_exited():
            assert self._proc is not None
            detail += f" (emulator exited with status {self._proc.returncode})"
        _LOG.warning("transport closed: %s", detail)
        return server.TransportClosedError(data={"detail": detail})

    def read(self, n: int, timeout_sec: float | None) -> bytes:
        """Between 1 and n bytes, or IoTimeoutError / TransportClosedError."""
        if self._ser is None:
            raise server.TransportClosedError()
        if self._emulator_exited():
            raise self._gone("emulator is not running")
        try:
            data = read_available(self._ser, n, timeout_sec)
        except (self._serial_mod.SerialException, OSError) as err:
            raise self._gone(str(err)) from err
        if not data:
            if self._emulator_exited():
                raise self._gone("emulator exited")
            raise server.IoTimeoutError()
        return data

    def write(self, data: bytes, timeout_sec: float | None) -> None:
        """All of `data`, or IoTimeoutError / TransportClosedError."""
        if self._ser is None:
            raise server.TransportClosedError()
        if self._emulator_exited():
            raise self._gone("emulator is not running")
        if self._escape:
            data = data.replace(b"\x01", b"\x01\x01")
        try:
            self._ser.write_timeout = timeout_sec
            self._ser.write(data)
            self._ser.flush()
        except (self._serial_mod.SerialTimeoutException, TimeoutError) as err:
            raise server.IoTimeoutError() from err
        except (self._serial_mod.SerialException, OSError) as err:
            raise self._gone(str(err)) from err

    def close(self) -> None:
        """Close the port and stop the emulator; idempotent."""
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing a dead port must not mask the real error
                pass
        if self._proc is not None:
            kill_group(self._proc)
            self._proc = None


class TransportHandlerMixin:
    """close/read/write_transport of a handler holding one transport in ``self._transport``
    (anything with read, write and close), so each template only writes open_transport."""

    _transport: Any = None

    def close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        if self._transport is None:
            raise server.TransportClosedError()
        return self._transport.read(n, timeout_sec)

    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        if self._transport is None:
            raise server.TransportClosedError()
        self._transport.write(data, timeout_sec)
