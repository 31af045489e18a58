"""Unit tests of the built-in compiler: archive layout, metadata, determinism, errors."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from compiler_harness import TFLM, CompiledModel, LiteRT, random_inputs  # noqa: E402

from microtvm_tasks.compiler import compile_model  # noqa: E402
from microtvm_tasks.errors import CompileError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SINE = ROOT / "models" / "sine.tflite"
SINE_FLOAT = ROOT / "models" / "sine_float.tflite"


def _members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {
            m.name[2:] if m.name.startswith("./") else m.name: tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile()
        }


def test_sine_int8_bit_exact_with_tflm(tmp_path):
    out = compile_model(SINE, tmp_path / "sine.tar")
    members = _members(out)
    model = CompiledModel(members, tmp_path / "build")
    tflm = TFLM(SINE)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = random_inputs(model.inputs, rng)
        (ours,) = model.run(x)
        (ref,) = tflm.run(x)
        assert np.array_equal(ours.reshape(-1), ref.reshape(-1))


def test_sine_float_matches_litert(tmp_path):
    out = compile_model(SINE_FLOAT, tmp_path / "sine_float.tar")
    model = CompiledModel(_members(out), tmp_path / "build")
    ref_rt = LiteRT(SINE_FLOAT)
    rng = np.random.default_rng(2)
    for _ in range(50):
        x = random_inputs(model.inputs, rng)
        (ours,) = model.run(x)
        (ref,) = ref_rt.run(x)
        tol = 1e-4 * max(float(np.ptp(ref)), float(np.abs(ref).max()), 1e-6)
        assert np.abs(ours.reshape(-1) - ref.reshape(-1)).max() <= tol


def test_metadata_layout(tmp_path):
    members = _members(compile_model(SINE, tmp_path / "a.tar", module_name="sine"))
    assert set(members) == {
        "metadata.json",
        "codegen/host/include/tvmgen_sine.h",
        "codegen/host/src/sine_lib0.c",
        "codegen/host/src/sine_lib1.c",
        "src/sine.ir.txt",
    }
    meta = json.loads(members["metadata.json"])
    assert meta["version"] == 7
    mod = meta["modules"]["sine"]
    assert mod["executors"] == ["aot"] and mod["style"] == "full-model"
    main = mod["memory"]["functions"]["main"][0]  # TVM 0.18's layout
    ((name, inp),) = main["inputs"].items()
    assert name == "serving_default_dense_input:0"
    assert inp["dtype"] == "int8" and inp["shape"] == [1, 1] and inp["size"] == 1
    assert inp["quantization"]["zero_point"] == -128
    assert main["workspace_size_bytes"] <= 32  # TFLite Micro's arena head for this model
    header = members["codegen/host/include/tvmgen_sine.h"].decode()
    assert "void* serving_default_dense_input_0;" in header
    assert "#define TVMGEN_SINE_SERVING_DEFAULT_DENSE_INPUT_0_SIZE 1" in header
    assert (
        "int32_t tvmgen_sine_run(struct tvmgen_sine_inputs* inputs, struct tvmgen_sine_outputs* outputs);"
        in header
    )
    # weights are const (flash), the arena is the only mutable storage
    lib0 = members["codegen/host/src/sine_lib0.c"].decode()
    assert "const int8_t tvmgen_sine_c0[" in lib0


def test_deterministic_archive(tmp_path):
    a = compile_model(SINE, tmp_path / "a.tar").read_bytes()
    b = compile_model(SINE, tmp_path / "b.tar").read_bytes()
    assert a == b


def test_mlf_passthrough(tmp_path):
    a = compile_model(SINE, tmp_path / "a.tar")
    b = compile_model(a, tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes()


def test_passthrough_rejects_non_mlf_tar(tmp_path):
    bad = tmp_path / "bad.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = json.dumps({"version": 3}).encode()
        info = tarfile.TarInfo("./metadata.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    bad.write_bytes(buf.getvalue())
    with pytest.raises(CompileError, match="version 3"):
        compile_model(bad, tmp_path / "out.tar")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(CompileError, match="no metadata.json"):
        compile_model(empty, tmp_path / "out.tar")



def test_passthrough_checks_members_and_metadata_as_templates_do(tmp_path):
    """The passthrough reads with mlf.read_mlf: an archive a template would refuse is refused
    here, at compile time, with the reader's message."""
    a = compile_model(SINE, tmp_path / "a.tar")
    with tarfile.open(a) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(CompileError, match="contains '..'"):
        compile_model(evil, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
    meta = json.loads(dict((m.name, d) for m, d in members)["./metadata.json"])
    assert meta["modules"]["default"]["generator"]["version"] == __import__("microtvm_tasks").__version__

def test_bad_inputs(tmp_path):
    with pytest.raises(CompileError, match="not found"):
        compile_model(tmp_path / "missing.tflite", tmp_path / "o.tar")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(CompileError, match="not a valid TFLite model"):
        compile_model(junk, tmp_path / "o.tar")
    with pytest.raises(CompileError, match="C identifier"):
        compile_model(SINE, tmp_path / "o.tar", module_name="bad-name")
    with pytest.raises(CompileError, match="unknown compile option"):
        compile_model(SINE, tmp_path / "o.tar", frobnicate=1)


def test_cli_compile(tmp_path, capsys):
    from microtvm_tasks.cli import main

    out = tmp_path / "s.tar"
    assert main(["compile", str(SINE), "-o", str(out), "--module-name", "sine"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert "codegen/host/src/sine_lib1.c" in _members(out)
    # an MLF archive passes through unchanged
    again = tmp_path / "again.tar"
    assert main(["compile", str(out), "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    # user mistakes: exit status 2 and a message, no traceback
    assert main(["compile", str(tmp_path / "nope.tflite"), "-o", str(tmp_path / "x.tar")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["compile", str(SINE), "-o", str(tmp_path / "x.tar"), "--input-layout", "NCHW"]) == 2
    assert "NHWC" in capsys.readouterr().err


def test_deterministic_across_processes(tmp_path):
    """Byte-identical archives from separate interpreters with different hash seeds."""
    import os
    import subprocess

    kws = ROOT / "models" / "kws.tflite"
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"kws{seed}.tar"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        code = (
            "import sys; from microtvm_tasks.compiler import compile_model; "
            "compile_model(sys.argv[1], sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", code, str(kws), str(out)], check=True, env=env, timeout=120)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_metadata_is_laid_out_as_tvm_0_18_writes_it(tmp_path):
    """TVM's own templates read memory.functions.main (issue 18): our archives nest their
    metadata as TVM 0.18's `tvmc compile --output-format mlf` does (an archive it made is
    in ../shared/tvm_mlf), with our extra keys (shapes, quantisation, generator) beside."""
    import json as _json
    import tarfile as _tarfile

    from conftest import SHARED_MODELS

    tvm_tar = SHARED_MODELS.parent / "tvm_mlf" / "hello_world_int8_aot.tar"
    if not tvm_tar.exists():
        pytest.skip(f"{tvm_tar} not present")

    def meta(path):
        with _tarfile.open(path) as tar:
            member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "metadata.json")
            return _json.load(tar.extractfile(member))

    theirs = meta(tvm_tar)
    ours = meta(compile_model(SINE, tmp_path / "sine.tar"))
    assert ours["version"] == theirs["version"] == 7
    t_mod, o_mod = theirs["modules"]["default"], ours["modules"]["default"]
    assert set(t_mod) - {"external_dependencies"} <= set(o_mod)
    assert set(o_mod["memory"]) == set(t_mod["memory"]) == {"functions"}
    functions = {"main", "operator_functions"}
    assert set(o_mod["memory"]["functions"]) == set(t_mod["memory"]["functions"]) == functions
    t_main, o_main = t_mod["memory"]["functions"]["main"][0], o_mod["memory"]["functions"]["main"][0]
    assert set(t_main) <= set(o_main)
    for kind in ("inputs", "outputs"):
        for entry in o_main[kind].values():
            assert {"dtype", "size"} <= set(entry)
