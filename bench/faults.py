#!/usr/bin/env python3
"""Issue 13's fault figures, measured in one run and printed as one table:

  (a) throughput  a 1 MiB input and output of a fake model, checked bit-exactly, in KiB/s:
                  qemu_arm (mps2_an385) through the Project API beside the host template over
                  its pipes (bench/run_latency.py's `throughput`)
  (b) lifetime    seconds from SIGKILL / SIGTERM / SIGINT of a `microtvm run` client (the
                  process alone, not its group) in the middle of a long RUN (kws on qemu_arm,
                  --number 5000) until its Project API server and qemu-system-arm are gone,
                  found by the project's paths in their command lines; the max over N tries
                  of each (target <= 2 s). A process still there after --give-up seconds is
                  reported as ">T" and killed by its PID.
  (c) pairs       N pairs of `doit run:sine_host` started together on a fresh copy of a small
                  workspace (host template, sine model): pairs with a failed process, and
                  whether every successful pair wrote the same outputs.

Whatever the code does is what is reported: nothing here retries or hides a failure.
Usage:
  python bench/faults.py [-n 10 | --quick] [--number 5000] [--give-up 120] [--only a,b,c]
                         [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: the model and board of the lifetime measurement (the issue's: kws on the Cortex-M4).
KWS = REPO / "models" / "kws.tflite"
SINE = REPO / "models" / "sine.tflite"
LIFETIME_BOARD = "mps2_an386"
POLL_SEC = 0.02
#: after QEMU appears, how long to let the client handshake and load the input before the
#: signal, so that it lands in the RUN (kws's input is 490 bytes: well under a second).
SETTLE_SEC = 2.0
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def _env() -> dict[str, str]:
    """The environment of the processes started here: this checkout's package first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ---- (b) process lifetime after the client dies ------------------------------------------------


def _live_pids_with(needle: str) -> list[int]:
    """PIDs of live (not zombie) processes with an argument containing `needle`, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(needle.encode() in arg for arg in argv):
            pids.append(int(entry.name))
    return pids


def _build_kws_project(work: Path) -> Path:
    """kws compiled, generated for qemu_arm, built and flashed (once, reused by every try)."""
    from microtvm_tasks.compiler import compile_model
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project import build_project, create_project, flash_project

    mlf = compile_model(KWS, work / "kws.tar")
    proj = work / "kws_qemu_arm"
    create_project(proj, mlf, find_template("qemu_arm"),
                   {"board": LIFETIME_BOARD, "project_type": "host_driven"}, force=True)
    build_project(proj)
    flash_project(proj)
    return proj


def _one_kill(proj: Path, sig: signal.Signals, number: int, give_up: float) -> float | None:
    """Seconds from `sig` to the client until server and QEMU are gone; None after `give_up`."""
    image = str(proj / "build" / "image.elf")
    server_script = str(proj / "microtvm_api_server.py")
    client = subprocess.Popen(
        [sys.executable, "-m", "microtvm_tasks.cli", "run", str(proj), "--number", str(number),
         "--timeout", "600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=_env(), start_new_session=True,
    )
    try:
        end = time.monotonic() + 60
        while not _live_pids_with(image):
            if client.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"`microtvm run {proj}` did not start QEMU (exit {client.poll()})")
            time.sleep(POLL_SEC)
        time.sleep(SETTLE_SEC)
        if client.poll() is not None:
            raise RuntimeError(f"`microtvm run` ended (exit {client.returncode}) before the signal: "
                               "raise --number")
        os.kill(client.pid, sig)  # the client alone, as `kill PID` does
        t0 = time.monotonic()
        while True:
            left = _live_pids_with(image) + _live_pids_with(server_script)
            gone = time.monotonic() - t0
            if not left:
                return gone
            if gone > give_up:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return None
            time.sleep(POLL_SEC)
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(timeout=30)


def lifetimes(work: Path, tries: int, number: int, give_up: float) -> dict[str, list[float | None]]:
    """Per signal name, the seconds of each try (None: still there after `give_up`)."""
    proj = _build_kws_project(work)
    results: dict[str, list[float | None]] = {}
    for sig in SIGNALS:
        results[sig.name] = [_one_kill(proj, sig, number, give_up) for _ in range(tries)]
    return results


# ---- (c) concurrent doit pairs -----------------------------------------------------------------


WORKSPACE_YAML = """\
# bench/faults.py's small workspace: one host project of the sine model.
defaults:
  build_dir: build
models:
  sine:
    path: models/sine.tflite
    compiler: builtin
projects:
  sine_host:
    model: sine
    platform: host
"""


def _fresh_workspace(dest: Path) -> Path:
    (dest / "models").mkdir(parents=True)
    shutil.copy2(SINE, dest / "models" / "sine.tflite")
    shutil.copy2(REPO / "dodo.py", dest / "dodo.py")
    (dest / "projects.yaml").write_text(WORKSPACE_YAML)
    return dest


def pairs(work: Path, count: int, task: str = "run:sine_host") -> dict[str, object]:
    """`count` pairs of `doit <task>` from clean; failures and whether the outputs agree."""
    failed: list[str] = []
    outputs: set[bytes] = set()
    for k in range(count):
        ws = _fresh_workspace(work / f"pair_{k}")
        procs = [subprocess.Popen([sys.executable, "-m", "doit", task], cwd=ws, env=_env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for _ in range(2)]
        texts = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            texts.append((p.returncode, out.decode("utf-8", "replace")))
        bad = [(rc, text) for rc, text in texts if rc != 0]
        if bad:
            rc, text = bad[0]
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
            failed.append(f"pair {k}: {len(bad)} of 2 failed (exit {rc}): {last[0][:160]}")
            continue
        result = ws / "build" / "runs" / "sine_host" / "outputs.npz"
        if result.is_file():
            import numpy as np

            with np.load(result) as npz:
                outputs.add(b"".join(npz[name].tobytes() for name in sorted(npz.files)))
        else:
            failed.append(f"pair {k}: both exited 0 but {result} is missing")
        shutil.rmtree(ws, ignore_errors=True)
    return {"pairs": count, "failed": len(failed), "details": failed, "distinct_outputs": len(outputs)}


# ---- the table ---------------------------------------------------------------------------------


def _fmt(values: list[float | None], give_up: float) -> str:
    if any(v is None for v in values):
        return f">{give_up:.0f}"
    return f"{max(v for v in values if v is not None):.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="tries per signal and concurrent pairs (default 10)")
    ap.add_argument("--quick", action="store_true", help="3 tries and pairs instead of -n")
    ap.add_argument("--number", type=int, default=5000, help="--number of the killed `microtvm run`")
    ap.add_argument("--give-up", type=float, default=120.0, metavar="SEC",
                    help="stop waiting for the processes after this long (reported as >SEC)")
    ap.add_argument("--throughput-bytes", type=int, default=1 << 20, metavar="N")
    ap.add_argument("--only", default="a,b,c", help="which parts to measure, e.g. a,c")
    ap.add_argument("--workdir", type=Path, help="keep the projects here (default: a temporary directory)")
    args = ap.parse_args(argv)
    n = 3 if args.quick else args.n
    parts = set(args.only.split(","))
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mt_faults_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "a" in parts:
            from run_latency import THROUGHPUT_BOARD, throughput

            (work / "throughput").mkdir(exist_ok=True)
            t = throughput(work / "throughput", args.throughput_bytes)
            for name, label in (("qemu_arm", f"qemu_arm {THROUGHPUT_BOARD} UART (Project API)"),
                                ("host", "host template pipes")):
                r = t[name]
                detail = f"in {r['in']:.1f}, out {r['out']:.1f} KiB/s, {args.throughput_bytes} B each way"
                rows.append((f"(a) {label}", f"{r['round_trip']:.1f} KiB/s", detail))
        if "b" in parts:
            (work / "lifetime").mkdir(exist_ok=True)
            life = lifetimes(work / "lifetime", n, args.number, args.give_up)
            for name, values in life.items():
                each = " ".join("-" if v is None else f"{v:.2f}" for v in values)
                rows.append((f"(b) server+QEMU gone after {name}", f"{_fmt(values, args.give_up)} s",
                             f"max of {len(values)} (target <= 2 s): {each}"))
        if "c" in parts:
            (work / "pairs").mkdir(exist_ok=True)
            p = pairs(work / "pairs", n)
            rows.append(("(c) concurrent doit pairs, failures", f"{p['failed']} of {p['pairs']}",
                         f"distinct outputs among good pairs: {p['distinct_outputs']}"))
            rows.extend(("", "", str(d)) for d in p["details"])  # type: ignore[attr-defined]
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'measurement':<{width}}  {'result':>14}  detail")
    print("-" * (width + 40))
    for what, result, detail in rows:
        print(f"{what:<{width}}  {result:>14}  {detail}")
    given = argv if argv is not None else sys.argv[1:]
    print(f"\ncommand: python bench/faults.py {' '.join(given)}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
