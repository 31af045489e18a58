"""The host template through the real Project API: generate, build, open the transport,
run the protocol, crash handling, the standalone demo, build errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TEMPLATES_DIR, generate_project, write_tar

from microtvm_tasks.errors import SessionError
from microtvm_tasks.project_api import server
from microtvm_tasks.project_api.client import instantiate_from_dir
from microtvm_tasks.runtime.fake_mlf import IN_SCALE, IN_ZP, fake_reference, write_fake_mlf
from microtvm_tasks.session import ProjectAPITransport, Session, run_project

TEMPLATE = TEMPLATES_DIR / "host"

pytestmark = pytest.mark.skipif(
    not all(map(lambda t: __import__("shutil").which(t), ("make", "cc"))), reason="make and cc needed"
)


def _generate(tmp: Path, name: str, *, n: int = 4, build: bool = True, tvm_style: bool = False,
              **options) -> Path:
    tar = write_fake_mlf(tmp / f"{name}.tar", n=n, tvm_style=tvm_style)
    proj = tmp / name
    opts = {"project_type": "host_driven", "warning_as_error": True, **options}
    with instantiate_from_dir(TEMPLATE) as c:
        generate_project(c, tar, proj, opts)
    if build:
        with instantiate_from_dir(proj) as c:
            c.build({})
    return proj


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("host"), "proj")


def test_template_server_info_and_fast_light_start():
    start = time.monotonic()
    with instantiate_from_dir(TEMPLATE) as c:
        info = c.server_info_query("0.18.0")
    assert time.monotonic() - start < 5
    assert info["platform_name"] == "host" and info["is_template"] is True
    names = {o["name"]: o for o in info["project_options"]}
    assert {
        "project_type",
        "verbose",
        "warning_as_error",
        "compile_definitions",
        "extra_files_tar",
        "cc",
        "cflags",
    } <= set(names)
    assert names["project_type"]["choices"] == ["host_driven", "aot_standalone_demo"]
    # importing the server must not pull in numpy or the compiler (start-up time)
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'microtvm_tasks')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(TEMPLATE / "microtvm_api_server.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "numpy" not in out and "compiler" not in out and "glue" not in out, out


def test_generated_project_layout(project):
    for rel in (
        "microtvm_api_server.py",
        "Makefile",
        "model.tar",
        "model/metadata.json",
        "model/codegen/host/include/tvmgen_default.h",
        "src/main.c",
        "src/platform_host.c",
        "src/mt_session.c",
        "src/mt_frame.c",
        "src/platform.h",
        "src/mt_model_glue.c",
        "build/main",
    ):
        assert (project / rel).exists(), rel
    assert "-Werror" in (project / "Makefile").read_text()
    with instantiate_from_dir(project) as c:
        info = c.server_info_query("0.18.0")
    assert info["is_template"] is False
    assert info["model_library_format_path"] == str(project / "model.tar")


def test_protocol_over_project_api_transport(project):
    with instantiate_from_dir(project) as c:
        c.open_transport({})
        try:
            s = Session(ProjectAPITransport(c), timeout=5)
            hello = s.hello()
            assert hello == {"version": 1, "max_payload": 4096}
            d = s.describe()
            assert d.name == "default" and d.arena_bytes == 16
            (x,) = d.inputs
            assert (x.name, x.dtype, x.shape, x.nbytes) == ("x:0", "int8", (1, 4), 4)
            assert x.scale == pytest.approx(IN_SCALE) and x.zero_point == IN_ZP
            assert [(t.name, t.dtype, t.shape, t.scale) for t in d.outputs] == [
                ("y", "int8", (1, 4), IN_SCALE),
                ("z", "float32", (2,), None),
            ]
            # float input for a quantised tensor: quantised with scale 0.5, zero point -1
            s.set_input(0, np.array([[1.0, -2.0, 60.0, 0.2]], dtype=np.float32))
            ticks, hz = s.run(3)
            assert hz == 1_000_000_000 and ticks > 0
            q = np.array([[1, -5, 119, -1]], dtype=np.int8)
            y_ref, z_ref = fake_reference(q)
            np.testing.assert_array_equal(s.get_output(0), y_ref)
            np.testing.assert_array_equal(s.get_output(1), z_ref)
            # an error from the model comes back as a device error, not silence
            s.set_input(0, np.array([[42, -42, 42, 0]], dtype=np.int8))
            with pytest.raises(SessionError, match=r"device error 7 .*returned 3"):
                s.run(1)
            with pytest.raises(SessionError, match="device error 5"):
                s.request(0x06, bytes([9, 0, 0, 0, 0, 0, 1, 0]))
            # nothing to read: the transport times out instead of blocking
            with pytest.raises(server.IoTimeoutError):
                c.read_transport(10, 0.05)
        finally:
            c.close_transport()


def test_run_project_with_chunked_input_and_state_options(tmp_path):
    # > 1 SET_INPUT / GET_OUTPUT chunk each way
    proj = _generate(tmp_path, "big", n=700, compile_definitions="-DMT_MAX_PAYLOAD=128 -DUNUSED_FLAG=1")
    mk = (proj / "Makefile").read_text()
    assert "-DMT_MAX_PAYLOAD=128" in mk and "-DUNUSED_FLAG=1" in mk and "4096" not in mk
    x = np.random.default_rng(3).integers(-128, 127, size=(1, 700), endpoint=True).astype(np.int8)
    r = run_project(proj, {"x:0": x}, repeat=2, number=5)
    y_ref, z_ref = fake_reference(x)
    np.testing.assert_array_equal(r.outputs[0], y_ref)
    np.testing.assert_array_equal(r.outputs[1], z_ref)
    assert len(r.timings) == 2 and all(t > 0 for t in r.timings)
    assert r.round_trip_s > 0
    r0 = run_project(proj, fill_mode="zeros")
    np.testing.assert_array_equal(r0.outputs[0], np.ones((1, 700), np.int8))
    r1 = run_project(proj, fill_mode="ones")
    assert r1.outputs[1].tolist() == [700.0, 1.0]


def test_crashed_program_is_transport_closed(tmp_path, monkeypatch):
    # extra_files_tar adds a source whose constructor aborts when asked to
    crash_c = (
        b"#include <stdlib.h>\n__attribute__((constructor)) static void mt_boom(void) "
        b'{ if (getenv("MT_TEST_CRASH")) abort(); }\n'
    )
    extra = write_tar(tmp_path / "extra.tar", {"src/crash.c": crash_c})
    proj = _generate(tmp_path, "crashy", extra_files_tar=str(extra))
    assert (proj / "src" / "crash.c").exists()
    monkeypatch.setenv("MT_TEST_CRASH", "1")
    with instantiate_from_dir(proj) as c:
        c.open_transport({})
        with pytest.raises(server.TransportClosedError):
            c.write_transport(b"\x7e\x01\x01\x01\x00\x01\x00\x00\x7e", 2.0)
            c.read_transport(16, 5.0)
        c.close_transport()
    with pytest.raises(SessionError, match="closed"):
        run_project(proj, timeout=2)


def test_aot_standalone_demo_prints_outputs(tmp_path):
    x = np.array([[3, -7, 100, 127]], dtype=np.int8)
    np.savez(tmp_path / "in.npz", input_0=x)
    proj = _generate(
        tmp_path, "demo", project_type="aot_standalone_demo", standalone_input=str(tmp_path / "in.npz")
    )
    out = subprocess.run([str(proj / "build" / "main")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    y_ref, z_ref = fake_reference(x)
    text = out.stdout
    m = re.search(r"mt: output 0 y int8 \[1,4\] = (.*)", text)
    assert m and [int(v) for v in m.group(1).split()] == y_ref.reshape(-1).tolist(), text
    m = re.search(r"mt: output 0 y real = (.*)", text)
    assert m and [float(v) for v in m.group(1).split()] == pytest.approx(
        (IN_SCALE * (y_ref.astype(float) - IN_ZP)).reshape(-1).tolist()
    )
    m = re.search(r"mt: output 1 z float32 \[2\] = (.*)", text)
    assert m and [float(v) for v in m.group(1).split()] == z_ref.tolist()
    assert re.search(r"mt: ticks \d+ hz 1000000000", text) and "mt: status 0" in text
    # the same text through the Project API transport
    with instantiate_from_dir(proj) as c:
        c.open_transport({})
        got = b""
        try:
            while b"status" not in got:
                got += c.read_transport(4096, 5.0)
        except server.TransportClosedError:
            pass
        c.close_transport()
    assert b"mt: output 0 y int8" in got


def test_build_failure_reports_the_compiler_output(tmp_path):
    proj = _generate(tmp_path, "broken", build=False)
    (proj / "src" / "oops.c").write_text("int oops(void) { return undefined_symbol; }\n")
    with instantiate_from_dir(proj) as c:
        with pytest.raises(server.ServerError) as e:
            c.build({})
    assert "undefined_symbol" in str(e.value)
    with instantiate_from_dir(proj) as c:
        with pytest.raises(server.ServerError) as e:
            c.build({"cc": "no-such-cc-xyz"})
    assert "no-such-cc-xyz" in str(e.value)
    assert not os.path.exists(proj / "build" / "main")


def test_tvm_style_archive_builds_with_the_stand_in_headers(tmp_path):
    # TVM's layout: lib0 includes tvm/runtime/c_runtime_api.h, lib1 allocates through
    # TVMBackendAllocWorkspace (provided by the glue over a static pool)
    proj = _generate(tmp_path, "tvmstyle", tvm_style=True)
    assert "TVMBackendAllocWorkspace" in (proj / "src" / "mt_model_glue.c").read_text()
    x = np.array([[5, -6, 127, -128]], dtype=np.int8)
    for _ in range(2):  # the pool is reused: LIFO free really frees
        r = run_project(proj, [x], number=3)
        y_ref, z_ref = fake_reference(x)
        np.testing.assert_array_equal(r.outputs[0], y_ref)
        np.testing.assert_array_equal(r.outputs[1], z_ref)


def test_extra_files_tar_is_unpacked_only_inside_the_project(tmp_path):
    """extra_files_tar is user input: plain files land in the project; a link, an absolute
    path or '..' is refused with the member named, before anything is written."""
    from microtvm_tasks.errors import TemplateError
    from microtvm_tasks.template_support.generate import unpack_extra_files

    proj = tmp_path / "proj"
    proj.mkdir()
    unpack_extra_files(write_tar(tmp_path / "ok.tar", {"src/extra.c": b"int x;\n"}), proj)
    assert (proj / "src" / "extra.c").read_bytes() == b"int x;\n"

    for name in ("../escape.c", "/abs.c"):
        bad = write_tar(tmp_path / "bad.tar", {"inside.c": b"1", name: b"2"})
        with pytest.raises(TemplateError, match=re.escape(repr(name))):
            unpack_extra_files(bad, proj)
        assert not (proj / "inside.c").exists() and not (tmp_path / "escape.c").exists()
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("src/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(TemplateError, match="is not a plain file inside the project"):
        unpack_extra_files(link, proj)
    assert not (proj / "src" / "passwd").exists()
    with pytest.raises(TemplateError, match="no such file"):
        unpack_extra_files(tmp_path / "missing.tar", proj)
