"""bench/noop.py runs, and its no-op run starts no Project API server (strace or the server log)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_noop_bench_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "noop.py"), "--sizes", "2", "4", "--repeat", "1",
         "--keep", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) ms \|.*\| (\S+) \| (\d+)[^|]*\|$", proc.stdout, re.M)
    assert [(r[0], r[1]) for r in rows] == [("2", "7"), ("4", "13")], proc.stdout
    for _n, _tasks, _ms, processes, servers in rows:
        assert servers == "0", proc.stdout  # no Project API server during a no-op run
        if processes != "n/a":
            assert processes == "1", proc.stdout  # doit itself, nothing else
    assert "marginal wall cost per project" in proc.stdout and "marginal CPU cost" in proc.stdout
