"""The zephyr template: boards as data, a valid Zephyr application generated for every board
through a real Project API server process, the exact west command lines (driven through a
stand-in `west` that records its argv and, for `-t run`, serves a pseudo-terminal like QEMU),
the platform hooks compiled against declarations of the Zephyr APIs they use, the missing-tool
message, and, when west and a Zephyr tree are installed, a real build and QEMU run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SINE_TFLITE as SINE
from conftest import TEMPLATES_DIR, generate_project, load_server_module

from microtvm_tasks.errors import ToolNotFoundError
from microtvm_tasks.project_api import server
from microtvm_tasks.project_api.client import instantiate_from_dir
from microtvm_tasks.runtime.fake_mlf import write_fake_mlf

TEMPLATE = TEMPLATES_DIR / "zephyr"
BOARDS = json.loads((TEMPLATE / "boards.json").read_text())["boards"]
REQUIRED_BOARDS = {
    "qemu_x86",
    "qemu_cortex_m3",
    "qemu_riscv32",
    "mps2_an521",
    "nucleo_f746zg",
    "nucleo_l4r5zi",
    "nrf5340dk_nrf5340_cpuapp",
    "stm32f746g_disco",
    "mimxrt1050_evk",
}


zs = load_server_module("zephyr")


def _generate(client, mlf: Path, project: Path, **options) -> Path:
    defaults = {"board": "qemu_x86", "project_type": "host_driven"}
    return generate_project(client, mlf, project, {**defaults, **options})


# ---- board data ----------------------------------------------------------------------------


def test_boards_json_describes_every_board():
    assert REQUIRED_BOARDS <= set(BOARDS)
    for name, p in BOARDS.items():
        for key in ("board", "model", "arch", "cpu", "emulator", "fpu", "usb_ids", "baud", "max_payload"):
            assert key in p, f"{name} lacks {key}"
        assert isinstance(p["fpu"], bool)
        if not p["emulator"]:
            assert p["usb_ids"], name
            assert all(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", i) for i in p["usb_ids"]), name
            assert p["flash_runner"] in ("openocd", "jlink", "nrfjprog", "pyocd", "stm32cubeprogrammer"), name
    assert BOARDS["qemu_x86"]["emulator"] and BOARDS["mps2_an521"]["emulator"]
    assert not BOARDS["nucleo_f746zg"]["emulator"] and BOARDS["nucleo_f746zg"]["fpu"]
    assert not BOARDS["qemu_cortex_m3"]["fpu"]
    # Zephyr >= 3.7 names boards by SoC and core; older releases by the legacy name.
    assert zs.board_target("nrf5340dk_nrf5340_cpuapp", (3, 6)) == "nrf5340dk_nrf5340_cpuapp"
    assert zs.board_target("nrf5340dk_nrf5340_cpuapp", (3, 7)) == "nrf5340dk/nrf5340/cpuapp"
    assert zs.board_target("mps2_an521", (4, 0)) == "mps2/an521/cpu0"
    assert zs.board_target("qemu_x86", None) == "qemu_x86"


def test_server_info_lists_tvm_option_names(template_client):
    info = template_client.server_info_query("0.18.0")
    assert info["platform_name"] == "zephyr" and info["is_template"] is True
    opts = {o["name"]: o for o in info["project_options"]}
    for name in (
        "board",
        "project_type",
        "west_cmd",
        "zephyr_base",
        "config_main_stack_size",
        "serial_number",
        "gdbserver_port",
        "verbose",
        "warning_as_error",
        "compile_definitions",
        "extra_files_tar",
    ):
        assert name in opts, name
    assert set(opts["board"]["choices"]) == set(BOARDS)
    assert set(opts["project_type"]["choices"]) == {"host_driven", "aot_standalone_demo"}
    assert opts["config_main_stack_size"]["type"] == "int" and opts["gdbserver_port"]["type"] == "int"
    assert "open_transport" in opts["gdbserver_port"]["optional"]
    assert "flash" in opts["serial_number"]["optional"]


# ---- generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_generate_a_zephyr_application_for_every_board(template_client, tmp_path, board):
    project = _generate(
        template_client,
        write_fake_mlf(tmp_path / "fake.tar"),
        tmp_path / "app",
        board=board,
        compile_definitions="-DMY_FLAG=2 OTHER",
        warning_as_error=True,
    )
    files = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    assert {
        "CMakeLists.txt",
        "prj.conf",
        "microtvm_api_server.py",
        "boards.json",
        "model.tar",
        "microtvm_project.json",
    } <= files
    for f in (
        "main.c",
        "platform_zephyr.c",
        "mt_model_glue.c",
        "mt_session.c",
        "platform.h",
        "model/default_lib0.c",
        "model/default_lib1.c",
        "model/tvmgen_default.h",
    ):
        assert f"src/{f}" in files, f
    cmake = (project / "CMakeLists.txt").read_text()
    assert "find_package(Zephyr REQUIRED" in cmake and "target_sources(app PRIVATE" in cmake
    assert f"MT_MAX_PAYLOAD={BOARDS[board]['max_payload']}" in cmake
    assert "MT_PROJECT_HOST_DRIVEN" in cmake and "MY_FLAG=2 OTHER" in cmake
    assert "target_compile_options(app PRIVATE -Werror)" in cmake
    assert ("set(QEMU_PTY 1)" in cmake) == bool(BOARDS[board]["emulator"])
    conf = (project / "prj.conf").read_text()
    for line in (
        "CONFIG_UART_INTERRUPT_DRIVEN=y",
        "CONFIG_RING_BUFFER=y",
        "CONFIG_UART_CONSOLE=n",
        "CONFIG_MAIN_STACK_SIZE=4096",
        "CONFIG_REBOOT=y",
    ):
        assert line in conf.splitlines(), line
    assert ("CONFIG_FPU=y" in conf.splitlines()) == BOARDS[board]["fpu"]
    main = (project / "src" / "main.c").read_text()
    assert "mt_session_main()" in main and "mt_platform_init()" in main
    with instantiate_from_dir(project, timeout=60) as client:
        info = client.server_info_query("0.18.0")
    assert info["is_template"] is False


def test_stack_size_and_standalone_demo_options(template_client, tmp_path):
    project = _generate(
        template_client,
        write_fake_mlf(tmp_path / "fake.tar"),
        tmp_path / "demo",
        board="nucleo_l4r5zi",
        project_type="aot_standalone_demo",
        config_main_stack_size=16384,
    )
    assert "CONFIG_MAIN_STACK_SIZE=16384" in (project / "prj.conf").read_text().splitlines()
    assert "MT_PROJECT_AOT_STANDALONE_DEMO" in (project / "CMakeLists.txt").read_text()


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"board": "esp32"}, "unknown board"),
        ({"project_type": "mlperftiny"}, "project_type must be one of"),
        ({"config_main_stack_size": 100}, "too small"),
    ],
)
def test_generate_rejects_bad_options(template_client, tmp_path, options, expected):
    with pytest.raises(server.ServerError) as info:
        _generate(template_client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "p", **options)
    assert expected in str(info.value)
    assert not (tmp_path / "p").exists()


# ---- the C hooks against the Zephyr API --------------------------------------------------

# Declarations of exactly the Zephyr APIs platform_zephyr.c and main.c use, with Zephyr's
# signatures (include/zephyr/drivers/uart.h, kernel.h, sys/ring_buffer.h, sys/reboot.h).
ZEPHYR_DECLS = {
    "zephyr/kernel.h": """
        #pragma once
        #include <stdint.h>
        #include <stdbool.h>
        #include <stddef.h>
        typedef struct { int64_t ticks; } k_timeout_t;
        #define K_FOREVER ((k_timeout_t){-1})
        struct k_sem { unsigned int count, limit; };
        #define K_SEM_DEFINE(name, initial, max) struct k_sem name = {(initial), (max)}
        int k_sem_take(struct k_sem *sem, k_timeout_t timeout);
        void k_sem_give(struct k_sem *sem);
        uint32_t k_cycle_get_32(void);
        int sys_clock_hw_cycles_per_sec(void);
        void k_cpu_idle(void);
        int32_t k_sleep(k_timeout_t timeout);
        #define ARG_UNUSED(x) (void)(x)
    """,
    "zephyr/device.h": """
        #pragma once
        #include <stdbool.h>
        struct device { const char *name; };
        extern const struct device __console_uart;
        #define DT_CHOSEN(x) x
        #define DEVICE_DT_GET(node) (&__console_uart)
        bool device_is_ready(const struct device *dev);
    """,
    "zephyr/drivers/uart.h": """
        #pragma once
        #include <zephyr/device.h>
        #include <stdint.h>
        typedef void (*uart_irq_callback_user_data_t)(const struct device *dev, void *user_data);
        int uart_irq_callback_user_data_set(const struct device *dev, uart_irq_callback_user_data_t cb,
                                            void *user_data);
        void uart_irq_rx_enable(const struct device *dev);
        int uart_irq_update(const struct device *dev);
        int uart_irq_is_pending(const struct device *dev);
        int uart_irq_rx_ready(const struct device *dev);
        int uart_fifo_read(const struct device *dev, uint8_t *rx_data, const int size);
        void uart_poll_out(const struct device *dev, unsigned char out_char);
    """,
    "zephyr/sys/ring_buffer.h": """
        #pragma once
        #include <stdint.h>
        struct ring_buf { uint8_t *buffer; uint32_t size; };
        #define RING_BUF_DECLARE(name, size8) \\
          static uint8_t name##_data[size8]; struct ring_buf name = {name##_data, (size8)}
        uint32_t ring_buf_put(struct ring_buf *buf, const uint8_t *data, uint32_t size);
        uint32_t ring_buf_get(struct ring_buf *buf, uint8_t *data, uint32_t size);
    """,
    "zephyr/sys/reboot.h": """
        #pragma once
        #define SYS_REBOOT_COLD 1
        void sys_reboot(int type);
    """,
}


@pytest.mark.parametrize("compiler", ["gcc", "arm-none-eabi-gcc"])
@pytest.mark.parametrize("project_type", ["host_driven", "aot_standalone_demo"])
def test_platform_hooks_compile_cleanly_against_the_zephyr_api(
    template_client, tmp_path, compiler, project_type
):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    project = _generate(
        template_client,
        write_fake_mlf(tmp_path / "fake.tar"),
        tmp_path / "app",
        board="qemu_cortex_m3",
        project_type=project_type,
    )
    inc = tmp_path / "zinc"
    for rel, text in ZEPHYR_DECLS.items():
        (inc / rel).parent.mkdir(parents=True, exist_ok=True)
        (inc / rel).write_text(textwrap.dedent(text))
    define = f"-DMT_PROJECT_{project_type.upper()}"
    for src in ("main.c", "platform_zephyr.c"):
        subprocess.run(
            [
                compiler,
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-fsyntax-only",
                define,
                "-DMT_MAX_PAYLOAD=512",
                f"-I{inc}",
                f"-I{project / 'src'}",
                str(project / "src" / src),
            ],
            check=True,
            timeout=60,
        )


# ---- west command lines, through a stand-in west ---------------------------------------

FAKE_WEST = r'''#!{python}
"""Stand-in for west: records its argv and environment, fakes `build`, and for
`build -t run` serves a pseudo-terminal the way QEMU announces one, echoing what the
"firmware" receives after undoing QEMU mux escaping (0x01 0x01 -> 0x01)."""
import json, os, pathlib, sys, time
args = sys.argv[1:]
log = pathlib.Path(os.environ["FAKE_WEST_LOG"])
with open(log, "a") as f:
    f.write(json.dumps({{"argv": args, "cwd": os.getcwd(), "ZEPHYR_BASE": os.environ.get("ZEPHYR_BASE"),
                        "QEMU_EXTRA_FLAGS": os.environ.get("QEMU_EXTRA_FLAGS")}}) + "\n")
if "build" in args and "-t" in args:
    import pty, tty
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    print("qemu-system-i386: -chardev pty,id=con,mux=on: char device redirected to "
          + os.ttyname(slave) + " (label con)", flush=True)
    pending = b""
    while True:
        data = os.read(master, 4096)
        pending += data
        out = b""
        while pending:
            if pending[:1] == b"\x01":
                if len(pending) < 2:
                    break
                out += pending[1:2]
                pending = pending[2:]
            else:
                out += pending[:1]
                pending = pending[1:]
        if out == b"QUIT":
            sys.exit(3)
        os.write(master, out)
elif "build" in args:
    d = pathlib.Path(args[args.index("-d") + 1])
    (d / "zephyr").mkdir(parents=True, exist_ok=True)
    (d / "zephyr" / "zephyr.elf").write_bytes(b"\x7fELF")
    sys.exit(int(os.environ.get("FAKE_WEST_RC", "0")))
'''


@pytest.fixture()
def fake_zephyr(tmp_path, monkeypatch):
    """A stand-in west on PATH and a minimal Zephyr tree (VERSION, cmake/) in ZEPHYR_BASE."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    west = bindir / "west"
    west.write_text(FAKE_WEST.format(python=sys.executable))
    west.chmod(west.stat().st_mode | stat.S_IEXEC)
    base = tmp_path / "zephyrproject" / "zephyr"
    (base / "cmake").mkdir(parents=True)
    (base / "VERSION").write_text("VERSION_MAJOR = 3\nVERSION_MINOR = 7\nPATCHLEVEL = 0\n")
    log = tmp_path / "west.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ZEPHYR_BASE", str(base))
    monkeypatch.setenv("FAKE_WEST_LOG", str(log))
    return {"base": base, "log": log}


def _west_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_build_and_flash_run_west_with_the_board_and_runner(template_client, tmp_path, fake_zephyr):
    project = _generate(
        template_client,
        write_fake_mlf(tmp_path / "fake.tar"),
        tmp_path / "app",
        board="nrf5340dk_nrf5340_cpuapp",
    )
    with instantiate_from_dir(project, timeout=120) as client:
        client.build({})
        client.flash({"serial_number": "001050012345"})
    build, flash = _west_calls(fake_zephyr["log"])
    # Zephyr 3.7 (the fake tree's VERSION): the hardware-model-v2 board name.
    assert build["argv"] == [
        "build",
        "-b",
        "nrf5340dk/nrf5340/cpuapp",
        "-d",
        str(project / "build"),
        "-p",
        "auto",
        str(project),
    ]
    assert build["ZEPHYR_BASE"] == str(fake_zephyr["base"])
    assert flash["argv"] == [
        "flash",
        "-d",
        str(project / "build"),
        "-r",
        "nrfjprog",
        "--dev-id",
        "001050012345",
    ]
    assert json.loads((project / "build" / "image.json").read_text())["target"] == "nrf5340dk/nrf5340/cpuapp"


def test_flash_serial_number_arguments_per_runner():
    assert zs.flash_serial_args("openocd", "066AFF") == ["--cmd-pre-init", "adapter serial 066AFF"]
    assert zs.flash_serial_args("jlink", "000683") == ["--dev-id", "000683"]
    assert zs.flash_serial_args("pyocd", None) == []
    with pytest.raises(Exception, match="not supported with flash runner"):
        zs.flash_serial_args("bossac", "1")


def test_qemu_board_flash_is_a_no_op_and_build_failure_shows_the_log(
    template_client, tmp_path, fake_zephyr, monkeypatch
):
    project = _generate(
        template_client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "app", board="qemu_cortex_m3"
    )
    with instantiate_from_dir(project, timeout=120) as client:
        client.build({})
        client.flash({})
    assert [c["argv"][0] for c in _west_calls(fake_zephyr["log"])] == ["build"]
    monkeypatch.setenv("FAKE_WEST_RC", "2")
    with instantiate_from_dir(project, timeout=120) as client:
        with pytest.raises(server.ServerError) as info:
            client.build({})
    assert "west build failed (exit 2)" in str(info.value) and "build.log" in str(info.value)


@pytest.mark.timeout(120)
def test_qemu_transport_uses_the_pty_escapes_ctrl_a_and_notices_exit(template_client, tmp_path, fake_zephyr):
    project = _generate(
        template_client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "app", board="qemu_x86"
    )
    with instantiate_from_dir(project, timeout=120) as client:
        client.build({})
        timeouts = client.open_transport({"gdbserver_port": 3333})
        assert timeouts["timeouts"]["session_start_timeout_sec"] > 0
        payload = bytes(range(256))  # 0x01 included: must arrive unchanged through the mux
        client.write_transport(payload, 5.0)
        got = b""
        while len(got) < len(payload):
            got += client.read_transport(4096, 5.0)
        assert got == payload
        with pytest.raises(server.IoTimeoutError):
            client.read_transport(16, 0.2)
        client.write_transport(b"QUIT", 5.0)  # the emulator exits: the transport is closed
        with pytest.raises(server.TransportClosedError):
            for _ in range(50):
                client.read_transport(16, 0.2)
        client.close_transport()
    run = _west_calls(fake_zephyr["log"])[-1]
    assert run["argv"] == ["build", "-d", str(project / "build"), "-t", "run", "--cmake"]
    assert run["QEMU_EXTRA_FLAGS"] == "-gdb tcp::3333"


# ---- missing tools -------------------------------------------------------------------------


def test_no_west_and_no_zephyr_base_is_one_message_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(zs, "WEST_CMD", None)
    monkeypatch.setattr(zs, "ZEPHYR_BASE", None)
    with pytest.raises(ToolNotFoundError) as info:
        zs.resolve_tools({})
    text = str(info.value)
    for needle in (
        "west is not installed",
        "pip install west",
        "ZEPHYR_BASE",
        "zephyr_base=",
        "west_cmd=",
        "docs.zephyrproject.org",
    ):
        assert needle in text, needle
    with pytest.raises(ToolNotFoundError, match="is not a zephyr repository"):
        zs.resolve_tools({"west_cmd": sys.executable, "zephyr_base": str(tmp_path)})
    if importlib.util.find_spec("west") is None:
        with pytest.raises(ToolNotFoundError, match="no west module"):
            zs.resolve_tools({"west_cmd": f"{sys.executable} -m west", "zephyr_base": str(tmp_path)})


def test_missing_tools_message_travels_through_the_project_api(template_client, tmp_path, monkeypatch):
    # With or without west installed, a build with no Zephyr tree must say what to set.
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    project = _generate(template_client, write_fake_mlf(tmp_path / "fake.tar"), tmp_path / "app")
    with instantiate_from_dir(project, timeout=60) as client:
        with pytest.raises(server.ServerError) as info:
            client.build({})
    assert "ToolNotFoundError" in str(info.value) and "ZEPHYR_BASE" in str(info.value)


def test_serial_port_found_by_usb_id_or_serial_number(monkeypatch):
    from serial.tools import list_ports
    from serial.tools.list_ports_common import ListPortInfo

    def Port(device, vid, pid, sn, location):  # noqa: N802 - a port as pyserial describes one
        port = ListPortInfo(device, skip_link_detection=True)
        port.vid, port.pid, port.serial_number, port.location = vid, pid, sn, location
        port.apply_usb_info()
        return port

    ports = [
        Port("/dev/ttyACM0", 0x0483, 0x374B, "066AFF", "1-1:1.2"),
        # One nRF5340 DK (v1.0.0, J-Link OB) with three virtual COM ports: VCOM2 is the app UART.
        Port("/dev/ttyACM3", 0x1366, 0x1055, "001050012345", "1-2:1.0"),
        Port("/dev/ttyACM4", 0x1366, 0x1055, "001050012345", "1-2:1.2"),
        Port("/dev/ttyACM5", 0x1366, 0x1055, "001050012345", "1-2:1.4"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: ports)
    assert zs.find_serial_port("nucleo_f746zg", None) == "/dev/ttyACM0"
    assert zs.find_serial_port("nucleo_f746zg", "066AFF") == "/dev/ttyACM0"
    assert zs.find_serial_port("nrf5340dk_nrf5340_cpuapp", None) == "/dev/ttyACM5"
    assert zs.find_serial_port("nrf5340dk_nrf5340_cpuapp", "1050012345") == "/dev/ttyACM5"
    with pytest.raises(zs.BoardNotFoundError, match="no serial port with USB id 1366:0105"):
        zs.find_serial_port("mimxrt1050_evk", None)
    # Two ST-LINK boards: the serial number must choose.
    ports.append(Port("/dev/ttyACM1", 0x0483, 0x374B, "0670FF", "1-3:1.2"))
    with pytest.raises(zs.BoardNotFoundError, match="pick one board with serial_number"):
        zs.find_serial_port("nucleo_f746zg", None)
    assert zs.find_serial_port("nucleo_f746zg", "0670FF") == "/dev/ttyACM1"


# ---- real Zephyr (only where it is installed) ----------------------------------------------

# One judgement of "is a real Zephyr here" (tree, west, toolchain, QEMU), shared with
# test_zephyr_real.py, so a machine with west but no toolchain skips instead of failing.
from test_zephyr_real import MISSING as REAL_ZEPHYR_MISSING  # noqa: E402

needs_zephyr = pytest.mark.skipif(
    REAL_ZEPHYR_MISSING is not None, reason=f"real Zephyr: {REAL_ZEPHYR_MISSING}"
)


@needs_zephyr
@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_sine_builds_and_runs_on_zephyr_qemu_cortex_m3(template_client, tmp_path, sine_mlf):
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    from microtvm_tasks.session import run_project

    project = _generate(template_client, sine_mlf, tmp_path / "sine_zephyr", board="qemu_cortex_m3")
    with instantiate_from_dir(project, timeout=1800) as client:
        client.build({})
    x = np.array([[37]], dtype=np.int8)
    result = run_project(project, inputs=[x], timeout=30.0)
    interp = runtime.Interpreter.from_bytes(SINE.read_bytes(), arena_size=1 << 16)
    interp.set_input(x, 0)
    interp.invoke()
    assert np.array_equal(result.outputs[0], np.asarray(interp.get_output(0)))
