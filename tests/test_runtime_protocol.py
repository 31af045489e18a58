"""Run-protocol framing on the host side (`frames.py`): CRC, stuffing, resynchronisation, truncation."""

from __future__ import annotations

import random
import struct

from microtvm_tasks.frames import ESC, FLAG, FrameDecoder, crc16, decode_body, encode_frame


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_frame_layout_and_stuffing():
    wire = encode_frame(0x04, 9, bytes([FLAG, ESC, 1]))
    assert wire[0] == FLAG and wire[-1] == FLAG
    assert FLAG not in wire[1:-1]  # every FLAG/ESC inside is escaped
    body = decode_body(wire[1:-1])
    assert body is not None and (body.type, body.seq, body.payload) == (0x04, 9, bytes([FLAG, ESC, 1]))
    # the raw body: type seq len(2) payload crc(2)
    raw = bytes([0x04, 9]) + struct.pack("<H", 3) + bytes([FLAG, ESC, 1])
    assert wire == bytes([FLAG]) + raw.replace(bytes([ESC]), bytes([ESC, ESC ^ 0x20])).replace(
        bytes([FLAG]), bytes([ESC, FLAG ^ 0x20])) + _stuffed_crc(raw) + bytes([FLAG])


def _stuffed_crc(raw: bytes) -> bytes:
    crc = struct.pack("<H", crc16(raw))
    crc = crc.replace(bytes([ESC]), bytes([ESC, ESC ^ 0x20]))
    return crc.replace(bytes([FLAG]), bytes([ESC, FLAG ^ 0x20]))


def test_decoder_skips_boot_chatter_and_noise():
    dec = FrameDecoder()
    chatter = b"*** Booting Zephyr OS ~ build v3.5 ***\r\nuart ready\r\n"
    frames = dec.feed(chatter + encode_frame(0x81, 1, b"MT\x01\x00\x00\x01") + b"\x00\xff noise" +
                      encode_frame(0x82, 2, b"abc"))
    got = [(f.type, f.seq, f.payload) for f in frames]
    assert got == [(0x81, 1, b"MT\x01\x00\x00\x01"), (0x82, 2, b"abc")]
    assert dec.dropped >= 1  # the chatter after the '~' and the noise were dropped, not misread


def test_decoder_handles_any_split_of_the_stream():
    rng = random.Random(1)
    frames = [encode_frame(rng.randrange(256), rng.randrange(1, 256), rng.randbytes(rng.randrange(0, 300)))
              for _ in range(20)]
    stream = b"".join(frames)
    for _ in range(20):
        dec = FrameDecoder()
        got = []
        pos = 0
        while pos < len(stream):
            step = rng.randrange(1, 40)
            got += dec.feed(stream[pos : pos + step])
            pos += step
        assert [encode_frame(f.type, f.seq, f.payload) for f in got] == frames


def test_truncated_and_corrupted_frames_are_dropped_and_the_next_frame_survives():
    good = encode_frame(0x86, 5, b"\x01\x02\x03\x04")
    rng = random.Random(2)
    for cut in range(1, len(good) - 1):
        dec = FrameDecoder()
        assert [f.payload for f in dec.feed(good[:cut] + good)] == [b"\x01\x02\x03\x04"]
    for _ in range(200):
        bad = bytearray(good)
        i = rng.randrange(1, len(bad) - 1)
        bad[i] ^= 1 << rng.randrange(8)
        dec = FrameDecoder()
        frames = dec.feed(bytes(bad) + good)
        assert frames[-1].payload == b"\x01\x02\x03\x04"
        assert all(f.payload == b"\x01\x02\x03\x04" for f in frames)  # a flipped bit is never accepted


def test_length_field_must_match():
    body = bytes([0x01, 1]) + struct.pack("<H", 5) + b"abc"
    body += struct.pack("<H", crc16(body))
    assert decode_body(body) is None
    assert decode_body(b"\x01\x02\x03") is None
    assert decode_body(bytes([ESC])) is None


def test_decoder_memory_is_bounded_without_flags():
    dec = FrameDecoder(max_body=100)
    for _ in range(100):
        dec.feed(b"\x55" * 1000)
    assert len(dec._buf) <= 202
    assert [f.seq for f in dec.feed(bytes([FLAG]) + encode_frame(1, 3, b""))] == [3]


def test_the_codec_is_importable_from_session_too():
    """frames.py is the codec's home; users and older code import it from session."""
    from microtvm_tasks import frames, mlf, session

    for name in ("crc16", "encode_frame", "decode_body", "Frame", "FrameDecoder", "FLAG", "ESC",
                 "PROTOCOL_VERSION", "CMD_HELLO", "MSG_ERROR", "ERR_FRAME", "ERROR_NAMES"):
        assert getattr(session, name) is getattr(frames, name), name
    assert session.DTYPES is mlf.DTYPE_BY_CODE  # the one dtype table
