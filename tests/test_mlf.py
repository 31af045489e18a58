"""Model Library Format: reading every metadata layout, rejecting malformed and malicious tars."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest

from microtvm_tasks.errors import MLFError
from microtvm_tasks.mlf import (
    archive_bytes,
    extract_mlf,
    mlf_hash,
    parse_interface_header,
    read_mlf,
    write_archive,
)

HEADER = """#ifndef TVMGEN_SINE_H_
#define TVMGEN_SINE_H_
#include <stdint.h>
/* input */
#define TVMGEN_SINE_SERVING_DEFAULT_X_0_SIZE 1
#define TVMGEN_SINE_OUT_SIZE 1
struct tvmgen_sine_inputs {
  void* serving_default_x_0;
};
struct tvmgen_sine_outputs {
  void* out;  // the one output
};
int32_t tvmgen_sine_run(struct tvmgen_sine_inputs* inputs, struct tvmgen_sine_outputs* outputs);
#endif
"""


def v7_meta(**main_extra) -> dict:
    main = {
        "device": 1, "workspace_size_bytes": 48, "constants_size_bytes": 1200, "io_size_bytes": 2,
        "inputs": {"serving_default_x:0": {"size": 1, "dtype": "int8", "shape": [1, 1],
                                           "quantization": {"scale": 0.024, "zero_point": -128}}},
        "outputs": {"out": {"size": 1, "dtype": "int8", "shape": [1, 1],
                            "quantization": {"scale": 0.0085, "zero_point": 4}}},
    }
    main.update(main_extra)
    return {"version": 7, "modules": {"sine": {
        "model_name": "sine", "export_datetime": "1970-01-01 00:00:00Z", "style": "full-model",
        "target": ["c -keys=cpu"], "executors": ["aot"],
        "memory": {"functions": {"operator_functions": [], "main": [main]}},
        "generator": {"name": "microtvm-tasks", "version": "0.1.0"}}}}


def tvm_v7_meta() -> dict:
    """What TVM 0.18 writes: no shape, no quantisation; float32 input of 10 elements."""
    return {"version": 7, "modules": {"default": {
        "model_name": "default", "export_datetime": "2024-01-01 00:00:00Z", "style": "full-model",
        "target": ["c -keys=arm_cpu,cpu -mcpu=cortex-m4"], "executors": ["aot"],
        "external_dependencies": [{"short_name": "tvm_standalone_crt", "url": "./runtime",
                                   "url_type": "mlf_path", "version_spec": "0.18.0"}],
        "memory": {"functions": {
            "operator_functions": [{"function_name": "tvmgen_default_fused_add",
                                    "workspace": [{"device": 1, "workspace_size_bytes": 0}]}],
            "main": [{"device": 1, "workspace_size_bytes": 128, "constants_size_bytes": 40,
                      "io_size_bytes": 80,
                      "inputs": {"input_1": {"size": 40, "dtype": "float32"}},
                      "outputs": {"output0": {"size": 40, "dtype": "float32"}}}]}}}}}


def single_module_meta(version: int) -> dict:
    """TVM's layout before multi-module archives (versions <= 6)."""
    meta = {"version": version, "model_name": "kws", "export_datetime": "2021-07-01 00:00:00Z",
            "memory": {"functions": {"operator_functions": [],
                                     "main": [{"device": 1, "workspace_size_bytes": 4096,
                                               "constants_size_bytes": 0, "io_size_bytes": 0}]},
                       "sids": []},
            "style": "full-model"}
    if version <= 5:
        meta["target"] = {"1": "c -keys=cpu -link-params=0"}
    else:
        meta["target"] = ["c -keys=cpu"]
    meta["executors" if version >= 5 else "runtimes"] = ["graph"]
    return meta


def make(tmp_path, meta, name="m.tar", extra=None) -> os.PathLike:
    members = {"metadata.json": json.dumps(meta).encode()}
    members.update(extra or {})
    return write_archive(tmp_path / name, members)


def test_v7_ours(tmp_path):
    p = make(tmp_path, v7_meta(), extra={"codegen/host/include/tvmgen_sine.h": HEADER.encode(),
                                          "codegen/host/src/sine_lib0.c": b"//c\n"})
    info = read_mlf(p)
    assert info.version == 7 and info.path == p
    m = info.module()
    assert (m.name, m.style, m.executors, m.target) == ("sine", "full-model", ["aot"], ["c -keys=cpu"])
    assert (m.workspace_size_bytes, m.constants_size_bytes, m.io_size_bytes) == (48, 1200, 2)
    (i,), (o,) = m.inputs, m.outputs
    assert (i.name, i.dtype, i.size, i.shape, i.scale, i.zero_point) == (
        "serving_default_x:0", "int8", 1, [1, 1], 0.024, -128)
    assert i.c_ident == "serving_default_x_0" and o.zero_point == 4
    assert m.io_described and m.header in info.members
    assert "codegen/host/src/sine_lib0.c" in info.members
    iface = parse_interface_header(HEADER, "sine")
    assert iface == {"inputs": [("serving_default_x_0", 1)], "outputs": [("out", 1)]}
    assert mlf_hash(p) == mlf_hash(make(tmp_path, v7_meta(), name="again.tar", extra={
        "codegen/host/include/tvmgen_sine.h": HEADER.encode(), "codegen/host/src/sine_lib0.c": b"//c\n"}))


def test_v7_tvm_archive(tmp_path):
    m = read_mlf(make(tmp_path, tvm_v7_meta())).module("default")
    (i,), (o,) = m.inputs, m.outputs
    assert (i.shape, i.scale, i.zero_point, i.itemsize) == ([10], None, None, 4)
    assert o.name == "output0" and m.workspace_size_bytes == 128 and m.constants_size_bytes == 40


def test_per_channel_quantisation(tmp_path):
    meta = v7_meta()
    meta["modules"]["sine"]["memory"]["functions"]["main"][0]["outputs"]["out"]["quantization"] = {
        "scale": [0.5, 0.25], "zero_point": [0, 0]}
    meta["modules"]["sine"]["memory"]["functions"]["main"][0]["outputs"]["out"].update(size=2, shape=[1, 2])
    o = read_mlf(make(tmp_path, meta)).module().outputs[0]
    assert o.scale == [0.5, 0.25] and o.zero_point == [0, 0]


def test_memory_main_without_functions_level(tmp_path):
    meta = v7_meta()
    mem = meta["modules"]["sine"]["memory"]
    meta["modules"]["sine"]["memory"] = mem["functions"]
    assert read_mlf(make(tmp_path, meta)).module().workspace_size_bytes == 48


def test_multi_module(tmp_path):
    meta = v7_meta()
    meta["modules"]["other"] = dict(meta["modules"]["sine"], model_name="other")
    info = read_mlf(make(tmp_path, meta))
    assert [m.name for m in info.modules] == ["sine", "other"]
    with pytest.raises(MLFError, match="several modules"):
        info.module()
    with pytest.raises(MLFError, match="no module named 'x'"):
        info.module("x")


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_single_module_layout(tmp_path, version):
    info = read_mlf(make(tmp_path, single_module_meta(version)))
    m = info.module()
    assert info.version == version
    assert m.name == "kws" and m.executors == ["graph"] and m.workspace_size_bytes == 4096
    assert m.target == (["c -keys=cpu -link-params=0"] if version <= 5 else ["c -keys=cpu"])
    assert m.inputs == [] and not m.io_described


def test_operator_style(tmp_path):
    meta = {"version": 7, "model_name": "add", "style": "operator", "executors": [],
            "target": ["c"], "memory": {"add": [{"size_bytes": 8, "shape": [2], "dtype": "float32",
                                                "input_binding": "a"}]}}
    m = read_mlf(make(tmp_path, meta)).module()
    assert m.style == "operator" and m.inputs == [] and m.workspace_size_bytes == 0


def test_gzip_and_directory(tmp_path):
    raw = archive_bytes({"metadata.json": json.dumps(v7_meta()).encode()})
    gz = tmp_path / "m.tar.gz"
    gz.write_bytes(gzip.compress(raw))
    assert read_mlf(gz).module().name == "sine"
    d = tmp_path / "x"
    extract_mlf(gz, d)
    info = read_mlf(d)
    assert info.members == ["metadata.json"] and info.module().name == "sine"
    gz.write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(MLFError, match="truncated or corrupt"):
        read_mlf(gz)


# ---- malformed archives ----------------------------------------------------------------------

def _one_line(e: pytest.ExceptionInfo, path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_not_a_tar(tmp_path):
    p = tmp_path / "model.tflite"
    p.write_bytes(b"TFL3" + bytes(range(256)) * 8)
    with pytest.raises(MLFError) as e:
        read_mlf(p)
    assert "not a tar archive" in _one_line(e, p)
    p.write_bytes(b"")
    with pytest.raises(MLFError, match="empty file"):
        read_mlf(p)
    with pytest.raises(MLFError, match="no such"):
        read_mlf(tmp_path / "missing.tar")


@pytest.mark.parametrize("cut", [600, 1100, 3000, -1024 * 9])
def test_truncated(tmp_path, cut):
    raw = archive_bytes({"metadata.json": json.dumps(v7_meta()).encode(), "a/b.c": b"y" * 3000})
    p = tmp_path / "t.tar"
    p.write_bytes(raw[:cut])
    with pytest.raises(MLFError) as e:
        read_mlf(p)
    assert "truncated" in _one_line(e, p) or "not a tar" in str(e.value)


def test_no_metadata(tmp_path):
    p = write_archive(tmp_path / "n.tar", {"codegen/host/src/x.c": b""})
    with pytest.raises(MLFError) as e:
        read_mlf(p)
    assert "no metadata.json" in _one_line(e, p)
    with pytest.raises(MLFError, match="no metadata.json"):
        read_mlf(tmp_path)


def test_bad_json(tmp_path):
    p = write_archive(tmp_path / "j.tar", {"metadata.json": b'{"version": 7,'})
    with pytest.raises(MLFError) as e:
        read_mlf(p)
    assert "not valid JSON (line 1" in _one_line(e, p)


@pytest.mark.parametrize("version", [2, 8, 99])
def test_unknown_version(tmp_path, version):
    meta = v7_meta()
    meta["version"] = version
    p = make(tmp_path, meta)
    with pytest.raises(MLFError) as e:
        read_mlf(p)
    assert f"version {version} is not supported" in _one_line(e, p) and "3 to 7" in str(e.value)


def _mutate(path_keys, value):
    meta = v7_meta()
    d = meta
    for k in path_keys[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path_keys[-1]]
    else:
        d[path_keys[-1]] = value
    return meta


MAIN = ["modules", "sine", "memory", "functions", "main", 0]


@pytest.mark.parametrize("meta, match", [
    ([1, 2], "not a JSON object"),
    ({"modules": {}}, "no integer 'version'"),
    ({"version": 7, "modules": {}}, "non-empty object"),
    (_mutate(["modules", "sine", "target"], KeyError), "has no 'target'"),
    (_mutate(["modules", "sine", "target"], [1]), "target should be a list of strings"),
    (_mutate(["modules", "sine", "memory"], KeyError), "no 'memory' object"),
    (_mutate(["modules", "sine", "memory", "functions", "main"], {}), "main should be a list"),
    (_mutate(MAIN + ["workspace_size_bytes"], -1), "non-negative integer"),
    (_mutate(MAIN + ["workspace_size_bytes"], KeyError), "no 'workspace_size_bytes'"),
    (_mutate(MAIN + ["inputs", "serving_default_x:0", "dtype"], "int3x"), "not a known dtype"),
    (_mutate(MAIN + ["inputs", "serving_default_x:0", "dtype"], KeyError), "no 'dtype'"),
    (_mutate(MAIN + ["inputs", "serving_default_x:0", "shape"], [2, 2]), "is 4 bytes but size says 1"),
    (_mutate(MAIN + ["outputs", "out", "quantization"], {"scale": 1}), "'scale' and 'zero_point'"),
    (_mutate(MAIN + ["outputs", "out", "quantization"], {"scale": "x", "zero_point": 0}),
     "scale should be a number"),
    (_mutate(["modules", "sine", "model_name"], 3), "no 'model_name' string"),
])
def test_invalid_metadata(tmp_path, meta, match):
    p = make(tmp_path, meta)
    with pytest.raises(MLFError, match=match) as e:
        read_mlf(p)
    assert "invalid Model Library Format metadata" in _one_line(e, p) or "version" in str(e.value)


def test_size_not_multiple_of_itemsize(tmp_path):
    meta = tvm_v7_meta()
    meta["modules"]["default"]["memory"]["functions"]["main"][0]["inputs"]["input_1"]["size"] = 41
    with pytest.raises(MLFError, match="not a multiple of the float32 item size 4"):
        read_mlf(make(tmp_path, meta))


# ---- malicious archives ----------------------------------------------------------------------

def _evil_tar(path, *entries):
    """entries: (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        meta = json.dumps(v7_meta()).encode()
        ti = tarfile.TarInfo("./metadata.json")
        ti.size = len(meta)
        t.addfile(ti, io.BytesIO(meta))
        for kw, data in entries:
            ti = tarfile.TarInfo(kw.pop("name"))
            for k, v in kw.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buf.getvalue())
    return path


EVIL = {
    "absolute": ([({"name": "/tmp/evil_abs.txt"}, b"x")], "absolute path"),
    "dotdot": ([({"name": "./../escape.txt"}, b"x")], "contains '..'"),
    "dotdot_inner": ([({"name": "codegen/../../escape.txt"}, b"x")], "contains '..'"),
    "symlink_out": ([({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../outside"}, None),
                     ({"name": "link/f.txt"}, b"x")], "points outside"),
    "symlink_abs": ([({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None)],
                    "absolute target"),
    "symlink_chain": ([({"name": "a", "type": tarfile.SYMTYPE, "linkname": "."}, None),
                       ({"name": "b", "type": tarfile.SYMTYPE, "linkname": "a/.."}, None)],
                      "chains through another symlink"),
    "through_symlink": ([({"name": "d", "type": tarfile.SYMTYPE, "linkname": "sub"}, None),
                         ({"name": "d/f.txt"}, b"x")], "goes through the symlink"),
    "hardlink_out": ([({"name": "h", "type": tarfile.LNKTYPE, "linkname": "../../etc/passwd"}, None)],
                     "unsafe hard link"),
    "hardlink_abs": ([({"name": "h", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None)],
                     "unsafe hard link"),
    "chardev": ([({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
                "character device"),
    "blockdev": ([({"name": "blk", "type": tarfile.BLKTYPE, "devmajor": 7, "devminor": 0}, None)],
                 "block device"),
    "fifo": ([({"name": "pipe", "type": tarfile.FIFOTYPE}, None)], "FIFO"),
}


@pytest.fixture(params=["data_filter", "no_data_filter"])
def filter_mode(request, monkeypatch):
    """Run with tarfile's "data" filter and as on Pythons without it (our checks alone)."""
    if request.param == "no_data_filter" and hasattr(tarfile, "data_filter"):
        monkeypatch.delattr(tarfile, "data_filter")
    return request.param


@pytest.mark.parametrize("case", sorted(EVIL))
def test_malicious_refused(tmp_path, case, filter_mode):
    entries, match = EVIL[case]
    work = tmp_path / "work"
    work.mkdir()
    p = _evil_tar(work / "evil.tar", *[(dict(kw), d) for kw, d in entries])
    before = sorted(str(x) for x in tmp_path.rglob("*"))
    with pytest.raises(MLFError, match=match) as e:
        extract_mlf(p, work / "out" / "dest")
    _one_line(e, p)
    with pytest.raises(MLFError, match=match):
        read_mlf(p)
    # Nothing written anywhere: not in dest, not beside it, not outside.
    after = sorted(str(x) for x in tmp_path.rglob("*"))
    new = set(after) - set(before)
    assert new <= {str(work / "out")}, new
    assert not (work / "out" / "dest").exists()
    assert not os.path.exists("/tmp/evil_abs.txt") or case != "absolute"


def test_safe_links_inside_are_extracted(tmp_path, filter_mode):
    p = _evil_tar(tmp_path / "ok.tar",
                  ({"name": "src/a.c"}, b"int a;\n"),
                  ({"name": "src/alias.c", "type": tarfile.SYMTYPE, "linkname": "a.c"}, None),
                  ({"name": "inc/up.c", "type": tarfile.SYMTYPE, "linkname": "../src/a.c"}, None),
                  ({"name": "src/hard.c", "type": tarfile.LNKTYPE, "linkname": "src/a.c"}, None))
    dest = tmp_path / "d"
    info = extract_mlf(p, dest)
    assert info.module().name == "sine"
    assert (dest / "src" / "alias.c").read_text() == "int a;\n"
    assert (dest / "inc" / "up.c").read_text() == "int a;\n"
    assert (dest / "src" / "hard.c").read_text() == "int a;\n"
    assert json.loads((dest / "metadata.json").read_text())["version"] == 7
    # mtime 0 in the archive becomes "now", so make sees fresh sources as newer than old objects
    assert (dest / "src" / "a.c").stat().st_mtime > 1e9


def test_extract_refuses_non_empty_dest_unless_replace(tmp_path):
    p = make(tmp_path, v7_meta(), extra={"src/sine.ir.txt": b"ir"})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(MLFError, match="not an empty directory"):
        extract_mlf(p, dest)
    assert (dest / "old.txt").exists()
    extract_mlf(p, dest, replace=True)
    assert sorted(os.listdir(dest)) == ["metadata.json", "src"]
    assert sorted(os.listdir(tmp_path)) == ["dest", "m.tar"]  # no temp dirs left


def test_write_archive_reproducible(tmp_path):
    a = write_archive(tmp_path / "a.tar", {"b/x": b"1", "metadata.json": b"{}"})
    b = write_archive(tmp_path / "b.tar", {"metadata.json": b"{}", "b/x": b"1"})
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as t:
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in t.getmembers())
    with pytest.raises(ValueError):
        archive_bytes({"../x": b""})


# ---- writing: the one metadata builder, dtypes, C identifiers ------------------------------

def test_built_metadata_reads_back(tmp_path):
    """What build_metadata writes is what read_mlf reads: the writers and the reader agree."""
    from microtvm_tasks.mlf import build_metadata, metadata_bytes, tensor_metadata

    meta = build_metadata(
        "m", workspace_bytes=64, constants_bytes=8, io_bytes=12,
        inputs={"in:0": tensor_metadata(4, "int8", [1, 4], {"scale": 0.5, "zero_point": -1})},
        outputs={"out": tensor_metadata(8, "float32", [2])},
        target="c -keys=cpu", generator={"name": "t", "version": "1"},
    )
    raw = metadata_bytes(meta)
    assert raw.endswith(b"}\n") and raw == metadata_bytes(json.loads(raw))
    p = tmp_path / "m.tar"
    write_archive(p, {"metadata.json": raw})
    m = read_mlf(p).module()
    assert (m.name, m.workspace_size_bytes, m.constants_size_bytes, m.io_size_bytes) == ("m", 64, 8, 12)
    assert [(t.name, t.dtype, t.shape, t.scale, t.zero_point) for t in m.inputs] == [
        ("in:0", "int8", [1, 4], 0.5, -1)]
    assert [(t.name, t.shape, t.scale) for t in m.outputs] == [("out", [2], None)]
    assert (m.target, m.executors, m.style) == (["c -keys=cpu"], ["aot"], "full-model")


def test_dtype_codes_are_the_runtimes():
    """mlf.DTYPES' run-protocol codes are enum mt_dtype's in runtime/mt_model.h."""
    import re
    from pathlib import Path

    from microtvm_tasks.mlf import DTYPE_BY_CODE, DTYPES, dtype_itemsize

    header = (Path(__file__).resolve().parents[1] / "microtvm_tasks/runtime/mt_model.h").read_text()
    enum = {int(v): k.lower() for k, v in re.findall(r"MT_DTYPE_(\w+)\s*=\s*(\d+)", header)}
    assert DTYPE_BY_CODE == enum
    assert all(dtype_itemsize(n) == d.itemsize for n, d in DTYPES.items())


def test_one_c_identifier_rule():
    from microtvm_tasks.compiler.emit_c import c_ident as emit_ident
    from microtvm_tasks.config import c_identifier
    from microtvm_tasks.mlf import c_ident

    assert emit_ident is c_ident
    for name in ("serving_default_x:0", "3d", "a.b-c", "ok_1"):
        assert c_identifier(name) == c_ident(name)
    assert c_ident("serving_default_x:0") == "serving_default_x_0" and c_ident("3d") == "_3d"


def test_interface_header_pools_devices_and_errors():
    from microtvm_tasks.mlf import read_interface_header

    text = HEADER.replace(
        "int32_t tvmgen_sine_run(struct tvmgen_sine_inputs* inputs, struct tvmgen_sine_outputs* outputs);",
        "#define TVMGEN_SINE_GLOBAL_WORKSPACE_WORKSPACE_POOL_SIZE 0x30u\n"
        "struct tvmgen_sine_workspace_pools { void* global_workspace; };\n"
        "int32_t tvmgen_sine_run(struct tvmgen_sine_inputs* inputs, struct tvmgen_sine_outputs* outputs,"
        " struct tvmgen_sine_workspace_pools* p, struct tvmgen_sine_devices* d);")
    h = read_interface_header(text, "sine", "x.h")
    assert (h.inputs, h.outputs, h.size("out")) == (["serving_default_x_0"], ["out"], 1)
    assert h.workspace_pools == {"global_workspace": 48} and h.has_devices
    with pytest.raises(MLFError, match=r"x\.h: no tvmgen_sine_run prototype"):
        read_interface_header(HEADER.replace("tvmgen_sine_run", "other"), "sine", "x.h")
    with pytest.raises(MLFError, match="no struct tvmgen_sine_inputs/outputs"):
        read_interface_header("int x;", "sine")
