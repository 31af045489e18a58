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
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
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


def bare_start() -> float:
    """Seconds for the peer: start and exit a bare interpreter (same executable, same env)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    return time.perf_counter() - start


def server_round_trip(template: Path) -> float:
    """Seconds for launch + server_info_query + shutdown (the reaped process included)."""
    start = time.perf_counter()
    with client.instantiate_from_dir(template, timeout=30) as api:
        api.server_info_query(__version__)
    elapsed = time.perf_counter() - start
    if api.server_process is not None and api.server_process.proc.returncode != 0:
        raise SystemExit(f"{template}: server exited with {api.server_process.proc.returncode}")
    return elapsed


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
        help="let the child interpreters write and use __pycache__ (git-ignored) even when "
        "PYTHONDONTWRITEBYTECODE is set, as an installed package has its .pyc files",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        if args.cache_bytecode:  # children inherit our environment
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        minimal = Path(tmp) / "minimal"
        minimal.mkdir()
        (minimal / "microtvm_api_server.py").write_text(MINIMAL_SERVER)
        if args.template:
            templates = {name: platforms.find_template(name) for name in args.template}
        else:
            templates = platforms.list_templates()
        templates = {**templates, "(minimal, temp dir)": minimal}

        for template in templates.values():  # warm the file cache; not measured
            server_round_trip(template)
        bare_start()

        bare: list[float] = []
        timings: dict[str, list[float]] = {name: [] for name in templates}
        for _ in range(args.runs):
            bare.append(bare_start())
            for name, template in templates.items():
                timings[name].append(server_round_trip(template))

    if args.cache_bytecode:
        bytecode = "on (--cache-bytecode)"
    else:
        bytecode = "off (PYTHONDONTWRITEBYTECODE)" if sys.dont_write_bytecode else "on"
    print(
        f"Project API server start: launch + server_info_query + shutdown, {args.runs} runs each, interleaved"
    )
    print(
        f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs, "
        f"bytecode cache {bytecode}\n"
    )
    bare_median = statistics.median(bare) * 1e3
    target = f"target (<= {TARGET_MEDIAN_MS:g} ms, <= {TARGET_RATIO:g}x)"
    print(f"{'':24}{'min':>10}{'median':>10}{'p90':>10}{'x bare':>9}  {target}")
    print(
        f"{'peer: python -c pass':24}{min(bare) * 1e3:>8.1f}ms{bare_median:>8.1f}ms"
        f"{p90(bare) * 1e3:>8.1f}ms{1.0:>8.2f}x"
    )
    failed = 0
    for name, values in timings.items():
        median = statistics.median(values) * 1e3
        ratio = median / bare_median
        ok = median <= TARGET_MEDIAN_MS and ratio <= TARGET_RATIO
        failed += not ok
        print(
            f"{name:24}{min(values) * 1e3:>8.1f}ms{median:>8.1f}ms{p90(values) * 1e3:>8.1f}ms"
            f"{ratio:>8.2f}x  {'met' if ok else 'MISSED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
