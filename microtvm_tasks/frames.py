"""The run protocol's wire format (microtvm_tasks/runtime/PROTOCOL.md), host side.

The constants (protocol version, frame bytes, command, reply and error codes)
and the frame codec: CRC-16, byte stuffing, `encode_frame`, and `FrameDecoder`, which
turns a byte stream into checked `Frame`s. They mirror mt_frame.c / mt_session.h on the
firmware side; `session.py` speaks the protocol with them, tests and fake devices build
frames with them. Standard library only, nothing of ours: cheap to import anywhere.

Frames are delimited (0x7E, byte-stuffed) and CRC-16 checked, so boot chatter or line noise
between frames is skipped: the decoder drops anything that is not a well-formed frame.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 1

FLAG = 0x7E
ESC = 0x7D
XOR = 0x20
HEADER = 4
CRC = 2

CMD_HELLO = 0x01
CMD_DESCRIBE = 0x02
CMD_DESCRIBE_TENSOR = 0x03
CMD_SET_INPUT = 0x04
CMD_RUN = 0x05
CMD_GET_OUTPUT = 0x06
CMD_PROFILE = 0x07
REPLY_BIT = 0x80
MSG_ERROR = 0x7F

ERR_FRAME = 1
ERR_TOO_LONG = 2
ERR_UNKNOWN_CMD = 3
ERR_BAD_ARGS = 4
ERR_INDEX = 5
ERR_RANGE = 6
ERR_RUN = 7
ERR_NO_HELLO = 8
ERR_VERSION = 9
ERROR_NAMES = {
    ERR_FRAME: "bad frame",
    ERR_TOO_LONG: "frame too long",
    ERR_UNKNOWN_CMD: "unknown command",
    ERR_BAD_ARGS: "bad arguments",
    ERR_INDEX: "no such tensor",
    ERR_RANGE: "out of range",
    ERR_RUN: "model run failed",
    ERR_NO_HELLO: "no handshake",
    ERR_VERSION: "version mismatch",
}



def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as mt_crc16() in mt_frame.c."""
    return binascii.crc_hqx(data, crc)


def _stuff(body: bytes) -> bytes:
    body = body.replace(bytes([ESC]), bytes([ESC, ESC ^ XOR]))
    return body.replace(bytes([FLAG]), bytes([ESC, FLAG ^ XOR]))


def encode_frame(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame on the wire: FLAG, stuffed(type seq len payload crc), FLAG."""
    body = struct.pack("<BBH", ftype, seq, len(payload)) + bytes(payload)
    body += struct.pack("<H", crc16(body))
    return bytes([FLAG]) + _stuff(body) + bytes([FLAG])


@dataclass
class Frame:
    """A received frame that passed its length and CRC checks."""

    type: int
    seq: int
    payload: bytes


class FrameDecoder:
    """Turns a byte stream into frames, dropping whatever between two FLAGs is not a frame.

    `max_body` bounds the bytes kept for one candidate (a stream of garbage without FLAGs
    cannot grow memory without limit). `dropped` counts discarded non-empty candidates.
    """

    def __init__(self, max_body: int = HEADER + 65535 + CRC) -> None:
        self.max_body = max_body
        self._buf = bytearray()
        self._overflow = False
        self.dropped = 0

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        start = 0
        while True:
            i = data.find(FLAG, start)
            chunk = data[start:] if i < 0 else data[start:i]
            if not self._overflow:
                self._buf += chunk
                if len(self._buf) > 2 * self.max_body + 2:
                    self._overflow = True
                    self._buf.clear()
            if i < 0:
                return frames
            frame = self._finish()
            if frame is not None:
                frames.append(frame)
            start = i + 1

    def _finish(self) -> Frame | None:
        raw, overflow = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            self.dropped += 1
            return None
        if not raw:
            return None
        frame = decode_body(raw)
        if frame is None:
            self.dropped += 1
        return frame


def decode_body(stuffed: bytes) -> Frame | None:
    """Unstuff and check one candidate (the bytes between two FLAGs); None if not a frame."""
    body = bytearray()
    it = iter(stuffed)
    for b in it:
        if b == ESC:
            nxt = next(it, None)
            if nxt is None:
                return None
            body.append(nxt ^ XOR)
        else:
            body.append(b)
    if len(body) < HEADER + CRC:
        return None
    ftype, seq, length = struct.unpack_from("<BBH", body)
    if length != len(body) - HEADER - CRC:
        return None
    (crc,) = struct.unpack_from("<H", body, len(body) - CRC)
    if crc != crc16(bytes(body[:-CRC])):
        return None
    return Frame(ftype, seq, bytes(body[HEADER:-CRC]))
