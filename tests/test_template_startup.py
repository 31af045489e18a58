"""What a built-in template's Project API server loads before it answers server_info_query.

A server is started for every query and stage, and most starts only ask for the options, so
each built-in template keeps its `microtvm_api_server.py` a thin script and its bulk in an
implementation file loaded on the first other call (see bench/server_start.py for the time
it saves). These tests hold that line without timing anything (the machine is shared and
noisy): they run each server under ``-X importtime`` for one real server_info_query and
look at the modules it imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATES_DIR

BUILT_INS = ("host", "qemu_arm", "arduino", "zephyr")

#: Modules none of the servers may load just to answer server_info_query: the heavy ones
#: (numpy, the compiler, pyserial) and those only a stage needs.
FORBIDDEN = (
    "numpy",
    "microtvm_tasks.compiler",
    "microtvm_tasks.mlf",
    "microtvm_tasks.runtime",
    "serial",
    "subprocess",
    "socket",
    "logging",
    "hashlib",
    "shutil",
    "tarfile",
    "tempfile",
    "pathlib",
    "re",
    "shlex",
    "importlib.util",
)


def _imported(stderr: str) -> list[str]:
    """Module names from ``-X importtime`` output (one line per module actually imported)."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "[us]" not in line:
            names.append(line.rsplit("|", 1)[1].strip())
    return names


def _run_importtime(argv: list[str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, timeout=60, check=True
    )
    return _imported(proc.stderr)


@pytest.fixture(scope="module")
def bare() -> set[str]:
    """What the interpreter loads anyway (site and .pth files may import re, shutil...)."""
    return set(_run_importtime(["-c", "pass"]))


@pytest.fixture(scope="module")
def baseline() -> set[str]:
    """What the interpreter loads anyway plus what the Project API helper itself needs."""
    return set(_run_importtime(["-c", "import microtvm_tasks.project_api.server"]))


def _serve_one_info_query(script: Path) -> tuple[dict, list[str]]:
    """(server_info reply, modules imported) of one server answering one query then exiting."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", str(script), "--read-fd", str(req_r), "--write-fd", str(rep_w)],
        pass_fds=(req_r, rep_w),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(req_r)
    os.close(rep_w)
    try:
        params = {"tvm_version": "0.18.0"}
        request = {"jsonrpc": "2.0", "id": 1, "method": "server_info_query", "params": params}
        os.write(req_w, (json.dumps(request) + "\n").encode())
        with os.fdopen(rep_r, "rb") as replies:
            line = replies.readline()
        os.close(req_w)  # end of input: the server exits
        req_w = -1
        _, stderr = proc.communicate(timeout=60)
    finally:
        if req_w >= 0:
            os.close(req_w)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr[-2000:]
    reply = json.loads(line)
    assert "result" in reply, reply
    return reply["result"], _imported(stderr)


@pytest.mark.parametrize("name", BUILT_INS)
def test_server_info_query_loads_only_the_project_api_helper(name, bare, baseline):
    info, imported = _serve_one_info_query(TEMPLATES_DIR / name / "microtvm_api_server.py")
    assert info["platform_name"] == name and info["project_options"], info
    extra = sorted(set(imported) - baseline)
    loaded = set(imported) - bare
    heavy = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not heavy, f"{name}: server_info_query imported {heavy}"
    # nothing beyond what the interpreter and the helper load (the template's own modules
    # would show up here, e.g. a top-level `import tarfile` or the implementation file)
    assert not extra, f"{name}: server_info_query imported {extra} beyond the Project API helper"


@pytest.mark.parametrize("name", BUILT_INS)
def test_the_check_sees_an_import_of_the_implementation(name, baseline):
    """The import check above can fail: loading the implementation shows its modules."""
    script = TEMPLATES_DIR / name / "microtvm_api_server.py"
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('server_under_test', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module._load_impl()\n"
    )
    imported = _run_importtime(["-c", code, str(script)])
    assert "subprocess" in set(imported) - baseline, imported


@pytest.mark.parametrize("name", BUILT_INS)
def test_implementation_is_byte_code_cached_and_shares_the_script_namespace(name, tmp_path):
    """The implementation file gets a .pyc (the script never does), and its names are the
    script module's own, so patching the module is what the implementation sees."""
    script = TEMPLATES_DIR / name / "microtvm_api_server.py"
    impl = TEMPLATES_DIR / name / f"{name}_impl.py"
    assert impl.is_file()
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('server_under_test', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert 'subprocess' not in vars(module)\n"
        "ns = module._load_impl()\n"
        "assert ns is vars(module) and callable(module.subprocess.Popen)\n"
        "assert isinstance(module.Handler().full_handler(), module.Handler)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(script)], env=env, timeout=60, check=True)
    cached = Path(importlib.util.cache_from_source(str(impl))).name  # <name>_impl.cpython-3XY.pyc
    pycs = [p.name for p in (tmp_path / "pycache").rglob("*.pyc")]
    assert cached in pycs, pycs
