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

and prints each as a ratio to bare. Usage:
  python bench/run_latency.py [MODEL ...] [--repeat 5] [--workdir DIR]
Models default to ../shared/models/*.tflite and *.onnx.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, help="keep the projects here (default: a temporary directory)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
