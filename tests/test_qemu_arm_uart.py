"""The qemu_arm UART's throughput: a 1 MiB input and output cross the emulated wire bit-exactly
and fast enough to be usable (issue 13: it was 2-5 KiB/s, 250-byte frames, a byte per
QEMU main-loop round trip).

The floor asserted is below the figure measured on the 2-core development machine (about 150
KiB/s for the round trip, 105-120 KiB/s for the input direction alone) so that a loaded
machine does not fail it, and far above the old 5 KiB/s; MICROTVM_UART_FLOOR_KIBS raises it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from conftest import TEMPLATES_DIR, generate_project, load_server_module

TEMPLATE = TEMPLATES_DIR / "qemu_arm"
BENCH = Path(__file__).resolve().parents[1] / "bench"
MIB = 1 << 20
#: KiB/s (input + output bytes over the seconds of SET_INPUT + GET_OUTPUT) a 1 MiB round trip
#: must reach; see the module docstring.
FLOOR_KIBS = float(os.environ.get("MICROTVM_UART_FLOOR_KIBS", "50"))

needs_qemu = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="arm-none-eabi-gcc or qemu-system-arm not installed",
)

qa = load_server_module("qemu_arm")


@pytest.mark.parametrize("board", ["mps2_an385", "mps2_an386", "mps2_an500"])
def test_qemu_boards_frames_balance_speed_and_ram(board):
    """512-byte frames: a 1 MiB round trip above 100 KiB/s while the receive buffer (payload
    + 6 bytes of RAM) keeps a firmware's total RAM below TFLite Micro's for the same model;
    compile_definitions may still choose the protocol's largest (4096) for faster transfers."""
    b, q = qa.board_config(board)
    assert b["max_payload"] == 512
    mk = qa.board_mk(board, b, q)
    assert "-DMT_MAX_PAYLOAD=512" in mk
    own = qa.board_mk(board, b, q, compile_definitions="MT_MAX_PAYLOAD=4096")
    assert "-DMT_MAX_PAYLOAD=4096" in own and "-DMT_MAX_PAYLOAD=512" not in own


def test_qemu_uart_chardev_buffers_and_escapes_ctrl_a():
    """The mux backend (a buffer the UART model refills from at once) and nodelay replies."""
    session = qa.QemuSession(Path("image.elf"), "mps2-an385", 7, Path("qemu.log"))
    chardev = session.argv(3)[session.argv(3).index("-chardev") + 1]
    assert "mux=on" in chardev and "nodelay=on" in chardev and "fd=3" in chardev


@needs_qemu
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_one_mib_input_and_output_round_trip_bit_exactly_and_fast(tmp_path):
    import numpy as np

    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.runtime.fake_mlf import fake_reference, write_fake_mlf
    from microtvm_tasks.session import ProjectAPITransport, Session

    sys.path.insert(0, str(BENCH))
    try:
        from run_latency import throughput_input
    finally:
        sys.path.remove(str(BENCH))

    mlf = write_fake_mlf(tmp_path / "fake.tar", n=MIB)
    project = tmp_path / "proj"
    with instantiate_from_dir(TEMPLATE, timeout=60) as client:
        generate_project(client, mlf, project,
                         {"board": "mps2_an385", "project_type": "host_driven", "warning_as_error": True})
    x = throughput_input(MIB)
    assert (x.view(np.uint8) == 0x01).sum() > 1000  # QEMU's mux escape crosses the wire too
    with instantiate_from_dir(project, timeout=120) as client:
        client.build({})
        client.flash({})
        client.open_transport({})
        try:
            session = Session(ProjectAPITransport(client), timeout=60)
            assert session.hello(timeout=30)["max_payload"] == 512
            t0 = time.perf_counter()
            session.set_input(0, x)
            t1 = time.perf_counter()
            ticks, _ = session.run(1)
            assert session.run(1)[0] == ticks  # still deterministic after the sleeps of the load
            t2 = time.perf_counter()
            y = session.get_output(0)
            z = session.get_output(1)
            t3 = time.perf_counter()
        finally:
            client.close_transport()
    want_y, want_z = fake_reference(x)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(z, want_z)
    seconds = (t1 - t0) + (t3 - t2)
    kibs = 2 * MIB / 1024 / seconds
    print(f"qemu_arm 1 MiB round trip: {kibs:.1f} KiB/s (in {MIB / 1024 / (t1 - t0):.1f}, "
          f"out {MIB / 1024 / (t3 - t2):.1f}) in {seconds:.2f} s")
    assert kibs >= FLOOR_KIBS, f"{kibs:.1f} KiB/s, below the floor of {FLOOR_KIBS} KiB/s"
