"""bench/tflm_peer: the TFLite Micro peer's generated sources, version pins and run parsing.

The library build itself needs the fetched TFLM tree and ~25 minutes, so it is not run here;
with TFLM_PEER_BUILD=DIR (an output of build.py) the last test boots that build's firmwares.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "tflm_peer"))
sys.path.insert(0, str(REPO / "bench"))

import peer  # noqa: E402
import qemu_cycles  # noqa: E402

KWS = REPO / "models" / "kws.tflite"


@pytest.mark.parametrize(
    ("op", "method"),
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("AVERAGE_POOL_2D", "AddAveragePool2D"),
        ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
        ("L2_POOL_2D", "AddL2Pool2D"),
        ("RELU6", "AddRelu6"),
        ("PAD_V2", "AddPadV2"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
    ],
)
def test_resolver_method_names(op: str, method: str) -> None:
    assert peer.resolver_method(op) == method


def test_pinned_versions_read_from_tflm_scripts(tmp_path: Path) -> None:
    make = tmp_path / "tensorflow/lite/micro/tools/make"
    (make / "ext_libs").mkdir(parents=True)
    (make / "flatbuffers_download.sh").write_text('  ZIP_PREFIX="v25.9.23"\n')
    (make / "third_party_downloads.inc").write_text(
        'GEMMLOWP_URL := "https://github.com/google/gemmlowp/archive/' + "a" * 40 + '.zip"\n'
        'RUY_URL="https://github.com/google/ruy/archive/' + "b" * 40 + '.zip"\n'
        'KISSFFT_URL := "https://github.com/mborgerding/kissfft/archive/refs/tags/v130.zip"\n'
    )
    (make / "ext_libs/cmsis_download.sh").write_text(
        '  ZIP_PREFIX="' + "c" * 40 + '"\n  ZIP_PREFIX="' + "d" * 40 + '"\n'
    )
    (make / "ext_libs/cmsis_nn_download.sh").write_text('ZIP_PREFIX_NN="' + "e" * 40 + '"\n')
    assert peer.pinned_versions(tmp_path) == {
        "flatbuffers": "v25.9.23",
        "gemmlowp": "a" * 40,
        "ruy": "b" * 40,
        "kissfft": "v130",
        "cmsis": "c" * 40,
        "cortex_dfp": "d" * 40,
        "cmsis_nn": "e" * 40,
    }


def _c_array(text: str, name: str) -> bytes:
    body = text[text.index(name) :]
    body = body[body.index("{") + 1 : body.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_model_sources_hold_the_model_ops_and_the_benchmark_input(tmp_path: Path) -> None:
    header = tmp_path / "resolver.h"
    header.write_text(
        "".join(
            f"  TfLiteStatus Add{n}("
            for n in ("Conv2D", "DepthwiseConv2D", "FullyConnected", "Reshape", "Softmax", "AveragePool2D")
        )
    )
    record = peer.write_model_sources(KWS, tmp_path / "m", header)
    data = (tmp_path / "m" / "model_data.cc").read_text()
    assert _c_array(data, "g_peer_model[") == KWS.read_bytes()
    ops, specs = peer.model_io(KWS)
    expected = qemu_cycles.draw_inputs(specs)
    assert len(expected) == 1 and len(set(expected[0].tobytes())) > 100  # varied, not a constant fill
    assert _c_array(data, "g_input_0[") == expected[0].tobytes()
    assert bytes.fromhex(record["inputs"][0]["hex"]) == expected[0].tobytes()
    ops_h = (tmp_path / "m" / "model_ops.h").read_text()
    assert f"#define PEER_OP_COUNT {len(ops)}" in ops_h
    for op in ops:
        assert f"r.{peer.resolver_method(op)}()" in ops_h


def test_model_sources_refuse_an_op_the_resolver_lacks(tmp_path: Path) -> None:
    header = tmp_path / "resolver.h"
    header.write_text("TfLiteStatus AddConv2D(")
    with pytest.raises(peer.PeerError, match="no MicroMutableOpResolver method"):
        peer.write_model_sources(KWS, tmp_path / "m", header)


def test_parse_output_reads_counts_outputs_and_failures() -> None:
    good = (
        b"peer arena_used 1808\r\npeer ticks 3604\r\npeer tick_hz 25000000\r\npeer output 0 7f80\r\n"
        b"peer ticks_again 3604\r\npeer done\r\n\r\n*** MT_QEMU_ARM_EXIT code=0x00000000 ***\r\n"
    )
    res = peer.parse_output(good, Path("x.elf"))
    assert res["ticks"] == 3604 and res["ticks_again"] == 3604 and res["arena_used"] == 1808
    assert res["outputs"] == {0: "7f80"} and res["exit_code"] == 0 and "error" not in res
    bad = (
        b"tflm Node FULLY_CONNECTED failed\r\npeer error AllocateTensors\r\n"
        b"*** MT_QEMU_ARM_EXIT code=0x00000001 ***"
    )
    res = peer.parse_output(bad, Path("x.elf"))
    assert res["error"] == "AllocateTensors" and res["log"] == ["Node FULLY_CONNECTED failed"]
    res = peer.parse_output(b"peer ticks 5\r\n", Path("x.elf"))
    assert "no exit marker" in res["error"]
    res = peer.parse_output(b"*** MT_QEMU_ARM_FAULT HardFault code=0x3 ***\r\n", Path("x.elf"))
    assert res["error"].startswith("fault: ")


@pytest.mark.skipif(
    not os.environ.get("TFLM_PEER_BUILD"), reason="set TFLM_PEER_BUILD=DIR (a build.py output)"
)
def test_peer_build_runs_and_kernel_sets_agree() -> None:
    out = Path(os.environ["TFLM_PEER_BUILD"])
    manifest = peer.load_manifest(out)
    stem = "hello_world_int8" if "hello_world_int8" in manifest["models"] else sorted(manifest["models"])[0]
    results = peer.run_model(out, manifest, stem, "mps2_an386")
    assert set(results) == {"ref", "cmsis_nn"}
    for res in results.values():
        assert "error" not in res, res
        assert res["ticks"] > 0 and res["ticks"] == res["ticks_again"]
    assert results["ref"]["outputs"] == results["cmsis_nn"]["outputs"]
    assert results["cmsis_nn"]["ticks"] < results["ref"]["ticks"]
