#!/usr/bin/env python3
"""Host platform: what one inference costs through `microtvm run` vs the bare compiled code.

Per model (compiled by our compiler, generated and built as a host project), medians of
--repeat measurements of:

  bare        the firmware's own time per inference: RUN n ticks / tick Hz / n, measured by the
              program itself around tvmgen_<name>_run (the peer figure)
  pipe rt     load inputs + RUN 1 + read outputs over the run protocol, straight on the
              program's pipes (protocol cost without the Project API)
  api rt      the same round trip through the Project API transport (JSON-RPC to the project's
              server, which relays to the program): what `microtvm run` does per inference
  run total   a whole `microtvm run` (start the server, open the transport, handshake,
              describe, one inference, close, reap)

and prints each as a ratio to bare. Then the wire's throughput (`throughput`): a fake model
(runtime/fake_mlf.py) with a --throughput-bytes input and output (default 1 MiB) loaded and
read back, bit-exactly, on the host template over its pipes and on qemu_arm (mps2_an385)
through the Project API, in KiB/s (input + output bytes / seconds of SET_INPUT + GET_OUTPUT).
Usage:
  python bench/run_latency.py [MODEL ...] [--repeat 5] [--workdir DIR] [--throughput-bytes N]
Models default to ../shared/models/*.tflite and *.onnx; --throughput-bytes 0 skips the second table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _default_models() -> list[Path]:
    shared = REPO.parent / "shared" / "models"
    return sorted([*shared.glob("*.tflite"), *shared.glob("*.onnx")])


def _build(model: Path, work: Path) -> Path:
    from microtvm_tasks.compiler import compile_model
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project import build_project, create_project

    mlf = compile_model(model, work / f"{model.stem}.tar")
    proj = work / f"{model.stem}_host"
    create_project(proj, mlf, find_template("host"), {"project_type": "host_driven"}, force=True)
    build_project(proj)
    return proj


def _round_trip(session, arrays, n_out) -> float:
    t0 = time.perf_counter()
    for i, a in enumerate(arrays):
        session.set_input(i, a)
    session.run(1)
    for i in range(n_out):
        session.get_output_bytes(i)
    return time.perf_counter() - t0


def measure(proj: Path, repeat: int) -> dict[str, float]:
    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.session import (
        ProcessTransport,
        ProjectAPITransport,
        Session,
        make_inputs,
        run_project,
    )

    # bare: ticks reported by the firmware, with n chosen so one RUN takes ~50 ms
    with ProcessTransport([str(proj / "build" / "main")]) as pt:
        s = Session(pt, timeout=60)
        s.hello()
        desc = s.describe()
        arrays = make_inputs(desc, fill_mode="random", seed=0)
        for i, a in enumerate(arrays):
            s.set_input(i, a)
        ticks, hz = s.run(1)
        n = max(1, min(100000, int(0.05 / max(ticks / hz, 1e-9))))
        bare = [s.run(n)[0] / hz / n for _ in range(repeat)]
        _round_trip(s, arrays, len(desc.outputs))
        pipe = [_round_trip(s, arrays, len(desc.outputs)) for _ in range(repeat)]

    with instantiate_from_dir(proj) as client:
        client.open_transport({})
        try:
            s = Session(ProjectAPITransport(client), timeout=60)
            s.hello()
            s.describe()
            _round_trip(s, arrays, len(desc.outputs))
            api = [_round_trip(s, arrays, len(desc.outputs)) for _ in range(repeat)]
        finally:
            client.close_transport()

    total = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_project(proj, arrays)
        total.append(time.perf_counter() - t0)
    return {
        "bare": statistics.median(bare),
        "pipe": statistics.median(pipe),
        "api": statistics.median(api),
        "total": statistics.median(total),
    }


THROUGHPUT_BOARD = "mps2_an385"


def _timed_round_trip(session: Any, x: Any) -> tuple[float, float]:
    """(seconds to load `x` into input 0, seconds to read output 0 back), checked bit-exactly
    against the fake model's reference (y = x + 1, saturating)."""
    import numpy as np

    from microtvm_tasks.runtime.fake_mlf import fake_reference

    t0 = time.perf_counter()
    session.set_input(0, x)
    t1 = time.perf_counter()
    session.run(1)
    t2 = time.perf_counter()
    y = session.get_output(0)
    t3 = time.perf_counter()
    want, _ = fake_reference(x)
    if not np.array_equal(y, want):
        raise AssertionError(f"output 0 differs from the reference at {int((y != want).sum())} values")
    return t1 - t0, t3 - t2


def throughput_input(nbytes: int) -> Any:
    """The int8 input of the throughput runs: every byte value, the frame delimiter and QEMU's
    mux escape (0x01) included, then seeded random values."""
    import numpy as np

    x = np.random.default_rng(0).integers(-128, 128, size=(1, nbytes), dtype=np.int16).astype(np.int8)
    head = min(nbytes, 2048)
    x[0, :head] = (np.arange(head) % 256).astype(np.uint8).view(np.int8)
    return x


def throughput(work: Path, nbytes: int = 1 << 20, *, platforms: tuple[str, ...] = ("host", "qemu_arm")
               ) -> dict[str, dict[str, float]]:
    """KiB/s of one round trip of `nbytes` in and `nbytes` out, per platform: the host template
    over its pipes (ProcessTransport, no Project API) and qemu_arm through the Project API (as
    `microtvm run` talks to it). Each value: {"in", "out", "round_trip"} in KiB/s, and "seconds"."""
    from microtvm_tasks.platforms import find_template
    from microtvm_tasks.project import build_project, create_project
    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.runtime.fake_mlf import write_fake_mlf
    from microtvm_tasks.session import ProcessTransport, ProjectAPITransport, Session

    mlf = write_fake_mlf(work / f"fake_{nbytes}.tar", n=nbytes)
    x = throughput_input(nbytes)
    kib = nbytes / 1024
    results: dict[str, dict[str, float]] = {}
    for platform in platforms:
        proj = work / f"throughput_{platform}"
        opts = {"project_type": "host_driven"}
        if platform == "qemu_arm":
            opts["board"] = THROUGHPUT_BOARD
        create_project(proj, mlf, find_template(platform), opts, force=True)
        build_project(proj)
        if platform == "host":
            with ProcessTransport([str(proj / "build" / "main")]) as pt:
                s = Session(pt, timeout=120)
                s.hello()
                t_in, t_out = _timed_round_trip(s, x)
        else:
            with instantiate_from_dir(proj) as client:
                client.open_transport({})
                try:
                    s = Session(ProjectAPITransport(client), timeout=120)
                    s.hello(timeout=30)
                    t_in, t_out = _timed_round_trip(s, x)
                finally:
                    client.close_transport()
        results[platform] = {"in": kib / t_in, "out": kib / t_out, "round_trip": 2 * kib / (t_in + t_out),
                             "seconds": t_in + t_out, "max_payload": float(s.max_payload or 0)}
    return results


def print_throughput(results: dict[str, dict[str, float]], nbytes: int) -> None:
    """The throughput table, one line per platform."""
    print(f"\nthroughput of a {nbytes} B input and output (fake model, checked bit-exactly):")
    header = (f"{'platform':<34} {'payload':>8} {'in KiB/s':>10} {'out KiB/s':>10} {'rt KiB/s':>10} "
              f"{'seconds':>8}")
    print(header)
    print("-" * len(header))
    names = {"host": "host (pipes)", "qemu_arm": f"qemu_arm {THROUGHPUT_BOARD} (Project API)"}
    for platform, r in results.items():
        print(f"{names.get(platform, platform):<34} {int(r['max_payload']):>8} {r['in']:>10.1f} "
              f"{r['out']:>10.1f} {r['round_trip']:>10.1f} {r['seconds']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, help="keep the projects here (default: a temporary directory)")
    ap.add_argument("--throughput-bytes", type=int, default=1 << 20, metavar="N",
                    help="size of the throughput runs' input and output (0: skip them)")
    args = ap.parse_args(argv)
    models = args.models or _default_models()
    if not models:
        print("no models given and none in ../shared/models", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mt_bench_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        header = (f"{'model':<28} {'bare us':>10} {'pipe rt us':>11} {'x bare':>8} {'api rt us':>11} "
                  f"{'x bare':>8} {'run total ms':>13} {'x bare':>10}")
        print(header)
        print("-" * len(header))
        for model in models:
            try:
                proj = _build(model, work)
                r = measure(proj, args.repeat)
            except Exception as e:  # noqa: BLE001 - one model's failure must not hide the others
                print(f"{model.name:<28} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            b = r["bare"]
            print(f"{model.name:<28} {b * 1e6:>10.2f} {r['pipe'] * 1e6:>11.1f} {r['pipe'] / b:>8.1f} "
                  f"{r['api'] * 1e6:>11.1f} {r['api'] / b:>8.1f} "
                  f"{r['total'] * 1e3:>13.1f} {r['total'] / b:>10.0f}")
        print(f"\nmedians of {args.repeat} repeats; 'x bare' = that figure / bare time per inference "
              "(the firmware's own tick count around tvmgen_<name>_run)")
        if args.throughput_bytes > 0:
            print_throughput(throughput(work, args.throughput_bytes), args.throughput_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
