"""`microtvm run` on a built host project of the fake model: npz in/out, float inputs for a
quantised tensor, real values shown, --print-top, --print-time, errors without tracebacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from microtvm_tasks.cli import main
from microtvm_tasks.runtime.fake_mlf import fake_reference, write_fake_mlf

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                                reason="make and cc needed")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project import build_project, create_project

    tmp = tmp_path_factory.mktemp("cli")
    mlf = write_fake_mlf(tmp / "fake.tar", n=4)
    proj = tmp / "proj"
    create_project(proj, mlf, find_template("host"), {"project_type": "host_driven"})
    build_project(proj)
    return proj


def test_run_with_npz_float_inputs_and_outputs(project, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", input_0=np.array([[1.0, -2.0, 3.0, 0.0]], dtype=np.float32))
    rc = main(["run", str(project), "-i", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"),
               "--print-top", "2", "--print-time", "--repeat", "3", "--number", "4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    q = np.array([[1, -5, 5, -1]], dtype=np.int8)  # quantised with scale 0.5, zero point -1
    y, z = fake_reference(q)
    with np.load(tmp_path / "out.npz") as saved:
        assert sorted(saved.files) == ["output_0", "output_1"]
        np.testing.assert_array_equal(saved["output_0"], y)
        np.testing.assert_array_equal(saved["output_1"], z)
    assert "output_0 'y' int8[1, 4], scale 0.5 zero point -1: 2 -4 6 0" in out
    assert "real: 1.5 -1.5 3.5 0.5" in out
    assert "top 1: index 2 value 6 (real 3.5)" in out and "top 2: index 0" in out
    assert "3 repeat(s) of 4 run(s)" in out and "round trip" in out


def test_run_by_input_name_and_fill_modes(project, tmp_path, capsys):
    np.savez(tmp_path / "named.npz", **{"x:0": np.array([[7, 8, 9, 10]], dtype=np.int8)})
    assert main(["run", str(project), "-i", str(tmp_path / "named.npz")]) == 0
    assert "output_0 'y' int8[1, 4], scale 0.5 zero point -1: 8 9 10 11" in capsys.readouterr().out
    assert main(["run", str(project), "--fill-mode", "zeros"]) == 0
    assert "output_1 'z' float32[2]: 0 0" in capsys.readouterr().out


def test_run_errors_are_reported_without_traceback(project, tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", nope=np.zeros(4, np.int8))
    assert main(["run", str(project), "-i", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "'nope' is not one of the model's inputs" in err and "Traceback" not in err
    assert main(["run", str(tmp_path / "missing")]) == 2
    assert "not a generated project" in capsys.readouterr().err
    assert main(["run", str(project), "--option", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_run_standalone_demo_project_prints_its_output(tmp_path, capsys):
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project import build_project, create_project

    mlf = write_fake_mlf(tmp_path / "fake.tar", n=4)
    proj = tmp_path / "demo"
    create_project(proj, mlf, find_template("host"), {"project_type": "aot_standalone_demo"})
    build_project(proj)
    assert main(["run", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "mt: output 0 y int8 [1,4] = " in out and "mt: status 0" in out
    assert main(["run", str(proj), "-o", str(tmp_path / "o.npz")]) == 2
    assert "aot_standalone_demo" in capsys.readouterr().err


@pytest.mark.parametrize(("make", "message"), [
    # same element count, other shape: would run on transposed data
    (lambda p: np.savez(p, input_0=np.zeros((1, 2, 2), np.int8)),
     "shape [1, 2, 2] given, the model needs [1, 4] (or [4], without the batch axis)"),
    (lambda p: np.savez(p, input_0=np.array([[1.0, np.nan, 0.0, np.inf]], np.float32)),
     "2 of 4 values are NaN or infinite"),
    (lambda p: np.savez(p), "holds no arrays"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(4)) or p.with_suffix(".npy").rename(p),
     "not a .npz file of named input arrays (a single .npy array)"),
    (lambda p: p.write_text("hello"), "not a .npz file of named input arrays (not a zip archive)"),
])
def test_bad_inputs_are_errors_that_say_what_is_wrong(project, tmp_path, capsys, make, message):
    path = tmp_path / "in.npz"
    make(path)
    assert main(["run", str(project), "-i", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_inputs_without_the_batch_axis_and_clipped_values(project, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", input_0=np.array([1.0, -2.0, 3.0, 100.0], np.float32))
    assert main(["run", str(project), "-i", str(tmp_path / "in.npz")]) == 0
    out, err = capsys.readouterr()
    assert "output_0 'y' int8[1, 4]" in out
    assert "1 of 4 values lie outside the quantised range [-63.5, 64] (scale 0.5, zero point -1) and were " \
           "clipped" in err


def test_options_a_command_ignores_and_bad_counts_are_errors(project, capsys):
    assert main(["run", str(project), "-O", "project_type=host_driven"]) == 2
    err = capsys.readouterr().err
    assert "option 'project_type' (--option on the command line) is not used by run; give it to " \
           "create-project instead" in err
    assert main(["build", str(project), "-o", "project_type=host_driven"]) == 2
    assert "is not used by build; give it to create-project instead" in capsys.readouterr().err
    assert main(["run", str(project), "-O", "noequals"]) == 2
    assert "write e.g. -O noequals=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(project), "--print-top", "-3"])
    assert "-3 is negative" in capsys.readouterr().err
