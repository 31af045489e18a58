"""The qemu_arm template: boards as data, real firmware booted in QEMU's MPS2 machines.

Unit tests check the board data and the generated files; the QEMU tests cross-compile real
images with arm-none-eabi-gcc and talk to them over the emulated UART (pyserial socket://),
directly and through the Project API. Tests needing a missing tool skip with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEMPLATES_DIR, device_session, generate_project, load_server_module, write_tar

import microtvm_tasks.runtime as runtime_pkg
from microtvm_tasks.project_api import server

TEMPLATE = TEMPLATES_DIR / "qemu_arm"
BOARDS = ["mps2_an385", "mps2_an386", "mps2_an500"]
#: the repository's vendored demo models (copies of TFLite Micro's hello_world and MLPerf Tiny's
#: keyword spotting models; see models/README.md).
MODELS = Path(__file__).resolve().parents[1] / "models"

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_gcc = pytest.mark.skipif(
    not HAVE_GCC, reason="arm-none-eabi-gcc not installed (Debian gcc-arm-none-eabi)"
)
needs_qemu = pytest.mark.skipif(
    not (HAVE_GCC and HAVE_QEMU), reason="arm-none-eabi-gcc or qemu-system-arm not installed"
)


qa = load_server_module("qemu_arm")


# ---- a bare echo firmware built from the template's startup, UART and timer code ------------

ECHO_MAIN = r"""
#include <stdint.h>
#include "platform.h"

/* 'T': time a fixed loop and send the ticks; '#': fault; '!': return from main;
 * anything else: echo. */
int main(void) {
  static const char banner[] = "MT_ECHO_READY\n";
  uint8_t buf[64];
  mt_platform_init();
  mt_platform_write((const uint8_t *)banner, sizeof(banner) - 1);
  for (;;) {
    int32_t n = mt_platform_read(buf, sizeof(buf));
    if (n <= 0) {
      return 1;
    }
    if (buf[0] == '!') {
      return 7;
    }
    if (buf[0] == '#') {
      *(volatile uint32_t *)0xFFFFFFF0u = 1u;
    }
    if (buf[0] == 'T') {
      volatile uint32_t acc = 0u;
      uint32_t i;
      uint32_t t0 = mt_platform_ticks();
      uint32_t dt;
      for (i = 0u; i < 1000u; ++i) {
        acc += i;
      }
      dt = mt_platform_ticks() - t0;
      {
        uint8_t out[4] = {(uint8_t)dt, (uint8_t)(dt >> 8), (uint8_t)(dt >> 16), (uint8_t)(dt >> 24)};
        mt_platform_write(out, 4u);
      }
      continue;
    }
    mt_platform_write(buf, (size_t)n);
  }
}
"""


def build_echo(tmp_path: Path, board: str) -> Path:
    d = tmp_path / f"echo_{board}"
    qa.write_firmware_tree(d, board, with_main=False, warning_as_error=True)
    (d / "runtime").mkdir()
    shutil.copy2(Path(runtime_pkg.__file__).parent / "platform.h", d / "runtime")
    (d / "src" / "echo_main.c").write_text(ECHO_MAIN)
    sizes = qa.build_firmware(d, {}, (board, *qa.board_config(board)))
    assert sizes["text"] > 0 and sizes["bss"] >= qa.STACK_BYTES
    return d


def start_qemu(d: Path, board: str):
    b, q = qa.board_config(board)
    session = qa.QemuSession(
        d / "build" / "image.elf", b["emulator"]["machine"], q["icount_shift"], d / "build" / "qemu.log"
    )
    session.start()
    return session


def read_until(session, needle: bytes, timeout: float = 10.0) -> bytes:
    got = b""
    end = time.monotonic() + timeout
    while needle not in got:
        assert time.monotonic() < end, f"no {needle!r} in {got!r}"
        got += session.read(256, max(0.1, end - time.monotonic()))
    return got


def read_exact(session, n: int, timeout: float = 10.0) -> bytes:
    got = b""
    end = time.monotonic() + timeout
    while len(got) < n:
        got += session.read(n - len(got), max(0.1, end - time.monotonic()))
    return got


def qemu_pids_for(image: Path) -> list[int]:
    """PIDs of running qemu-system-arm processes booting `image` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-arm") and str(image).encode() in argv:
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(entry.name))
    return pids


# ---- unit tests: board data and generated files ----------------------------------------------


def test_boards_json_describes_the_three_mps2_boards():
    data = qa.load_boards(TEMPLATE)
    boards = data["boards"]
    assert sorted(boards) == BOARDS
    assert {b: boards[b]["emulator"]["machine"] for b in BOARDS} == {
        "mps2_an385": "mps2-an385",
        "mps2_an386": "mps2-an386",
        "mps2_an500": "mps2-an500",
    }
    assert "-mcpu=cortex-m3" in boards["mps2_an385"]["cflags"] and not boards["mps2_an385"]["fpu"]
    assert "-mfloat-abi=hard" in boards["mps2_an386"]["cflags"] and boards["mps2_an386"]["fpu"]
    assert "-mcpu=cortex-m7" in boards["mps2_an500"]["cflags"]
    for b in boards.values():
        assert b["memory_map"]["flash"]["base"] == 0 and b["memory_map"]["ram"]["base"] == 0x20000000
        assert b["memory_map"]["uart0"]["base"] == 0x40004000
    assert isinstance(data["qemu"]["icount_shift"], int)


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(qa.QemuArmError, match="mps2_an385, mps2_an386, mps2_an500"):
        qa.board_config("stm32f746")


def test_linker_script_and_board_mk_come_from_the_board_data():
    board, qemu = qa.board_config("mps2_an500")
    ld = qa.linker_script("mps2_an500", board)
    assert "FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 0x00400000" in ld
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 0x00400000" in ld
    mk = qa.board_mk(
        "mps2_an500",
        board,
        qemu,
        project_type="aot_standalone_demo",
        opt_level="Os",
        compile_definitions="FOO=1 -DBAR",
        warning_as_error=True,
    )
    assert "-mcpu=cortex-m7" in mk and "-mfpu=fpv5-d16" in mk
    assert f"-DMT_ICOUNT_SHIFT={qemu['icount_shift']}" in mk
    assert "-DMT_PROJECT_TYPE_STANDALONE=1" in mk
    assert "-DFOO=1 -DBAR" in mk and "OPT ?= -Os" in mk and "WERROR := -Werror" in mk


def test_model_too_big_for_ram_or_flash_gives_both_numbers():
    board, _ = qa.board_config("mps2_an386")
    with pytest.raises(qa.QemuArmError, match=r"need \d+ bytes of RAM, the board has 4194304"):
        qa.check_model_fits("mps2_an386", board, constants=10, workspace=5_000_000, io=8)
    with pytest.raises(qa.QemuArmError, match=r"weights need 5000000 bytes of flash, the board has 4194304"):
        qa.check_model_fits("mps2_an386", board, constants=5_000_000, workspace=0, io=0)
    msg = qa.explain_link_overflow(
        "ld: build/image.elf section `.bss' will not fit in region `RAM'\n"
        "ld: region `RAM' overflowed by 1234 bytes\n",
        "mps2_an386",
        board,
    )
    assert msg is not None and f"needs {4194304 + 1234} bytes of ram, the board has 4194304" in msg
    assert qa.explain_link_overflow("undefined reference to `foo'", "mps2_an386", board) is None


def test_server_info_lists_the_options():
    from microtvm_tasks.project_api.client import instantiate_from_dir

    with instantiate_from_dir(TEMPLATE, timeout=30) as client:
        info = client.server_info_query("0.18.0")
    assert info["platform_name"] == "qemu_arm" and info["is_template"]
    options = {o["name"]: o for o in info["project_options"]}
    assert options["board"]["choices"] == BOARDS
    assert options["project_type"]["choices"] == ["host_driven", "aot_standalone_demo"]
    for name in ("opt_level", "compile_definitions", "warning_as_error", "verbose", "extra_files_tar"):
        assert name in options


def test_opening_the_uart_keeps_what_the_firmware_already_sent(monkeypatch):
    """pyserial's open() drops pending input; a firmware that prints at once must not lose it
    (QemuSession's UART is template_support's SerialTransport on a socket:// URL)."""
    import socket
    import threading

    from microtvm_tasks.template_support import serial_transport

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        conn.sendall(b"boot banner\n")
        time.sleep(1.0)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    real_connect = serial_transport.socket.create_connection

    def slow_connect(*args, **kwargs):  # the banner is surely there before open() finishes
        sock = real_connect(*args, **kwargs)
        time.sleep(0.3)
        return sock

    monkeypatch.setattr(serial_transport.socket, "create_connection", slow_connect)
    port = serial_transport.SerialTransport(f"socket://127.0.0.1:{listener.getsockname()[1]}")
    try:
        assert port.read(12, 2) == b"boot banner\n"
    finally:
        port.close()
        listener.close()
        thread.join(5)


# ---- QEMU: bare firmware -------------------------------------------------------------------------


@needs_qemu
@pytest.mark.timeout(120)
@pytest.mark.parametrize("board", BOARDS)
def test_bare_firmware_boots_echoes_and_reports_deterministic_ticks(tmp_path, board):
    d = build_echo(tmp_path, board)
    session = start_qemu(d, board)
    try:
        assert read_until(session, b"MT_ECHO_READY\n").endswith(b"MT_ECHO_READY\n")
        # Every byte value except the three command characters, in two rounds.
        payload = bytes(b for b in range(256) if b not in b"T!#") * 2
        session.write(payload, 5)
        assert read_exact(session, len(payload)) == payload
        ticks = []
        for delay in (0.0, 0.13, 0.37):  # the host's timing must not change the figure
            time.sleep(delay)
            session.write(b"T", 5)
            ticks.append(int.from_bytes(read_exact(session, 4), "little"))
        assert ticks == [ticks[0]] * 3
        # A tick is one instruction: the 1000-iteration loop is 6 instructions a turn plus a
        # few around it (a 25 MHz timer count would give ~3.2x that, a 1 GHz one ~128x).
        assert 6000 <= ticks[0] <= 6100, ticks
        with pytest.raises(server.IoTimeoutError) as err:
            session.read(16, 0.3)  # a firmware with nothing to say: timeout, QEMU still up
        assert "last UART output" in str(err.value) and "MT_ECHO_READY" in str(err.value)
        assert session.alive()
        # A fault: the handler prints its marker and the transport reports it and closes.
        session.write(b"#", 5)
        with pytest.raises(server.TransportClosedError) as err:
            for _ in range(100):
                session.read(256, 5)
        text = str(err.value)
        assert "HardFault" in text and "bfar=0xfffffff0" in text
        assert not session.alive()
    finally:
        session.stop()
    assert qemu_pids_for(d / "build" / "image.elf") == []


@needs_qemu
@pytest.mark.timeout(60)
def test_main_returning_and_qemu_dying_close_the_transport(tmp_path):
    d = build_echo(tmp_path, "mps2_an385")
    session = start_qemu(d, "mps2_an385")
    try:
        read_until(session, b"READY\n")
        session.write(b"!", 5)
        read_until(session, b"***\r\n")
        with pytest.raises(server.TransportClosedError, match="main returned 7"):
            session.read(16, 1)
    finally:
        session.stop()
    # QEMU refusing to start: the error carries what QEMU said, and nothing is left running.
    bad = qa.QemuSession(d / "build" / "image.elf", "mps2-an999", 7, d / "build" / "bad.log")
    with pytest.raises(qa.QemuArmError, match="mps2-an999"):
        bad.start()
    assert not bad.alive()
    session = start_qemu(d, "mps2_an385")
    try:
        read_until(session, b"READY\n")
        os.killpg(session.proc.pid, signal.SIGKILL)
        session.proc.wait(timeout=10)
        with pytest.raises(server.TransportClosedError, match="QEMU"):
            for _ in range(10):
                session.read(16, 1)
    finally:
        session.stop()


# ---- Project API: fake MLF, sizes, fit, flash --------------------------------------------------


def _generate(tmp_path: Path, mlf: Path, board: str, template: Path = TEMPLATE, **options) -> Path:
    from microtvm_tasks.project_api.client import instantiate_from_dir

    project = tmp_path / f"proj_{board}_{options.get('project_type', 'host_driven')}"
    opts = {"board": board, "project_type": "host_driven", "warning_as_error": True, **options}
    with instantiate_from_dir(template, timeout=60) as client:
        return generate_project(client, mlf, project, opts)


@needs_qemu
@pytest.mark.timeout(180)
def test_fake_model_session_over_project_api(tmp_path):
    import numpy as np

    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.runtime.fake_mlf import fake_reference, write_fake_mlf
    from microtvm_tasks.session import ProjectAPITransport, Session

    mlf = write_fake_mlf(tmp_path / "fake.tar", n=8)
    project = _generate(tmp_path, mlf, "mps2_an385")
    with instantiate_from_dir(project, timeout=120) as client:
        info = client.server_info_query("0.18.0")
        assert not info["is_template"]
        with pytest.raises(server.ServerError, match="no firmware image"):
            client.flash({})
        client.build({})
        sizes = json.loads((project / "build" / "sizes.json").read_text())
        assert {"text", "data", "bss", "flash_bytes", "ram_bytes", "flash_size", "ram_size"} <= set(sizes)
        assert sizes["flash_bytes"] == sizes["text"] + sizes["data"]
        client.flash({})
        flashed = json.loads((project / "build" / "flash.json").read_text())
        assert flashed["sha256"] == sizes["sha256"] and flashed["machine"] == "mps2-an385"
        client.open_transport({})
        try:
            session = Session(ProjectAPITransport(client), timeout=20)
            session.hello(timeout=20)
            x = np.array([[-128, -3, -1, 0, 1, 2, 100, 127]], dtype=np.int8)
            session.set_input(0, x)
            ticks, hz = session.run(1)
            assert hz == 25_000_000  # one instruction per cycle of the MPS2 system clock
            assert ticks > 0 and session.run(1) == (ticks, hz)
            want_y, want_z = fake_reference(x)
            np.testing.assert_array_equal(session.get_output(0), want_y)
            np.testing.assert_array_equal(session.get_output(1), want_z)
            with pytest.raises(server.IoTimeoutError):
                client.read_transport(16, 0.2)  # the firmware waits for a command: nothing to read
        finally:
            client.close_transport()
        with pytest.raises(server.TransportClosedError):
            client.read_transport(16, 0.2)
    assert qemu_pids_for(project / "build" / "image.elf") == []


@needs_gcc
@pytest.mark.timeout(120)
def test_too_big_model_fails_the_build_with_both_numbers(tmp_path):
    from microtvm_tasks.project_api.client import ServerError as ClientServerError  # noqa: F401
    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.runtime.fake_mlf import write_fake_mlf

    small = tmp_path / "qemu_arm_small"
    shutil.copytree(TEMPLATE, small, ignore=shutil.ignore_patterns("__pycache__"))
    boards = json.loads((small / "boards.json").read_text())
    boards["boards"]["mps2_an385"]["ram_bytes"] = 0x8000  # 32 KiB
    boards["boards"]["mps2_an385"]["flash_bytes"] = 0x1000  # 4 KiB: less than the runtime's code
    (small / "boards.json").write_text(json.dumps(boards))

    # The MLF's own figures already exceed RAM: build refuses before compiling anything.
    big = write_fake_mlf(tmp_path / "big.tar", n=20000)
    project = _generate(tmp_path / "big", big, "mps2_an385", template=small)
    with instantiate_from_dir(project, timeout=120) as client:
        with pytest.raises(Exception, match=r"need 56408 bytes of RAM, the board has 32768"):
            client.build({})
    assert not (project / "build" / "obj").exists()

    # Fits by the metadata, but the linked image overflows the 4 KiB flash: build says by how much.
    ok = write_fake_mlf(tmp_path / "ok.tar", n=8)
    project = _generate(tmp_path, ok, "mps2_an385", template=small)
    with instantiate_from_dir(project, timeout=120) as client:
        with pytest.raises(Exception) as err:
            client.build({})
    match = re.search(r"needs (\d+) bytes of flash, the board has 4096", str(err.value))
    assert match and int(match.group(1)) > 4096


@needs_gcc
@pytest.mark.timeout(180)
def test_compile_definitions_extra_files_and_opt_level_reach_the_build(tmp_path):
    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.runtime.fake_mlf import write_fake_mlf

    # An extra source that only compiles when the definition arrived.
    extra_c = (
        b"#ifndef QA_FLAG\n#error QA_FLAG missing\n#endif\nint qa_extra_value(void) { return QA_FLAG; }\n"
    )
    extra_tar = write_tar(tmp_path / "extra.tar", {"src/qa_extra.c": extra_c})

    mlf = write_fake_mlf(tmp_path / "fake.tar", n=8)
    project = _generate(
        tmp_path,
        mlf,
        "mps2_an386",
        compile_definitions="QA_FLAG=42 QA_OTHER",
        extra_files_tar=str(extra_tar),
        opt_level="Os",
    )
    assert (project / "src" / "qa_extra.c").read_bytes() == extra_c
    with instantiate_from_dir(project, timeout=120) as client:
        client.build({})
        objs = project / "build" / "obj" / "src" / "qa_extra.o"
        assert objs.is_file()
        assert "OPT := -Os" in (project / "build" / "options.mk").read_text()
        stamp = objs.stat().st_mtime_ns
        client.build({"opt_level": "Os"})  # unchanged: nothing recompiled
        assert objs.stat().st_mtime_ns == stamp
        client.build({"opt_level": "O1", "verbose": True})  # changed: everything recompiled
        assert objs.stat().st_mtime_ns != stamp
        assert "OPT := -O1" in (project / "build" / "options.mk").read_text()
        with pytest.raises(Exception, match="opt_level"):
            client.build({"opt_level": "O9"})
        with pytest.raises(Exception, match="differs from the board this project was generated for"):
            client.build({"board": "mps2_an385"})


# ---- real models: compile, build, run in QEMU, compare with TFLite Micro -----------------------


def _compile(model: Path, out: Path) -> Path:
    from microtvm_tasks.errors import CompileError

    compiler = pytest.importorskip("microtvm_tasks.compiler")
    if not hasattr(compiler, "compile_model"):
        pytest.skip("the built-in compiler has no compile_model yet")
    try:
        return compiler.compile_model(model, out)
    except CompileError as exc:
        pytest.skip(f"the built-in compiler cannot compile {model.name} yet: {exc}")


def _tflm_outputs(model: Path, inputs: list, n_outputs: int):
    import numpy as np

    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    interp = runtime.Interpreter.from_bytes(model.read_bytes(), arena_size=4 << 20)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return [np.array(interp.get_output(i), copy=True) for i in range(n_outputs)]


def _random_inputs(desc, rng):
    import numpy as np

    xs = []
    for t in desc.inputs:
        dtype = np.dtype(t.dtype)
        if dtype.kind == "f":
            xs.append(rng.uniform(-3.0, 3.0, size=t.shape).astype(dtype))
        else:
            info = np.iinfo(dtype)
            xs.append(rng.integers(info.min, info.max, size=t.shape, endpoint=True).astype(dtype))
    return xs


def _run_against_tflm(project: Path, model: Path, trials: int, *, exact: bool, same_ticks: bool = True
                      ) -> list[int]:
    import numpy as np

    all_ticks = []
    with device_session(project) as (session, desc):
        rng = np.random.default_rng(1)
        for _ in range(trials):
            xs = _random_inputs(desc, rng)
            for i, x in enumerate(xs):
                session.set_input(i, x)
            ticks, _ = session.run(1)
            if same_ticks:
                assert session.run(1)[0] == ticks  # same input, same instruction count
            all_ticks.append(ticks)
            want = _tflm_outputs(model, xs, len(desc.outputs))
            for i, w in enumerate(want):
                got = session.get_output(i)
                if exact:
                    np.testing.assert_array_equal(got, w.reshape(got.shape))
                else:
                    np.testing.assert_allclose(got, w.reshape(got.shape), rtol=1e-5, atol=1e-5)
    return all_ticks


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("model_name", ["sine", "sine_float"])
def test_sine_runs_in_qemu_and_matches_tflite_micro(tmp_path, board, model_name):
    model = MODELS / f"{model_name}.tflite"
    if not model.exists():
        pytest.skip(f"{model} not present")
    mlf = _compile(model, tmp_path / "sine.tar")
    project = _generate(tmp_path, mlf, board)
    ticks = _run_against_tflm(project, model, trials=4, exact=model_name == "sine")
    assert all(t > 100 for t in ticks)


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_keyword_spotting_runs_on_the_m4_and_matches_tflite_micro_bit_exactly(tmp_path):
    model = MODELS / "kws.tflite"
    if not model.exists():
        pytest.skip(f"{model} not present")
    mlf = _compile(model, tmp_path / "kws.tar")
    project = _generate(tmp_path, mlf, "mps2_an386")
    _run_against_tflm(project, model, trials=2, exact=True)


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_standalone_demo_prints_outputs_and_ticks(tmp_path):
    from microtvm_tasks.project_api.client import instantiate_from_dir

    model = MODELS / "sine.tflite"
    mlf = _compile(model, tmp_path / "sine.tar")
    project = _generate(tmp_path, mlf, "mps2_an386", project_type="aot_standalone_demo")
    texts = []
    for _ in range(2):
        with instantiate_from_dir(project, timeout=120) as client:
            client.build({})
            client.open_transport({})
            out = b""
            try:
                with pytest.raises(server.TransportClosedError, match="main returned 0"):
                    for _ in range(200):
                        out += client.read_transport(4096, 10)
            finally:
                client.close_transport()
        texts.append(out.decode("latin-1"))
    assert "mt: status 0" in texts[0] and "MT_QEMU_ARM_EXIT code=0x00000000" in texts[0]
    ticks = re.search(r"mt: ticks (\d+) hz (\d+)", texts[0])
    assert ticks and int(ticks.group(1)) > 100
    assert texts[0] == texts[1]  # same image, same printout, same instruction count


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_microtvm_run_print_time_gives_the_same_figure_twice(tmp_path):
    """The CLI flow a user types: create-project, build, flash, then run --print-time twice."""
    from microtvm_tasks.runtime.fake_mlf import write_fake_mlf

    mlf = write_fake_mlf(tmp_path / "fake.tar", n=64)
    project = tmp_path / "proj"

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "microtvm_tasks.cli", *args],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    cli(
        "create-project",
        str(project),
        str(mlf),
        "qemu_arm",
        "-o",
        "board=mps2_an500",
        "project_type=host_driven",
    )
    cli("build", str(project))
    cli("flash", str(project))
    times = []
    for _ in range(2):
        out = cli("run", str(project), "--print-time")
        line = [x for x in out.splitlines() if x.startswith("time per inference")]
        assert line, out
        hz = qa.board_config("mps2_an500")[0]["sysclk_hz"]
        assert f"device ticks at {hz} Hz" in line[0]
        times.append(line[0])
    assert times[0] == times[1]


# ---- no QEMU left behind when the client dies ----------------------------------------------------

KILLER = r"""
import sys, time
from pathlib import Path
from microtvm_tasks.project_api.client import instantiate_from_dir
client = instantiate_from_dir(Path(sys.argv[1]), timeout=60)
client.open_transport({})
client.write_transport(b"\x7e\x7e", 5)
print("SERVER", client.pid if hasattr(client, "pid") else -1, flush=True)
print("OPEN", flush=True)
time.sleep(600)
"""


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(180)
@pytest.mark.parametrize("victim", ["server", "client"])
def test_killing_the_client_or_server_mid_run_leaves_no_qemu(tmp_path, victim):
    """SIGKILL the Project API server (or the program driving it): QEMU must go too."""
    from microtvm_tasks.runtime.fake_mlf import write_fake_mlf

    mlf = write_fake_mlf(tmp_path / "fake.tar", n=8)
    project = _generate(tmp_path, mlf, "mps2_an386")
    from microtvm_tasks.project_api.client import instantiate_from_dir

    with instantiate_from_dir(project, timeout=120) as client:
        client.build({})
    image = project / "build" / "image.elf"
    driver = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(project)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not qemu_pids_for(image):
            time.sleep(0.1)
        qemu = qemu_pids_for(image)
        assert len(qemu) == 1, "QEMU did not start"
        server_pid = int(Path(f"/proc/{qemu[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if victim == "server":
            os.kill(server_pid, signal.SIGKILL)
        else:
            # The whole client side dies at once (as with kill -9 of a terminal's job).
            os.killpg(driver.pid, signal.SIGKILL)
        end = time.monotonic() + 20
        while time.monotonic() < end and qemu_pids_for(image):
            time.sleep(0.1)
        assert qemu_pids_for(image) == [], f"QEMU {qemu} survived the death of the {victim}"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        driver.wait(timeout=30)
