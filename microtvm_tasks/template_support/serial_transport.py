"""The run protocol's byte pipe over pyserial, with the Project API's error semantics.

The host session must tell "slow" from "gone": a read that got nothing in time raises
IoTimeoutError, a port that vanished, a socket that closed or an emulator that exited
raises TransportClosedError (its reason in ``data``, since the class name is what travels).
Boards (a device path) and emulators (QEMU's pty, or a ``socket://`` URL to a UART on a
loopback socket) use the same class.
"""

from __future__ import annotations

import logging
import socket
import subprocess
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
        if url.startswith("socket://"):
            self._ser = serial.serial_for_url(url, timeout=1.0, write_timeout=10.0)
            sock = getattr(self._ser, "_socket", None)
            if sock is not None:  # small request frames must not wait for Nagle's algorithm
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        except self._serial_mod.SerialTimeoutException as err:
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
