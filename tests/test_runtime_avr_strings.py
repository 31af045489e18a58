"""The runtime's fixed texts stay in flash on AVR, and the device still sends them.

On AVR, string literals are copied into RAM at start-up (an Uno has 2 KiB). The runtime's
error messages (about 540 bytes) and the standalone demo's labels are MT_PSTR literals
(mt_text.h): PROGMEM there, read back with pgm_read_byte. Checked twice: in the object
files (no .data/.rodata text, the messages in .progmem.data) and on an emulated Uno, whose
error replies must carry the message text read from flash.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import microtvm_tasks.templates as templates_pkg
import pytest

import microtvm_tasks.runtime as runtime_pkg
from microtvm_tasks.project_api.client import instantiate_from_dir
from microtvm_tasks.runtime.fake_mlf import write_fake_mlf

RUNTIME = Path(runtime_pkg.__file__).parent
ARDUINO = Path(templates_pkg.__file__).parent / "arduino"
AVR_CFLAGS = ["-mmcu=atmega328p", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror", "-DMT_MAX_PAYLOAD=64"]

needs_avr_gcc = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and shutil.which("avr-objdump")),
    reason="avr-gcc/avr-objdump missing (apt-get install gcc-avr binutils-avr avr-libc)",
)
needs_emulator = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and shutil.which("qemu-system-avr") and Path("/usr/share/arduino").is_dir()),
    reason="AVR toolchain or qemu-system-avr missing (apt-get install gcc-avr avr-libc arduino-core-avr "
    "arduino-mk qemu-system-misc)",
)


def _sections(obj: Path) -> dict[str, bytes]:
    """Section name -> contents of an object file (from avr-objdump -s)."""
    dump = subprocess.run(
        ["avr-objdump", "-s", str(obj)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    out: dict[str, bytearray] = {}
    current = None
    for line in dump.splitlines():
        m = re.match(r"Contents of section (\S+):", line)
        if m:
            current = out.setdefault(m.group(1), bytearray())
        elif current is not None and re.match(r"^ [0-9a-f]{4,} ", line):
            words = line[1:].split("  ")[0].split()[1:]
            current.extend(bytes.fromhex("".join(words)))
    return {k: bytes(v) for k, v in out.items()}


def _compile(tmp_path: Path, source: str, *defines: str) -> dict[str, bytes]:
    obj = tmp_path / (Path(source).stem + "".join(d.replace("=", "_") for d in defines) + ".o")
    subprocess.run(
        ["avr-gcc", *AVR_CFLAGS, *defines, f"-I{RUNTIME}", "-c", str(RUNTIME / source), "-o", str(obj)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return _sections(obj)


@needs_avr_gcc
def test_error_messages_are_in_flash_not_ram(tmp_path):
    sections = _compile(tmp_path, "mt_session.c")
    ram_text = b"".join(v for k, v in sections.items() if k.startswith((".data", ".rodata")))
    assert ram_text == b"", sections.keys()
    flash = sections.get(".progmem.data", b"")
    for message in (b"no such tensor", b"unknown command", b"bad frame (CRC or length)",
                    b"send HELLO with protocol version 1 first"):
        assert message in flash
    assert len(flash) > 400  # the whole table of messages, none of it in RAM
    # codes only (MT_TERSE_ERRORS=1) drops the texts from flash as well
    terse = _compile(tmp_path, "mt_session.c", "-DMT_TERSE_ERRORS=1")
    assert b"no such tensor" not in b"".join(terse.values())


@needs_avr_gcc
def test_standalone_labels_are_in_flash_not_ram(tmp_path):
    sections = _compile(tmp_path, "mt_standalone.c")
    ram = b"".join(v for k, v in sections.items() if k.startswith((".data", ".rodata")))
    assert ram == b"", sections.keys()  # no texts, and no switch tables either
    flash = sections.get(".progmem.data", b"")
    for label in (b"mt: output ", b"mt: ticks ", b"\nmt: status ", b"float32", b"real ="):
        assert label in flash


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_emulated_uno_error_replies_carry_the_message_read_from_flash(tmp_path):
    import numpy as np

    from microtvm_tasks.errors import SessionError
    from microtvm_tasks.session import CMD_DESCRIBE_TENSOR, CMD_RUN, ProjectAPITransport, Session

    mlf = write_fake_mlf(tmp_path / "fake.tar")
    project = tmp_path / "uno"
    with instantiate_from_dir(ARDUINO, timeout=120) as client:
        client.generate_project(
            model_library_format_path=str(mlf), standalone_crt_dir=None, project_dir=str(project),
            options={"board": "uno", "project_type": "host_driven", "emulate": True},
        )
    with instantiate_from_dir(project, timeout=600) as client:
        client.build({})
        client.open_transport({})
        try:
            session = Session(ProjectAPITransport(client), timeout=10.0)
            session.hello(timeout=20.0)
            with pytest.raises(SessionError, match=r"device error 5 .*: no such tensor$"):
                session.request(CMD_DESCRIBE_TENSOR, bytes([0, 99, 0]))
            with pytest.raises(SessionError, match=r"device error 4 .*: RUN count must be >= 1$"):
                session.request(CMD_RUN, struct.pack("<I", 0), retries=0)
            # and the session still works after the errors
            session.set_input(0, np.zeros(4, dtype=np.int8))
            session.run(1)
        finally:
            client.close_transport()


def _standalone_text(client, *, end: bytes = b"mt: status", timeout: float = 60.0) -> str:
    """Read a standalone demo's output from an open transport up to its last line."""
    import time

    out = b""
    deadline = time.monotonic() + timeout
    while not (end in out and out.endswith(b"\n")):
        assert time.monotonic() < deadline, out
        try:
            out += client.read_transport(256, 1.0)
        except Exception as exc:  # IoTimeoutError: nothing yet
            if type(exc).__name__ != "IoTimeoutError":
                raise
    return out.decode()


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_emulated_uno_standalone_demo_prints_its_flash_labels_like_the_host(tmp_path):
    """The demo's labels and dtype names, read from flash on the Uno, give the same lines as
    the host build of the same model (the values differ: each template bakes in its own
    default input; so do the ticks)."""
    if not shutil.which("cc") or not shutil.which("make"):
        pytest.skip("cc/make missing")
    mlf = write_fake_mlf(tmp_path / "fake.tar")
    texts = {}
    for platform, options in (
        ("arduino", {"board": "uno", "project_type": "aot_standalone_demo", "emulate": True}),
        ("host", {"project_type": "aot_standalone_demo"}),
    ):
        project = tmp_path / platform
        with instantiate_from_dir(ARDUINO.parent / platform, timeout=120) as client:
            client.generate_project(
                model_library_format_path=str(mlf), standalone_crt_dir=None, project_dir=str(project),
                options=options,
            )
        with instantiate_from_dir(project, timeout=600) as client:
            client.build({})
            client.open_transport({})
            try:
                texts[platform] = _standalone_text(client)
            finally:
                client.close_transport()
    def labels(text: str) -> str:
        text = re.sub(r"mt: ticks \d+ hz \d+", "mt: ticks N hz N", text)
        return re.sub(r" =( -?[0-9.e+-]+)+$", " = ...", text, flags=re.M)

    avr, host = labels(texts["arduino"]), labels(texts["host"])
    assert "mt: output 0 y int8 [1,4] = ...\n" in avr and "mt: output 1 z float32 [2] = ...\n" in avr, avr
    assert avr.endswith("mt: status 0\n") and avr == host
