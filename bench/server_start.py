#!/usr/bin/env python3
"""How long a Project API round trip costs: launch + server_info_query + shutdown.

Every doit task and CLI command that needs a template's options or a stage starts a
server, so this is the tool's fixed cost per step. TVM's RFC measured about 0.4 s per
query; the target here is a median of at most 60 ms and at most 2x the start of a bare
interpreter (``python -c pass``), measured in the same run and interleaved with the
servers so that machine load affects both alike.

Usage: python bench/server_start.py [--runs 30] [--template NAME_OR_DIR ...] [--cache-bytecode]

By default every template `platforms.list_templates()` knows is measured, plus a
minimal template written to a temporary directory (the floor: the server helper alone).
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from microtvm_tasks import __version__, platforms
from microtvm_tasks.project_api import client

TARGET_MEDIAN_MS = 60.0
TARGET_RATIO = 2.0

MINIMAL_SERVER = textwrap.dedent(
    """
    from microtvm_tasks.project_api import server


    class Handler(server.ProjectAPIHandler):
        def server_info_query(self, tvm_version):
            return server.ServerInfo("minimal", True, None, server.default_project_options())

        def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
            raise NotImplementedError

        build = flash = open_transport = generate_project

        def close_transport(self):
            pass

        def read_transport(self, n, timeout_sec):
            raise server.TransportClosedError()

        def write_transport(self, data, timeout_sec):
            raise server.TransportClosedError()


    if __name__ == "__main__":
        server.main(Handler())
    """
)


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure(action: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one action; CPU time is what load does not inflate."""
    cpu, wall = _cpu(), time.perf_counter()
    action()
    return time.perf_counter() - wall, _cpu() - cpu


def bare_start() -> None:
    """The peer: start and exit a bare interpreter (same executable, same environment).

    Waited for the way the client waits for a server (a pidfd on Linux): subprocess.run's
    timed wait polls with growing sleeps and would make the peer look slower than it is.
    """
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    if hasattr(os, "pidfd_open"):
        pidfd = os.pidfd_open(proc.pid)
        try:
            select.select([pidfd], [], [], 60)
        finally:
            os.close(pidfd)
    if proc.wait(timeout=60) != 0:
        raise SystemExit(f"{sys.executable} -c pass failed")


def server_round_trip(template: Path) -> None:
    """Launch + server_info_query + shutdown (until the server process is reaped)."""
    with client.instantiate_from_dir(template, timeout=30) as api:
        api.server_info_query(__version__)
    if api.server_process is not None and api.server_process.proc.returncode != 0:
        raise SystemExit(f"{template}: server exited with {api.server_process.proc.returncode}")


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="round trips per template (default 30)")
    parser.add_argument(
        "--template", action="append", help="platform name or template directory (repeatable)"
    )
    parser.add_argument(
        "--cache-bytecode",
        action="store_true",
        help="let the child interpreters cache bytecode (under a temporary PYTHONPYCACHEPREFIX, so the "
        "tree stays clean) even when PYTHONDONTWRITEBYTECODE is set: an installed package has .pyc files",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        if args.cache_bytecode:  # children inherit our environment
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
            os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        minimal = Path(tmp) / "minimal"
        minimal.mkdir()
        (minimal / "microtvm_api_server.py").write_text(MINIMAL_SERVER)
        if args.template:
            templates = {name: platforms.find_template(name) for name in args.template}
        else:
            templates = platforms.list_templates()
        templates = {**templates, "(minimal, temp dir)": minimal}

        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for template in templates.values():  # warm the file (and bytecode) cache; not measured
            server_round_trip(template)
        bare_start()

        peer = "peer: python -c pass"
        samples: dict[str, list[tuple[float, float]]] = {peer: [], **{name: [] for name in templates}}
        for _ in range(args.runs):
            samples[peer].append(measure(bare_start))
            for name, template in templates.items():
                samples[name].append(measure(lambda template=template: server_round_trip(template)))

    if args.cache_bytecode:
        bytecode = "on (--cache-bytecode, temporary PYTHONPYCACHEPREFIX)"
    else:
        import importlib.util

        from microtvm_tasks.project_api import server

        cached = Path(importlib.util.cache_from_source(server.__file__)).is_file()
        bytecode = "on" if not sys.dont_write_bytecode else "off (PYTHONDONTWRITEBYTECODE)"
        bytecode += f", server.py {'has a .pyc' if cached else 'is compiled at every start'}"
    print(
        f"Project API server start: launch + server_info_query + shutdown, {args.runs} runs each, interleaved"
    )
    print(
        f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs, "
        f"bytecode cache {bytecode}\n"
    )
    print(f"load average before/after: {load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    walls = {name: [w * 1e3 for w, _ in values] for name, values in samples.items()}
    cpus = {name: [c * 1e3 for _, c in values] for name, values in samples.items()}
    bare_wall, bare_cpu = statistics.median(walls[peer]), statistics.median(cpus[peer])
    print(
        f"{'':22}{'wall min':>10}{'median':>9}{'p90':>9}{'x bare':>8}{'CPU median':>12}{'x bare':>8}"
        f"  target: median <= {TARGET_MEDIAN_MS:g} ms and <= {TARGET_RATIO:g}x bare"
    )
    failed = 0
    for name in samples:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        ratio = wall / bare_wall
        verdict = ""
        if name != peer:
            ok = wall <= TARGET_MEDIAN_MS and ratio <= TARGET_RATIO
            failed += not ok
            verdict = "met" if ok else ("MISSED" if ratio > TARGET_RATIO else "ratio met, ms MISSED")
        print(
            f"{name:22}{min(walls[name]):>8.1f}ms{wall:>7.1f}ms{p90(walls[name]):>7.1f}ms{ratio:>7.2f}x"
            f"{cpu:>10.1f}ms{cpu / bare_cpu:>7.2f}x  {verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
