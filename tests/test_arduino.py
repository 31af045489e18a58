"""The arduino template: boards as data, sketch generation for every board through a real
Project API server process, the AVR build with Debian's arduino-mk (flash/RAM checked with
avr-size), and the sine model on an emulated Uno (qemu-system-avr) matching the TFLite Micro
interpreter bit for bit. Tests needing a missing tool skip with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import SINE_TFLITE as SINE
from conftest import TEMPLATES_DIR, generate_project, load_server_module

from microtvm_tasks.errors import ToolNotFoundError
from microtvm_tasks.project_api import server
from microtvm_tasks.project_api.client import instantiate_from_dir
from microtvm_tasks.runtime.fake_mlf import fake_mlf_members, fake_reference, write_fake_mlf

TEMPLATE = TEMPLATES_DIR / "arduino"
BOARDS = json.loads((TEMPLATE / "boards.json").read_text())["boards"]
REQUIRED_BOARDS = {"uno", "mega2560", "due", "nano33ble", "rpipico", "teensy40", "wioterminal"}

HAVE_AVR = (
    all(shutil.which(t) for t in ("make", "avr-gcc", "avr-g++", "avr-size"))
    and Path("/usr/share/arduino/Arduino.mk").is_file()
)
HAVE_QEMU_AVR = shutil.which("qemu-system-avr") is not None
needs_avr = pytest.mark.skipif(
    not HAVE_AVR,
    reason="AVR toolchain missing (apt-get install gcc-avr avr-libc arduino-core-avr arduino-mk)",
)
needs_emulator = pytest.mark.skipif(
    not (HAVE_AVR and HAVE_QEMU_AVR),
    reason="AVR toolchain or qemu-system-avr missing (apt-get install gcc-avr avr-libc arduino-core-avr "
    "arduino-mk qemu-system-misc)",
)


ard = load_server_module("arduino")


def _generate(client, mlf: Path, project: Path, **options) -> Path:
    return generate_project(client, mlf, project, {"board": "uno", "project_type": "host_driven", **options})


# ---- board data ----------------------------------------------------------------------------


def test_boards_json_has_every_board_with_its_properties():
    assert REQUIRED_BOARDS <= set(BOARDS)
    for name, props in BOARDS.items():
        for key in (
            "package",
            "architecture",
            "board",
            "model",
            "mcu",
            "flash_bytes",
            "ram_bytes",
            "usb_ids",
            "max_payload",
        ):
            assert key in props, f"{name} lacks {key}"
        assert props["usb_ids"] and all(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", i) for i in props["usb_ids"])
        assert props["ram_bytes"] > 0 and props["flash_bytes"] > 0
        assert 64 <= props["max_payload"] <= 4096
        assert ard.fqbn(name).count(":") >= 2
    assert ard.fqbn("uno") == "arduino:avr:uno"
    assert ard.fqbn("mega2560") == "arduino:avr:mega:cpu=atmega2560"
    assert ard.fqbn("due") == "arduino:sam:arduino_due_x_dbg"
    assert BOARDS["uno"]["ram_bytes"] == 2048 and BOARDS["mega2560"]["ram_bytes"] == 8192
    assert {b for b in BOARDS if BOARDS[b]["emulator"]} >= {"uno", "mega2560"}
    assert ard.is_avr("uno") and ard.is_avr("mega2560") and not ard.is_avr("due")


def test_server_info_lists_tvm_option_names_and_board_choices(template_client):
    info = template_client.server_info_query("0.18.0")
    assert info["platform_name"] == "arduino" and info["is_template"] is True
    opts = {o["name"]: o for o in info["project_options"]}
    for name in (
        "board",
        "project_type",
        "arduino_cli_cmd",
        "port",
        "serial_number",
        "verbose",
        "warning_as_error",
        "compile_definitions",
        "extra_files_tar",
        "emulate",
    ):
        assert name in opts, name
    assert set(opts["board"]["choices"]) == set(BOARDS)
    assert set(opts["project_type"]["choices"]) == {"host_driven", "aot_standalone_demo"}
    assert opts["emulate"]["type"] == "bool"
    assert "open_transport" in (opts["emulate"]["optional"] or [])
    assert "generate_project" in (opts["board"]["required"] or [])


# ---- generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_generate_project_for_every_board(template_client, tmp_path, board):
    mlf = write_fake_mlf(tmp_path / "fake.tar")
    project = _generate(
        template_client, mlf, tmp_path / "sketch_1", board=board, compile_definitions="-DMY_FLAG=3"
    )
    files = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    # A sketch folder: the .ino is named after the folder; sources flat in src/.
    assert "sketch_1.ino" in files
    assert {"microtvm_api_server.py", "boards.json", "model.tar", "microtvm_project.json"} <= files
    for f in (
        "platform_arduino.cpp",
        "mt_avr_mulhisi3.S",
        "mt_model_glue.c",
        "platform.h",
        "mt_model.h",
        "mt_runtime.h",
        "mt_session.c",
        "tvmgen_default.h",
        "default_lib0.c",
        "default_lib1.c",
    ):
        assert f"src/{f}" in files, f
    ino = (project / "sketch_1.ino").read_text()
    assert "mt_session_main()" in ino and '#include "src/mt_runtime.h"' in ino
    platform_src = (project / "src" / "platform_arduino.cpp").read_text()
    assert "Serial.begin" in platform_src and "micros()" in platform_src
    flags = (project / "build_flags.txt").read_text()
    assert f"-DMT_MAX_PAYLOAD={BOARDS[board]['max_payload']}" in flags and "-DMY_FLAG=3" in flags
    recorded = json.loads((project / "microtvm_project.json").read_text())
    assert recorded["board"] == board and recorded["sketch"] == "sketch_1"
    if ard.is_avr(board):
        mk = (project / "Makefile").read_text()
        assert f"BOARD_TAG = {BOARDS[board]['arduino_mk']['BOARD_TAG']}" in mk
        assert "-DDECIMAL_DIG=9" in mk and "-std=gnu++11" in mk and "include $(ARDMK_DIR)/Arduino.mk" in mk
    else:
        assert "Makefile" not in files
    # The project's own copy of the server knows it is a project, not the template.
    with instantiate_from_dir(project, timeout=60) as client:
        info = client.server_info_query("0.18.0")
    assert info["is_template"] is False and info["model_library_format_path"].endswith("model.tar")


def test_standalone_demo_and_extra_files(template_client, tmp_path):
    mlf = write_fake_mlf(tmp_path / "fake.tar")
    extra = tmp_path / "extra.tar"
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "extra.h").write_text("#define EXTRA 1\n")
    with tarfile.open(extra, "w") as tf:
        tf.add(tmp_path / "include", arcname="include")
    project = _generate(
        template_client,
        mlf,
        tmp_path / "demo",
        project_type="aot_standalone_demo",
        extra_files_tar=str(extra),
    )
    assert "mt_standalone_main()" in (project / "demo.ino").read_text()
    assert (project / "include" / "extra.h").read_text() == "#define EXTRA 1\n"


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"board": "esp8266"}, "unknown board"),
        ({"project_type": "example_project"}, "project_type must be one of"),
        ({"board": "due", "emulate": True}, "emulate=true is only available for"),
    ],
)
def test_generate_rejects_bad_options(template_client, tmp_path, options, expected):
    mlf = write_fake_mlf(tmp_path / "fake.tar")
    with pytest.raises(server.ServerError) as info:
        _generate(template_client, mlf, tmp_path / "p", **options)
    assert expected in str(info.value)
    assert not (tmp_path / "p").exists()  # nothing half-generated is left behind


def test_generate_refuses_non_empty_directory(template_client, tmp_path):
    mlf = write_fake_mlf(tmp_path / "fake.tar")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.txt").write_text("keep me")
    with pytest.raises(server.ServerError) as info:
        _generate(template_client, mlf, tmp_path / "p")
    assert "not empty" in str(info.value)
    assert (tmp_path / "p" / "mine.txt").read_text() == "keep me"


# ---- weights in flash on AVR -------------------------------------------------------------


LIB0 = """#include <stdint.h>
#define MT_ALIGN16 __attribute__((aligned(16)))
const int8_t m_c0[4] MT_ALIGN16 = {
  1, -2, 3, -4
};
const int32_t m_c1[2] MT_ALIGN16 = {
  100000, -7
};
"""
LIB1 = """#include <stdint.h>
extern const int8_t m_c0[4];
extern const int32_t m_c1[2];
static inline int32_t dot(const int8_t* restrict w, const int8_t* x, int n) {
  int32_t acc = 0;
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t scale = 2;
    acc += (int32_t)w[i] * (int32_t)x[i] * scale;
  }
  return acc;
}
int32_t m_run(int8_t* x, int32_t* out) {
  out[0] = dot(m_c0, x, 4) + m_c1[0];
  return 0;
}
"""


def test_place_constants_in_flash_rewrites_arrays_and_const_pointers():
    lib0 = ard.place_constants_in_flash(LIB0)
    lib1 = ard.place_constants_in_flash(LIB1)
    assert "const MT_FLASH_CONST int8_t m_c0[4] MT_ALIGN16 = {" in lib0
    assert "extern const MT_FLASH_CONST int32_t m_c1[2];" in lib1
    assert "const MT_FLASH_CONST int8_t* restrict w" in lib1
    assert "const int32_t scale = 2;" in lib1  # a local scalar stays a plain const
    assert "int8_t* x, int32_t* out" in lib1  # non-const pointers untouched
    assert ard.place_constants_in_flash(lib1) == lib1  # idempotent
    assert ard.place_constants_in_flash("int x;\n") == "int x;\n"


@needs_avr
def test_constants_land_in_flash_not_ram_with_avr_gcc(tmp_path):
    for name, text in (("lib0.c", LIB0), ("lib1.c", LIB1)):
        (tmp_path / name).write_text(ard.place_constants_in_flash(text))
        subprocess.run(
            [
                "avr-gcc",
                "-mmcu=atmega328p",
                "-std=gnu11",
                "-Os",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-c",
                name,
                "-o",
                name + ".o",
            ],
            cwd=tmp_path,
            check=True,
            timeout=60,
        )
    sizes = subprocess.run(
        ["avr-size", "-A", "lib0.c.o"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    sections = {
        p[0]: int(p[1])
        for p in (line.split() for line in sizes.splitlines())
        if len(p) >= 2 and p[1].isdigit()
    }
    assert sections.get(".data", 0) == 0  # nothing copied into the 2 KiB of RAM
    assert sections.get(".progmemx.data", 0) >= 4 + 8
    # Without the rewrite avr-gcc puts the same constants in .data (RAM): the reason it exists.
    (tmp_path / "plain.c").write_text(LIB0)
    subprocess.run(
        ["avr-gcc", "-mmcu=atmega328p", "-Os", "-c", "plain.c", "-o", "plain.o"],
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    plain = subprocess.run(
        ["avr-size", "-A", "plain.o"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # (.rodata: the AVR linker script places it in .data, i.e. copies it to RAM at start-up.)
    assert re.search(r"^\.(?:ro)?data\s+([1-9]\d*)", plain, re.M)


# ---- building ------------------------------------------------------------------------------


def _patched_fake(tmp_path: Path, *, n: int = 4, big_tables: int = 0) -> Path:
    """The fake model, optionally with `big_tables` 20000-byte constant tables the run reads
    (avr-gcc refuses a single object above 32767 bytes: AVR's int is 16 bits)."""
    members = fake_mlf_members(n=n)
    if big_tables:
        tables = [f"big_table{i}" for i in range(big_tables)]
        members["codegen/host/src/default_lib0.c"] = (
            "#include <stdint.h>\n" + "".join(f"const int8_t {t}[20000] = {{1, 2, 3}};\n" for t in tables)
        ).encode()
        lib1 = members["codegen/host/src/default_lib1.c"].decode()
        externs = "".join(f"extern const int8_t {t}[20000];\n" for t in tables)
        lib1 = lib1.replace('#include "tvmgen_default.h"', '#include "tvmgen_default.h"\n' + externs)
        reads = " + ".join(f"{t}[(uint8_t)x[0] * 78]" for t in tables)
        lib1 = lib1.replace("  z[0] = (float)sum;", f"  z[0] = (float)(sum + {reads});")
        members["codegen/host/src/default_lib1.c"] = lib1.encode()
    from microtvm_tasks.mlf import write_archive

    return write_archive(tmp_path / "model.tar", members)


@needs_avr
@pytest.mark.e2e
def test_avr_build_records_image_and_sizes(template_client, tmp_path):
    project = _generate(template_client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "p")
    with instantiate_from_dir(project, timeout=600) as client:
        client.build({"board": "uno"})
    image = json.loads((project / "build" / "image.json").read_text())
    assert image["board"] == "uno" and (project / image["elf"]).is_file()
    assert 0 < image["sizes"]["ram"] <= 2048 - 256 and 0 < image["sizes"]["flash"] <= 32256
    assert (project / "build" / "avr" / "firmware.hex").is_file()
    assert "avr-g" in (project / "build" / "build.log").read_text()


@needs_avr
@pytest.mark.e2e
@pytest.mark.parametrize("board, ram", [("uno", 2048), ("mega2560", 8192)])
def test_model_too_big_for_ram_fails_with_both_numbers(template_client, tmp_path, board, ram):
    # Input + output buffers alone exceed the board's SRAM.
    project = _generate(
        template_client, _patched_fake(tmp_path, n=ram // 2 + 64), tmp_path / "p", board=board
    )
    with instantiate_from_dir(project, timeout=600) as client:
        with pytest.raises(server.ServerError) as info:
            client.build({})
    text = str(info.value)
    assert "FirmwareTooBigError" in text
    m = re.search(r"RAM: needs (\d+) bytes of static data .* the " + board + rf" has {ram} bytes", text)
    assert m, text
    assert int(m.group(1)) > ram


@needs_avr
@pytest.mark.e2e
def test_model_too_big_for_flash_fails_with_both_numbers(template_client, tmp_path):
    project = _generate(template_client, _patched_fake(tmp_path, big_tables=2), tmp_path / "p")
    with instantiate_from_dir(project, timeout=600) as client:
        with pytest.raises(server.ServerError) as info:
            client.build({})
    text = str(info.value)
    m = re.search(r"flash: needs (\d+) bytes .* the uno has 32256 bytes", text)
    assert m, text
    assert int(m.group(1)) > 40000
    assert "RAM: needs" not in text  # the 40 kB table went to flash, not RAM


# ---- missing tools -------------------------------------------------------------------------


def test_non_avr_board_without_arduino_cli_says_what_to_install(monkeypatch):
    monkeypatch.setattr(ard, "ARDUINO_CLI_CMD", None)
    with pytest.raises(ToolNotFoundError) as info:
        ard.Handler().build({"board": "due", "arduino_cli_cmd": None})
    text = str(info.value)
    assert "arduino-cli" in text and "arduino:sam" in text and "https://arduino.github.io/arduino-cli" in text


def test_avr_board_without_toolchain_says_what_to_install(monkeypatch):
    monkeypatch.setattr(ard, "ARDUINO_CLI_CMD", None)
    real_which = shutil.which
    monkeypatch.setattr(
        ard.shutil, "which", lambda name, *a, **k: None if name.startswith("avr-") else real_which(name)
    )
    with pytest.raises(ToolNotFoundError) as info:
        ard.Handler().build({"board": "uno"})
    text = str(info.value)
    assert "avr-gcc" in text and "apt-get install gcc-avr avr-libc arduino-core-avr arduino-mk" in text


def test_emulation_without_qemu_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(ard.shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(ToolNotFoundError) as info:
        ard.start_qemu_avr(tmp_path / "x.elf", "uno", tmp_path / "q.log")
    assert "qemu-system-misc" in str(info.value)


def test_missing_tool_message_travels_through_the_project_api(tmp_path):
    # A project for a non-AVR board, built by its own server process without arduino-cli on PATH.
    with instantiate_from_dir(TEMPLATE, timeout=120) as client:
        _generate(client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "p", board="rpipico")
    if shutil.which("arduino-cli"):
        pytest.skip("arduino-cli is installed: the fallback message cannot be provoked")
    with instantiate_from_dir(tmp_path / "p", timeout=60) as client:
        with pytest.raises(server.ServerError) as info:
            client.build({})
    assert "ToolNotFoundError" in str(info.value) and "arduino-cli" in str(info.value)


def test_serial_port_lookup_errors_name_the_way_out(monkeypatch):
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: [])
    with pytest.raises(ard.BoardNotFoundError) as info:
        ard.find_serial_port("uno", None, None)
    assert "2341:0043" in str(info.value) and "emulate=true" in str(info.value)
    with pytest.raises(ard.BoardNotFoundError):
        ard.find_serial_port("uno", None, "ABC123")
    assert ard.find_serial_port("uno", "/dev/ttyACM7", None) == "/dev/ttyACM7"
    with pytest.raises(Exception, match="not both"):
        ard.find_serial_port("uno", "/dev/ttyACM7", "ABC")


# ---- the emulated Uno ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sine_uno(tmp_path_factory, sine_mlf):
    """The sine model compiled, generated for an emulated Uno and built (once per module)."""
    if not (HAVE_AVR and HAVE_QEMU_AVR):
        pytest.skip("AVR toolchain or qemu-system-avr missing")
    tmp = tmp_path_factory.mktemp("sine_uno")
    with instantiate_from_dir(TEMPLATE, timeout=120) as client:
        _generate(client, sine_mlf, tmp / "sine_uno", emulate=True)
    with instantiate_from_dir(tmp / "sine_uno", timeout=600) as client:
        client.build({})
    return tmp / "sine_uno"


def _tflm_outputs(values):
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(SINE.read_bytes(), arena_size=1 << 16)
    out = []
    for v in values:
        interp.set_input(np.array([[v]], dtype=np.int8), 0)
        interp.invoke()
        out.append(int(np.array(interp.get_output(0)).reshape(-1)[0]))
    return out


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_sine_on_emulated_uno_matches_tflite_micro_bit_for_bit(sine_uno):
    import numpy as np

    from microtvm_tasks.session import ProjectAPITransport, Session

    image = json.loads((sine_uno / "build" / "image.json").read_text())
    assert image["sizes"]["ram"] + 256 <= 2048  # weights are in flash: the model fits the Uno
    values = list(range(-128, 128))
    got = []
    with instantiate_from_dir(sine_uno, timeout=60) as client:
        timeouts = client.open_transport({})
        assert timeouts["timeouts"]["session_start_timeout_sec"] > 0
        try:
            session = Session(ProjectAPITransport(client), timeout=10.0)
            hello = session.hello(timeout=20.0)
            assert hello["max_payload"] == BOARDS["uno"]["max_payload"]
            desc = session.describe()
            assert desc.name == "sine" and desc.inputs[0].dtype == "int8" and desc.inputs[0].shape == (1, 1)
            for v in values:
                session.set_input(0, np.array([[v]], dtype=np.int8))
                ticks, hz = session.run(1)
                got.append(int(session.get_output(0).reshape(-1)[0]))
            assert hz == 2_000_000 and 0 < ticks < hz  # Timer1 at F_CPU/8, one inference < 1 s
        finally:
            client.close_transport()
    assert got == _tflm_outputs(values)


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_session_resyncs_after_boot_chatter_and_reset(sine_uno):
    """Garbage before the first frame, and a second boot (reset) of the board, are survived."""
    import numpy as np

    from microtvm_tasks.session import ProjectAPITransport, Session

    for _boot in range(2):  # each open_transport boots a fresh emulator: a reset
        with instantiate_from_dir(sine_uno, timeout=60) as client:
            client.open_transport({})
            try:
                client.write_transport(b"\x00garbage\x7e\x7d\x7e\xff boot chatter\r\n", 5.0)
                session = Session(ProjectAPITransport(client), timeout=10.0)
                session.hello(timeout=20.0)
                session.set_input(0, np.array([[0]], dtype=np.int8))
                session.run(1)
                assert int(session.get_output(0).reshape(-1)[0]) == _tflm_outputs([0])[0]
            finally:
                client.close_transport()


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_emulator_gone_is_transport_closed_and_never_left_running(sine_uno):
    elf = sine_uno / "build" / "avr" / "firmware.elf"
    transport = ard.start_qemu_avr(elf, "uno", sine_uno / "build" / "qemu-test.log")
    proc = transport._proc
    assert proc.poll() is None
    with pytest.raises(server.IoTimeoutError):
        transport.read(16, 0.2)  # the host_driven firmware stays silent until asked
    proc.kill()  # the "board" vanishes mid-session
    proc.wait(10)
    with pytest.raises(server.TransportClosedError):
        transport.read(16, 0.5)
    with pytest.raises(server.TransportClosedError):
        transport.write(b"\x7e", 0.5)
    transport.close()
    transport.close()  # idempotent

    # close() of a live emulator kills it (and its process group).
    transport = ard.start_qemu_avr(elf, "uno", sine_uno / "build" / "qemu-test.log")
    proc = transport._proc
    transport.close()
    assert proc.poll() is not None


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_server_exit_takes_the_emulator_with_it(sine_uno):
    """A Project API server that is reaped without close_transport leaves no QEMU behind."""
    with instantiate_from_dir(sine_uno, timeout=60) as client:
        client.open_transport({})
        server_pid = client.server_process.proc.pid
        qemu_pids = _children_named(server_pid, "qemu-system-avr")
    assert qemu_pids, "the server should have started qemu-system-avr"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        Path(f"/proc/{p}").exists() and _is_alive(p) for p in qemu_pids
    ):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{p}").exists() and _is_alive(p) for p in qemu_pids)


def _children_named(parent: int, name: str) -> list[int]:
    """Pids of `parent`'s direct children whose command is `name` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == parent and name.startswith(comm):
            found.append(int(stat.parent.name))
    return found


def _is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_fake_model_on_emulated_mega2560(template_client, tmp_path):
    import numpy as np

    from microtvm_tasks.session import run_project

    project = _generate(
        template_client,
        write_fake_mlf(tmp_path / "fake.tar", n=300),
        tmp_path / "mega",
        board="mega2560",
        emulate=True,
    )
    with instantiate_from_dir(project, timeout=600) as client:
        client.build({})
    x = (np.arange(300) % 251 - 125).astype(np.int8).reshape(1, 300)
    result = run_project(project, inputs=[x], timeout=20.0)
    y, z = fake_reference(x)
    assert np.array_equal(result.outputs[0], y) and np.array_equal(result.outputs[1], z)


@needs_avr
@pytest.mark.e2e
def test_single_constant_over_32k_is_reported_as_too_big_for_avr(template_client, tmp_path):
    members = fake_mlf_members()
    members["codegen/host/src/default_lib0.c"] = b"#include <stdint.h>\nconst int8_t huge_w[40000] = {1};\n"
    from microtvm_tasks.mlf import write_archive

    project = _generate(template_client, write_archive(tmp_path / "m.tar", members), tmp_path / "p")
    with instantiate_from_dir(project, timeout=600) as client:
        with pytest.raises(server.ServerError) as info:
            client.build({})
    assert "FirmwareTooBigError" in str(info.value) and "huge_w exceed(s) 32767 bytes" in str(info.value)


@needs_emulator
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_standalone_demo_prints_tflm_result_on_emulated_mega2560(template_client, tmp_path, sine_mlf):
    """aot_standalone_demo, built with warning_as_error: prints the output for the baked-in
    (zero) input, as text on Serial."""
    project = _generate(
        template_client,
        sine_mlf,
        tmp_path / "demo",
        board="mega2560",
        project_type="aot_standalone_demo",
        warning_as_error=True,
        emulate=True,
    )
    with instantiate_from_dir(project, timeout=600) as client:
        client.build({})
        client.open_transport({})
        text = b""
        deadline = time.monotonic() + 30
        try:
            while not re.search(rb"status -?\d+\n", text) and time.monotonic() < deadline:
                try:
                    text += client.read_transport(256, 1.0)
                except server.IoTimeoutError:
                    pass
        finally:
            client.close_transport()
    assert "-Werror" in (project / "build" / "build.log").read_text()
    line = re.search(rb"output 0 \S+ int8 \[1,1\] = (-?\d+)", text)
    assert line, text
    assert int(line.group(1)) == _tflm_outputs([0])[0] and b"status 0" in text


FAKE_ARDUINO_CLI = r"""#!{python}
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_CLI_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:1] == ["version"]:
    print("arduino-cli  Version: 0.35.3 Commit: 95cfd654 Date: 2024-02-19T13:24:24Z")
elif args[:1] == ["compile"]:
    out = pathlib.Path(args[args.index("--build-path") + 1])
    out.mkdir(parents=True, exist_ok=True)
    sketch = pathlib.Path(args[-1]).name
    (out / f"{{sketch}}.ino.elf").write_bytes(b"\x7fELF")
"""


def test_arduino_cli_compile_and_upload_command_lines(template_client, tmp_path, monkeypatch):
    cli = tmp_path / "bin" / "arduino-cli"
    cli.parent.mkdir()
    cli.write_text(FAKE_ARDUINO_CLI.format(python=sys.executable))
    cli.chmod(0o755)
    log = tmp_path / "cli.log"
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    project = _generate(
        template_client,
        write_fake_mlf(tmp_path / "fake.tar"),
        tmp_path / "due_app",
        board="due",
        arduino_cli_cmd=str(cli),
        compile_definitions="-DX=1",
    )
    with instantiate_from_dir(project, timeout=120) as client:
        client.build({"verbose": True})
        client.flash({"port": "/dev/ttyACM5"})
    compile_args, upload_args = [json.loads(line) for line in log.read_text().splitlines()]
    assert compile_args[:3] == ["compile", "--fqbn", "arduino:sam:arduino_due_x_dbg"]
    assert compile_args[compile_args.index("--build-path") + 1] == str(project / "build" / "cli")
    props = [compile_args[i + 1] for i, a in enumerate(compile_args) if a == "--build-property"]
    assert [p.split("=", 1)[0] for p in props] == ["compiler.c.extra_flags", "compiler.cpp.extra_flags"]
    assert all("-DMT_MAX_PAYLOAD=1024" in p and "-DX=1" in p for p in props), props
    assert compile_args[-1] == str(project) and "--verbose" in compile_args
    assert upload_args[:5] == ["upload", "--fqbn", "arduino:sam:arduino_due_x_dbg", "--port", "/dev/ttyACM5"]
    assert upload_args[upload_args.index("--input-dir") + 1] == str(project / "build" / "cli")
    assert upload_args[-1] == str(project)


@needs_avr
@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_board_serial_port_transport_and_unplugging(template_client, tmp_path):
    """A board on a serial port (a pseudo-terminal stands in for /dev/ttyACM0): bytes both
    ways, a silent board is IoTimeoutError, an unplugged one TransportClosedError."""
    import os
    import pty
    import tty

    project = _generate(template_client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "p")
    master, slave = pty.openpty()
    tty.setraw(master)
    slave_name = os.ttyname(slave)
    try:
        with instantiate_from_dir(project, timeout=600) as client:
            client.build({})
            client.open_transport({"port": slave_name})
            os.close(slave)
            slave = -1
            os.write(master, b"boot chatter \x01\x7e")
            got = b""
            while len(got) < 14:
                got += client.read_transport(64, 2.0)
            assert got == b"boot chatter \x01\x7e"
            client.write_transport(b"\x7e\x01\x02\x7e", 2.0)
            assert os.read(master, 64) == b"\x7e\x01\x02\x7e"  # no escaping on a real port
            with pytest.raises(server.IoTimeoutError):
                client.read_transport(64, 0.2)
            os.close(master)  # the board is unplugged
            master = -1
            with pytest.raises(server.TransportClosedError):
                client.read_transport(64, 1.0)
            client.close_transport()
    finally:
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
