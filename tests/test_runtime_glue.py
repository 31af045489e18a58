"""glue.py and the C runtime: generated glue matches the header, everything compiles
warning-free with gcc, arm-none-eabi-gcc and avr-gcc, and the session fits an Uno's RAM."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from microtvm_tasks.errors import MLFError
from microtvm_tasks.runtime.fake_mlf import extract_fake_mlf
from microtvm_tasks.runtime.glue import read_model_info, runtime_sources, write_model_glue

STUB_PLATFORM = r"""
#include "platform.h"
#include "mt_runtime.h"
void mt_platform_init(void) {}
int32_t mt_platform_read(uint8_t *buf, size_t n) { (void)buf; (void)n; return -1; }
int32_t mt_platform_write(const uint8_t *buf, size_t n) { (void)buf; return (int32_t)n; }
uint32_t mt_platform_ticks(void) { return 0; }
uint32_t mt_platform_tick_hz(void) { return 1; }
void mt_platform_abort(int32_t code) { (void)code; for (;;) {} }
int main(void) { mt_platform_init(); return (int)mt_session_main() + (int)mt_standalone_main(); }
"""

COMPILERS = {
    "gcc": [],
    "arm-none-eabi-gcc": ["-mcpu=cortex-m3", "-mthumb"],
    "avr-gcc": ["-mmcu=atmega328p", "-DMT_MAX_PAYLOAD=64", "-Os"],
}


def _project(tmp_path, *, pools=False, standalone=None):
    src = tmp_path / "src"
    src.mkdir()
    for p in runtime_sources():
        shutil.copy2(p, src / p.name)
    mlf = extract_fake_mlf(tmp_path / "mlf", n=4, workspace_pools=pools)
    written = write_model_glue(mlf, src, standalone_input=standalone)
    (src / "stub_platform.c").write_text(STUB_PLATFORM)
    return src, mlf, written


def test_runtime_sources_are_the_c_files_and_headers():
    names = {p.name for p in runtime_sources()}
    assert {"platform.h", "mt_model.h", "mt_runtime.h", "mt_frame.h", "mt_frame.c", "mt_session.c",
            "mt_standalone.c", "mt_protocol.h", "mt_text.c", "mt_text.h"} <= names
    assert not any(n.endswith(".py") or n.endswith(".md") for n in names)


def test_glue_reads_fields_from_header_and_metadata(tmp_path):
    mlf = extract_fake_mlf(tmp_path / "mlf", n=4)
    info = read_model_info(mlf)
    assert info.name == "default"
    got = [(t.name, t.c_field, t.dtype, t.shape, t.nbytes) for t in info.inputs]
    assert got == [("x:0", "x_0", "int8", [1, 4], 4)]
    assert [t.c_field for t in info.outputs] == ["y", "z"]
    assert info.inputs[0].scale == 0.5 and info.inputs[0].zero_point == -1
    assert info.outputs[1].scale is None and info.outputs[1].scale_bits == 0
    assert info.workspace_pools == {}


def test_glue_allocates_tvm_workspace_pools(tmp_path):
    mlf = extract_fake_mlf(tmp_path / "mlf", n=4, workspace_pools=True)
    info = read_model_info(mlf)
    assert info.workspace_pools == {"global_workspace": 48}
    (glue,) = write_model_glue(mlf, tmp_path / "out")
    text = glue.read_text()
    assert re.search(r"static uint8_t mt_pool_global_workspace\[48\] MT_ALIGN16;", text)
    assert "tvmgen_default_run(&inputs, &outputs, &pools)" in text


def test_glue_rejects_inconsistent_archives(tmp_path):
    mlf = extract_fake_mlf(tmp_path / "mlf", n=4)
    meta_path = mlf / "metadata.json"
    meta = json.loads(meta_path.read_text())
    outs = meta["modules"]["default"]["memory"]["functions"]["main"][0]["outputs"]
    del outs["z"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MLFError, match="2 fields but"):
        read_model_info(mlf)
    (mlf / "codegen/host/include/tvmgen_default.h").unlink()
    with pytest.raises(MLFError, match="missing"):
        read_model_info(mlf)
    with pytest.raises(MLFError, match="missing"):
        read_model_info(tmp_path / "nothing")


def test_standalone_input_file(tmp_path):
    src, _, written = _project(tmp_path, standalone={"input_0": bytes([1, 2, 0x7E, 255])})
    assert [p.name for p in written] == ["mt_model_glue.c", "mt_standalone_input.c"]
    text = (src / "mt_standalone_input.c").read_text()
    assert "0x01, 0x02, 0x7e, 0xff" in text
    assert "mt_standalone_num_inputs" not in (src / "mt_model_glue.c").read_text()
    with pytest.raises(MLFError, match="bytes given"):
        write_model_glue(tmp_path / "mlf", tmp_path / "o2", standalone_input={"x:0": b"\x00"})
    with pytest.raises(MLFError, match="match no model input"):
        write_model_glue(tmp_path / "mlf", tmp_path / "o3", standalone_input={"nope": b"\x00" * 4})


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
@pytest.mark.parametrize("pools", [False, True])
def test_runtime_and_glue_compile_warning_free(tmp_path, compiler, pools):
    cc = shutil.which(compiler)
    if cc is None:
        pytest.skip(f"{compiler} not installed")
    src, mlf, _ = _project(tmp_path, pools=pools, standalone=None if pools else {"x:0": b"\x01\x02\x03\x04"})
    sources = sorted(str(p) for p in src.glob("*.c"))
    sources += sorted(str(p) for p in (mlf / "codegen/host/src").glob("*.c"))
    out = tmp_path / "image.elf"
    argv = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *COMPILERS[compiler], f"-I{src}",
            f"-I{mlf / 'codegen/host/include'}", *sources, "-o", str(out)]
    if compiler == "arm-none-eabi-gcc":
        argv[1:1] = ["--specs=nosys.specs"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.exists()
    if compiler == "avr-gcc" and shutil.which("avr-size"):
        # An Arduino Uno has 2048 bytes of RAM: the whole session (buffers, tensor table,
        # strings in RAM) must leave most of it to the stack and the model.
        argv = ["avr-size", "-A", str(out)]
        sizes = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        ram = sum(int(m.group(2)) for m in re.finditer(r"^\.(data|bss)\s+(\d+)", sizes, re.M))
        assert ram < 600, sizes
