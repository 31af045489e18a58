"""The `zephyr` template against a real Zephyr tree, west and a toolchain: build, then run in QEMU.

These complement ``test_zephyr.py::test_sine_builds_and_runs_on_zephyr_qemu_cortex_m3`` (one
host-driven input on the Cortex-M3) without repeating it: every int8 input of the sine model
through one session on the Cortex-M33 board ``mps2_an521`` (whose west board name changes
with Zephyr's hardware model v2, so the name the template picks is exercised), and the
``aot_standalone_demo`` project's printout on ``qemu_cortex_m3``. Both compare with the
TFLite Micro interpreter bit for bit. Two quick tests that run everywhere pin what those
runs taught: QEMU 7's pty announcement for Zephyr's multiplexed console, and a QEMU left
running by a killed server being stopped before the next run.

The real runs need, from the environment (nothing is downloaded; CI without Zephyr skips them, with
the reason): ``ZEPHYR_BASE`` naming a zephyr tree inside a west workspace that also holds
the cmsis (and, for Zephyr >= 3.5 without the SDK, picolibc) modules; ``west`` on PATH or
importable; a toolchain (``ZEPHYR_TOOLCHAIN_VARIANT``, or a Zephyr SDK where Zephyr finds
one); ``qemu-system-arm``. templates/zephyr/README.md gives a recipe with Debian's
arm-none-eabi-gcc.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import SINE_TFLITE, TEMPLATES_DIR, generate_project

from microtvm_tasks.project_api.client import instantiate_from_dir

TEMPLATE = TEMPLATES_DIR / "zephyr"

#: Where Zephyr's FindZephyr-sdk.cmake looks for an SDK when nothing names one.
SDK_GLOBS = (
    "~/zephyr-sdk-*",
    "~/.local/zephyr-sdk-*",
    "~/.local/opt/zephyr-sdk-*",
    "~/bin/zephyr-sdk-*",
    "/opt/zephyr-sdk-*",
    "/usr/zephyr-sdk-*",
    "/usr/local/zephyr-sdk-*",
)


def _west_cmd() -> str | None:
    """west as the template's west_cmd option wants it: the script, else this Python's module."""
    exe = shutil.which("west")
    if exe:
        return exe
    if importlib.util.find_spec("west") is not None:
        return f"{sys.executable} -m west"
    return None


def _has_toolchain() -> bool:
    if os.environ.get("ZEPHYR_TOOLCHAIN_VARIANT") or os.environ.get("ZEPHYR_SDK_INSTALL_DIR"):
        return True
    if (Path.home() / ".cmake" / "packages" / "Zephyr-sdk").is_dir():
        return True
    for pattern in SDK_GLOBS:
        parent = Path(pattern).expanduser().parent
        if parent.is_dir() and any(parent.glob(Path(pattern).name)):
            return True
    return False


def _missing() -> str | None:
    """Why these tests cannot run here, or None."""
    problems = []
    base = os.environ.get("ZEPHYR_BASE")
    if not base:
        problems.append("ZEPHYR_BASE is not set")
    elif not (Path(base, "VERSION").is_file() and Path(base, "cmake").is_dir()):
        problems.append(f"ZEPHYR_BASE={base} is not a zephyr tree")
    if _west_cmd() is None:
        problems.append("west is not installed (pip install west)")
    if not _has_toolchain():
        problems.append(
            "no toolchain: set ZEPHYR_TOOLCHAIN_VARIANT (e.g. gnuarmemb) or install the Zephyr SDK"
        )
    if shutil.which("qemu-system-arm") is None:
        problems.append("qemu-system-arm is not installed")
    return "; ".join(problems) or None


MISSING = _missing()


def needs_zephyr(test):
    """Skip (with the reason) without a real Zephyr setup; an e2e test of up to 30 minutes."""
    skip = pytest.mark.skipif(MISSING is not None, reason=f"needs a real Zephyr setup: {MISSING}")
    return skip(pytest.mark.e2e(pytest.mark.timeout(1800)(test)))


#: What Debian's QEMU 7.2 prints for Zephyr's `-chardev pty,id=con,mux=on` (the console
#: multiplexed with the monitor: the label is that of the pty under the mux), and for
#: mps2_an521's second UART, as seen in the runs above.
QEMU_7_PTY_LINES = (
    "char device redirected to /dev/pts/0 (label con-base)",
    "char device redirected to /dev/pts/1 (label hostS0)",
)


def test_the_pty_line_of_qemu_7_is_recognised():
    from conftest import load_server_module

    zs = load_server_module("zephyr")
    found = [zs.PTY_RE.search(line) for line in QEMU_7_PTY_LINES]
    assert [m.groups() if m else None for m in found] == [
        ("/dev/pts/0", "con-base"),
        ("/dev/pts/1", "hostS0"),
    ]
    assert zs.PTY_RE.search("char device redirected to /dev/pts/3 (label con)").groups() == (
        "/dev/pts/3",
        "con",
    )


def _tflm_outputs(inputs: list):
    """TFLite Micro's int8 output for each input of the sine model."""
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(SINE_TFLITE.read_bytes(), arena_size=1 << 16)
    out = []
    for x in inputs:
        interp.set_input(x, 0)
        interp.invoke()
        out.append(np.array(interp.get_output(0)))
    return out


def _build(template_client, sine_mlf: Path, project: Path, **options) -> Path:
    """Generate (with the environment's west and tree written into the project), build and
    flash (a no-op for QEMU boards) through the project's own Project API server."""
    generate_project(
        template_client,
        sine_mlf,
        project,
        {"west_cmd": _west_cmd(), "zephyr_base": os.environ["ZEPHYR_BASE"], **options},
    )
    with instantiate_from_dir(project, timeout=1800) as client:
        client.build({})
        client.flash({})
    assert (project / "build" / "zephyr" / "zephyr.elf").is_file()
    return project


@needs_zephyr
def test_every_sine_input_on_mps2_an521_matches_tflite_micro(template_client, sine_mlf, tmp_path):
    import numpy as np

    from microtvm_tasks.session import ProjectAPITransport, Session

    project = _build(
        template_client, sine_mlf, tmp_path / "an521", board="mps2_an521", project_type="host_driven"
    )
    image = json.loads((project / "build" / "image.json").read_text())
    version = Path(os.environ["ZEPHYR_BASE"], "VERSION").read_text()
    major, minor = (int(re.search(rf"VERSION_{k}\s*=\s*(\d+)", version).group(1)) for k in ("MAJOR", "MINOR"))
    assert image["target"] == ("mps2/an521/cpu0" if (major, minor) >= (3, 7) else "mps2_an521")

    xs = [np.array([[v]], dtype=np.int8) for v in range(-128, 128)]
    want = _tflm_outputs(xs)
    got = []
    with instantiate_from_dir(project, timeout=300) as client:
        client.open_transport({})
        try:
            session = Session(ProjectAPITransport(client), timeout=30.0)
            session.hello(timeout=60.0)
            for x in xs:
                session.set_input(0, x)
                ticks, hz = session.run(1)
                assert hz > 0 and ticks > 0
                got.append(np.asarray(session.get_output(0)))
        finally:
            client.close_transport()
    mismatches = [
        int(x.item())
        for x, g, w in zip(xs, got, want, strict=True)
        if not np.array_equal(g.reshape(w.shape), w)
    ]
    assert mismatches == [], f"device output differs from TFLite Micro for inputs {mismatches}"
    assert len({int(g.item()) for g in got}) > 20  # a sine, not a constant


def _baked_input(project: Path) -> int:
    """The int8 input the standalone demo runs on: from mt_standalone_input.c when the
    template baked one, else zeros (the glue's empty table)."""
    path = project / "src" / "mt_standalone_input.c"
    if not path.is_file():
        assert "mt_standalone_num_inputs = 0" in (project / "src" / "mt_model_glue.c").read_text()
        return 0
    m = re.search(r"mt_sa_in_0\[\d+\]\s*=\s*\{\s*([^,}\s]+)", path.read_text())
    assert m, f"no mt_sa_in_0 initializer in {path}"
    value = int(m.group(1).rstrip("uU"), 0)
    return value - 256 if value > 127 else value


@needs_zephyr
def test_standalone_demo_on_qemu_cortex_m3_prints_tflite_micro_output(template_client, sine_mlf, tmp_path):
    import numpy as np

    from microtvm_tasks.session import read_standalone_output

    project = _build(
        template_client,
        sine_mlf,
        tmp_path / "demo",
        board="qemu_cortex_m3",
        project_type="aot_standalone_demo",
    )
    text = read_standalone_output(project, timeout=120.0)
    m = re.search(r"mt: output 0 \S+ int8 \[1,1\] = (-?\d+)", text)
    assert m, f"no int8 output line in the demo's printout: {text!r}"
    assert re.search(r"mt: status 0\b", text), text
    assert re.search(r"mt: ticks \d+ hz [1-9]\d*", text), text
    x = np.array([[_baked_input(project)]], dtype=np.int8)
    (want,) = _tflm_outputs([x])
    assert int(m.group(1)) == int(want.item())


def test_a_qemu_left_by_a_killed_server_is_stopped_before_the_next_run(tmp_path):
    """A stand-in for the orphan (its command line names the build's zephyr.elf, as QEMU's
    does) is stopped with its process group; a process that does not name it is left alone."""
    import subprocess
    import time

    from conftest import load_server_module

    if not Path("/proc/self/cmdline").is_file():
        pytest.skip("needs Linux's /proc (stop_stale_qemu reads command lines there)")
    zs = load_server_module("zephyr")
    build = tmp_path / "build"
    (build / "zephyr").mkdir(parents=True)
    sleeper = "import time; time.sleep(120)"
    ours = subprocess.Popen(
        [sys.executable, "-c", sleeper, "-kernel", str(build / "zephyr" / "zephyr.elf")],
        start_new_session=True,
    )
    other = subprocess.Popen([sys.executable, "-c", sleeper, "-kernel", "/elsewhere/zephyr.elf"])
    try:
        for proc in (ours, other):  # until both have exec'd (their command lines are final)
            deadline = time.monotonic() + 10
            while b"-kernel" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                assert time.monotonic() < deadline
                time.sleep(0.02)
        (build / "qemu.pid").write_text(f"{other.pid}\n")
        assert zs.stop_stale_qemu(build) is False
        assert other.poll() is None
        (build / "qemu.pid").write_text(f"{ours.pid}\n")
        assert zs.stop_stale_qemu(build) is True
        assert ours.wait(timeout=10) != 0
        assert zs.stop_stale_qemu(tmp_path / "no-build") is False
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait(timeout=10)
