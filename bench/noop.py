#!/usr/bin/env python3
"""No-op `doit` over workspaces of 10, 100 and 500 projects, beside the cost of starting Python.

What a person pays for typing `doit` when nothing changed: loading projects.yaml, the
task generators, the up-to-date checks. The rules say none of that may start a Project
API server; this counts the processes a no-op run starts (with strace when available)
and the servers among them.

Each workspace holds N projects of one template, generated, built and flashed once
(the setup, not timed) so every task is up to date. The template is a real Project API
server (the platform's `build` just writes a file), vendoring our server helper and
started with `python -S`, so that the setup of 500 projects takes a minute rather than
ten; the no-op run never starts it anyway. The model is the demo sine model compiled by
our compiler.

The figures are printed as ratios against two peers measured in the same run:
`python -c pass` (the floor of any Python tool) and one Project API server launch of the
real `host` template (what a single needless server start would cost).

    python bench/noop.py                     # sizes 10 100 500, best of 5 runs each
    python bench/noop.py --sizes 10 100 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SERVER = textwrap.dedent('''\
    """Bench platform: a real Project API server whose build writes one file."""
    import os
    import pathlib
    import shutil
    import sys

    HERE = pathlib.Path(__file__).resolve().parent
    sys.path.insert(0, str(HERE))
    import mt_server as server  # our server helper, vendored (a template may do that)

    if os.environ.get("BENCH_SERVER_LOG"):
        with open(os.environ["BENCH_SERVER_LOG"], "a") as f:
            f.write("start\\n")

    OPTIONS = [server.ProjectOption("opt", optional=["build"], type="str", default="x", help="an option")]


    class Handler(server.ProjectAPIHandler):
        def server_info_query(self, tvm_version):
            return server.ServerInfo(platform_name="bench", is_template=True,
                                     model_library_format_path=None, project_options=OPTIONS)

        def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
            project_dir = pathlib.Path(project_dir)
            project_dir.mkdir()
            for name in ("microtvm_api_server.py", "mt_server.py", "launch_microtvm_api_server.sh"):
                shutil.copy2(HERE / name, project_dir / name)
            shutil.copy2(model_library_format_path, project_dir / "model.tar")
            (project_dir / "src").mkdir()
            (project_dir / "src" / "main.c").write_text("int main(void) { return 0; }\\n")

        def build(self, options):
            (HERE / "build").mkdir(exist_ok=True)
            (HERE / "build" / "firmware.bin").write_bytes((HERE / "src" / "main.c").read_bytes())

        def flash(self, options):
            pass

        def open_transport(self, options):
            raise server.ServerError("no device")

        def close_transport(self):
            pass

        def read_transport(self, n, timeout_sec):
            raise server.TransportClosedError()

        def write_transport(self, data, timeout_sec):
            raise server.TransportClosedError()


    if __name__ == "__main__":
        server.main(Handler())
''')

LAUNCH = (
    "#!/bin/sh\n# start the server without site-packages: it needs only the standard library\n"
    'exec "$BENCH_PYTHON" -S -E "$@"\n'
)

DODO = (
    "from microtvm_tasks.tasks import workspace_tasks\n\n"
    "globals().update(workspace_tasks('projects.yaml'))\n"
)


def make_template(path: Path) -> None:
    from microtvm_tasks.project_api import server

    path.mkdir(parents=True)
    (path / "microtvm_api_server.py").write_text(SERVER)
    shutil.copy2(server.__file__, path / "mt_server.py")
    launch = path / "launch_microtvm_api_server.sh"
    launch.write_text(LAUNCH)
    launch.chmod(0o755)


def make_workspace(root: Path, n: int, mlf: Path, template: Path) -> Path:
    ws = root / f"ws{n}"
    ws.mkdir()
    shutil.copy2(mlf, ws / "sine.tar")
    (ws / "dodo.py").write_text(DODO)
    lines = ["models:", "  sine: {path: sine.tar, compiler: mlf}", "projects:"]
    lines += [f"  p{i:04d}: {{model: sine, template: {template}}}" for i in range(n)]
    (ws / "projects.yaml").write_text("\n".join(lines) + "\n")
    return ws


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, proc


def best_time(argv: list[str], repeat: int, **kw) -> float:
    """Best of `repeat` wall times: on a shared machine the minimum is the least noisy figure."""
    return best_times(argv, repeat, **kw)[0]


def best_times(argv: list[str], repeat: int, **kw) -> tuple[float, float]:
    """(best wall time, best CPU time user+sys) of `repeat` runs.

    CPU time is what the run itself costs; wall time also holds waiting for a CPU when
    other work shares the machine.
    """
    import resource

    walls, cpus = [], []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t, proc = run(argv, **kw)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
        walls.append(t)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return min(walls), min(cpus)


def server_launch_time(repeat: int) -> float:
    """One launch of the real host template's server + server_info_query + shutdown."""
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project_api.client import instantiate_from_dir

    host = find_template("host")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with instantiate_from_dir(host) as client:
            client.server_info_query("0.18.0")
        times.append(time.perf_counter() - t0)
    return min(times)


def count_processes(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int | None, int | None]:
    """(processes started, of which Project API servers) during one run, via strace execve."""
    strace = shutil.which("strace")
    if strace is None:
        return None, None
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        proc = subprocess.run([strace, "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", out.name,
                               *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return None, None
        text = Path(out.name).read_text()
    execs = [line for line in text.splitlines() if re.search(r"execve\(.*= 0$", line)]
    servers = [line for line in execs if "microtvm_api_server" in line]
    # every process that ran a program; exec() chains of one process (the #! python) count once
    pids = {line.split()[0] for line in execs}
    return len(pids), len(servers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build the workspaces here and keep them")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="mt-bench-noop-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, BENCH_PYTHON=sys.executable, BENCH_SERVER_LOG=str(root / "servers.log"))
    # Measure what users get: bytecode caches written and used (some CI images disable them).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    doit = [sys.executable, "-m", "doit"]
    try:
        from microtvm_tasks.compiler import compile_model

        mlf = root / "sine.tar"
        compile_model(REPO / "models" / "sine.tflite", mlf, module_name="sine")
        template = root / "template"
        if not template.exists():
            make_template(template)

        python_pass, python_pass_cpu = best_times([sys.executable, "-c", "pass"], args.repeat, env=env)
        launch = server_launch_time(args.repeat)
        rows = []
        for n in args.sizes:
            ws = make_workspace(root, n, mlf, template)
            t_setup, proc = run([*doit, "-n", "2", "flash"], cwd=ws, env=env)
            if proc.returncode != 0:
                raise SystemExit(
                    f"setup of {n} projects failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            check = run([*doit, "flash"], cwd=ws, env=env)[1]
            if "nothing to do" not in check.stdout:
                raise SystemExit(f"workspace of {n} is not up to date after setup:\n{check.stdout[-2000:]}")
            before = (root / "servers.log").read_text().count("start")
            t_default = best_time(doit, args.repeat, cwd=ws, env=env)
            t_flash, cpu_flash = best_times([*doit, "flash"], args.repeat, cwd=ws, env=env)
            procs, servers = count_processes([*doit, "flash"], ws, env)
            launched = (root / "servers.log").read_text().count("start") - before
            rows.append((n, 1 + 3 * n, t_setup, t_default, t_flash, procs, servers, launched, cpu_flash))
            print(f"  {n} projects: setup {t_setup:.1f} s, no-op doit {t_default:.3f} s, "
                  f"no-op doit flash {t_flash:.3f} s", file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\ncommand: python bench/noop.py --sizes {' '.join(map(str, args.sizes))} --repeat {args.repeat}")
    print(f"peers (same run, best of {args.repeat}): python -c pass = {python_pass * 1000:.0f} ms "
          f"(CPU {python_pass_cpu * 1000:.0f} ms), "
          f"one Project API server launch (host template, server_info_query) = {launch * 1000:.0f} ms\n")
    print("| projects | tasks checked | no-op `doit flash` | x `python -c pass` | x server launch "
          "| CPU (user+sys) | x `python -c pass` CPU | no-op `doit` (build) | processes started "
          "| servers started |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, tasks, _setup, t_default, t_flash, procs, servers, launched, cpu in rows:
        procs_s = "n/a" if procs is None else str(procs)
        servers_s = str(launched) if servers is None else f"{servers} ({launched} by log)"
        print(f"| {n} | {tasks} | {t_flash * 1000:.0f} ms | {t_flash / python_pass:.1f} | "
              f"{t_flash / launch:.1f} | {cpu * 1000:.0f} ms | {cpu / python_pass_cpu:.1f} | "
              f"{t_default * 1000:.0f} ms | {procs_s} | {servers_s} |")
    if len(rows) >= 2:
        n0, n1 = rows[0][0], rows[-1][0]
        for label, col in (("wall", 4), ("CPU", 8)):
            per = (rows[-1][col] - rows[0][col]) / (n1 - n0)
            print(f"\nmarginal {label} cost per project: {per * 1000:.2f} ms "
                  f"({(rows[-1][col] - rows[0][col]):.3f} s from {n0} to {n1} projects); "
                  f"fixed ~{(rows[0][col] - per * n0) * 1000:.0f} ms", end="")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
