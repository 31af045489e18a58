"""What a damaged model file says: empty, not TFLite, truncated (issue 13, item 14)."""

from __future__ import annotations

import pytest
from conftest import SINE_TFLITE

from microtvm_tasks.compiler import compile_model
from microtvm_tasks.errors import CompileError


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    with pytest.raises(CompileError, match=r"empty.tflite: empty file \(0 bytes\)"):
        compile_model(p, tmp_path / "o.tar")


def test_not_tflite_names_the_identifier(tmp_path):
    p = tmp_path / "h.tflite"
    p.write_bytes(b"hello world\n")
    want = r"not a valid TFLite model \(no 'TFL3' file identifier at bytes 4-7; 12 bytes\)"
    with pytest.raises(CompileError, match=want):
        compile_model(p, tmp_path / "o.tar")


@pytest.mark.parametrize("keep", [100, 1000, 2000])
def test_truncated_file_says_truncated_and_where(tmp_path, keep):
    data = SINE_TFLITE.read_bytes()
    assert keep < len(data)
    p = tmp_path / "t.tflite"
    p.write_bytes(data[:keep])
    with pytest.raises(CompileError) as e:
        compile_model(p, tmp_path / "o.tar")
    msg = str(e.value)
    assert f"the file has {keep} bytes" in msg and "truncated" in msg and "unpack_from" not in msg
    assert not (tmp_path / "o.tar").exists()


def test_a_stateful_operator_is_named(tmp_path):
    """A variable tensor (an LSTM's state) names the operator that keeps it, as unsupported
    operators are named, not only the tensor."""
    import model_builders as mb

    b = mb.TFLiteBuilder()
    x = b.tensor("x", [1, 4], "float32")
    state = b.tensor("lstm_state", [1, 4], "float32", variable=True)
    y = b.tensor("y", [1, 4], "float32")
    b.op("ADD", [x, state], [y])
    p = tmp_path / "stateful.tflite"
    p.write_bytes(b.build([x], [y]))
    with pytest.raises(CompileError, match=r"operator ADD \(node #0\) keeps state between invocations in the "
                                           r"variable tensor 'lstm_state'"):
        compile_model(p, tmp_path / "o.tar")
