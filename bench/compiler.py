#!/usr/bin/env python3
"""Built-in compiler vs TFLite Micro and LiteRT, per model, measured in one run.

For each model: our arena bytes beside TFLite Micro's arena head and total; microseconds
per inference of our generated C (gcc -O2 on this host, timed by a C loop inside the
shared library, median of several repeats) beside TFLite Micro's and LiteRT's (median of
repeats of their Python invoke loops; onnxruntime for ONNX models); the ratio ours/TFLM
with the ratio TVM 0.18's C reached on the same models (../shared/models/README.md) as
the bar; `.text` and `.rodata` bytes of lib0.c + lib1.c for Cortex-M4
(arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os, arm-none-eabi-size); compile time.

Usage: python bench/compiler.py [MODEL ...] [--repeat N] [--json]
       (default: every model in $MICROTVM_SHARED_MODELS or ../shared/models)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from compiler_harness import TFLM, CompiledModel, LiteRT, arm_compile, random_inputs, tflm_arena  # noqa: E402

from microtvm_tasks.compiler import compile_to_members  # noqa: E402

#: ours/TFLM time ratio TVM 0.18's generated C reached (../shared/models/README.md): the bar to meet
TVM_RATIO = {
    "kws_ref_model": 0.25,
    "micro_speech_quantized": 0.33,
    "ad01_int8": 0.19,
    "ad01_fp32": 0.90,
}


def _interleaved_medians(timers: dict, repeat: int, min_time: float = 0.05) -> dict:
    """{name: median seconds per call}, measuring every timer once per round, round after
    round, so load from other processes on this shared machine hits all of them alike.

    A timer is fn(n) -> seconds per call over n calls."""
    counts = {}
    for name, timer in timers.items():
        timer(1)  # warm-up
        n = 1
        while n < 1 << 22 and timer(n) * n < min_time:
            n *= 4
        counts[name] = n
    samples: dict = {name: [] for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            samples[name].append(timer(counts[name]))
    return {name: statistics.median(v) for name, v in samples.items()}


def _py_timer(fn):
    def timer(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    return timer


def _arm_sizes(members, workdir: Path) -> tuple[int | None, int | None]:
    size = shutil.which("arm-none-eabi-size")
    if shutil.which("arm-none-eabi-gcc") is None or size is None:
        return None, None
    objs = arm_compile(members, workdir)
    out = subprocess.run([size, "-A", *map(str, objs)], capture_output=True, text=True, timeout=60).stdout
    text = rodata = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            if parts[0].startswith(".text"):
                text += int(parts[1])
            elif parts[0].startswith(".rodata"):
                rodata += int(parts[1])
    return text, rodata


def bench_model(path: Path, repeat: int, workdir: Path) -> dict:
    t0 = time.perf_counter()
    members = compile_to_members(path)
    compile_s = time.perf_counter() - t0
    model = CompiledModel(members, workdir / "host")
    inputs = random_inputs(model.inputs, np.random.default_rng(0))
    row: dict = {"model": path.name, "compile_s": compile_s, "arena": model.meta["workspace_size_bytes"]}
    row["text"], row["rodata"] = _arm_sizes(members, workdir / "arm")
    timers = {"ours": lambda n: model.time_per_run(inputs, n)}
    if path.suffix == ".tflite":
        arena = tflm_arena(path)
        row["tflm_head"], row["tflm_total"] = arena.get("head"), arena.get("total")
        tflm = TFLM(path)
        tflm.run(inputs)
        lrt = LiteRT(path)
        lrt.run(inputs)
        timers["tflm"] = _py_timer(tflm.interp.invoke)
        timers["peer"] = _py_timer(lrt.interp.invoke)
        row["peer"] = "LiteRT"
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {}
        for i, spec in zip(sess.get_inputs(), model.inputs, strict=True):
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            feeds[i.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            del spec
        timers["peer"] = _py_timer(lambda: sess.run(None, feeds))
        row["peer"] = "onnxruntime"
    med = _interleaved_medians(timers, repeat)
    row["ours_us"] = med["ours"] * 1e6
    row["peer_us"] = med["peer"] * 1e6
    if "tflm" in med:
        row["tflm_us"] = med["tflm"] * 1e6
    if row.get("tflm_us"):
        row["ratio_tflm"] = row["ours_us"] / row["tflm_us"]
    row["ratio_peer"] = row["ours_us"] / row["peer_us"]
    row["tvm_bar"] = TVM_RATIO.get(path.stem)
    return row


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def print_table(rows: list[dict]) -> None:
    head = [
        "model",
        "arena B",
        "TFLM head",
        "TFLM total",
        "ours us",
        "TFLM us",
        "peer us",
        "ours/TFLM",
        "TVM bar",
        "ours/peer",
        "M4 .text",
        "M4 .rodata",
        "compile s",
    ]
    lines = []
    for r in rows:
        bar = r.get("tvm_bar")
        ok = ""
        if bar is not None and r.get("ratio_tflm") is not None:
            ok = " ok" if r["ratio_tflm"] <= bar else " MISS"
        arena_ok = ""
        if r.get("tflm_head") is not None:
            arena_ok = " ok" if r["arena"] <= r["tflm_head"] else " MISS"
        lines.append(
            [
                r["model"],
                f"{r['arena']}{arena_ok}",
                _fmt(r.get("tflm_head")),
                _fmt(r.get("tflm_total")),
                _fmt(r["ours_us"], ".2f"),
                _fmt(r.get("tflm_us"), ".2f"),
                f"{r['peer_us']:.2f} ({r['peer']})",
                _fmt(r.get("ratio_tflm"), ".3f"),
                (_fmt(bar, ".2f") + ok) if bar is not None else "-",
                _fmt(r["ratio_peer"], ".2f"),
                _fmt(r.get("text")),
                _fmt(r.get("rodata")),
                _fmt(r["compile_s"], ".2f"),
            ]
        )
    widths = [max(len(h), *(len(str(line[i])) for line in lines)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=7, help="timed repeats per figure (median)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args()
    models = args.models
    if not models:
        d = Path(os.environ.get("MICROTVM_SHARED_MODELS", ROOT.parent / "shared" / "models"))
        models = sorted([*d.glob("*.tflite"), *d.glob("*.onnx")])
    if not models:
        print("no models given and none found in ../shared/models", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-compiler-") as tmp:
        for i, m in enumerate(models):
            rows.append(bench_model(m, args.repeat, Path(tmp) / f"m{i}"))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
