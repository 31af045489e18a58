#!/usr/bin/env python3
"""Instructions per inference, flash and RAM of each reference model on the emulated Cortex-M4.

For every model in the models directory (default: ../shared/models beside the repository)
this compiles it with the built-in compiler, generates and builds a ``qemu_arm`` project for
``mps2_an386`` (Cortex-M4F, 4 MiB code / 4 MiB data memory as QEMU models them), boots it in
QEMU and runs one inference over the UART. The instruction count is the firmware's tick
figure: under ``-icount`` the tick is one guest instruction, so it does not depend on the
host (two runs print the same number). Beside it: the firmware's flash (text + data) and
RAM (data + bss, including the 16 KiB stack) from arm-none-eabi-size, the model's arena
(workspace bytes from the MLF), and TFLite Micro's arena for the same model measured in the
same run with ../shared/peers/tflm_reference.py, with the ratio arena / TFLM total.

With --tflm-peer DIR (a build of bench/tflm_peer/build.py, see bench/tflm_peer/README.md) the
table also has TFLite Micro's own instructions per inference for the same model, board files,
counter and input bytes, with reference and CMSIS-NN kernels, the ratio ours / CMSIS-NN, and
whether TFLM's output bytes equal ours.

Usage: python bench/qemu_cycles.py [--models DIR] [--board mps2_an386] [--tflm-peer DIR] [--json]
Needs arm-none-eabi-gcc, qemu-system-arm, tflite-micro (for the TFLM arena columns).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TEMPLATE = REPO / "templates" / "qemu_arm"


def tflm_arena(model: Path, peers: Path) -> dict:
    """TFLite Micro's arena figures for `model`, from the peer script (None when it fails)."""
    script = peers / "tflm_reference.py"
    if model.suffix != ".tflite" or not script.exists():
        return {}
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(model), "--json", "--repeat", "1"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return {}
    if proc.returncode != 0:
        return {}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def draw_inputs(specs: list[tuple[list[int], str]]) -> list:
    """The fixed inputs of one run: numpy default_rng(0), in input order, standard normal for
    floats and uniform over the whole range for integers. One function, because the TFLite
    Micro peer (bench/tflm_peer) bakes the very same bytes into its firmware."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = []
    for shape, dtype_name in specs:
        dtype = np.dtype(dtype_name)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        else:
            info = np.iinfo(dtype)
            arrays.append(rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype))
    return arrays


def measure(model: Path, board: str, work: Path, **compile_kwargs: object) -> dict:
    """Compile (target / tuning_log in compile_kwargs), generate, build and run `model` once;
    a row of the table."""
    from microtvm_tasks.compiler import compile_model
    from microtvm_tasks.errors import MicrotvmError
    from microtvm_tasks.project_api.client import instantiate_from_dir
    from microtvm_tasks.session import ProjectAPITransport, Session

    row: dict = {"model": model.name}
    try:
        mlf = compile_model(model, work / f"{model.stem}.tar", **compile_kwargs)
    except MicrotvmError as exc:
        row["error"] = f"compile: {str(exc).splitlines()[0][:100]}"
        return row
    project = work / f"{model.stem}_{board}"
    try:
        with instantiate_from_dir(TEMPLATE, timeout=120) as client:
            client.generate_project(
                model_library_format_path=str(mlf),
                standalone_crt_dir=None,
                project_dir=str(project),
                options={"board": board, "project_type": "host_driven"},
            )
        config = json.loads((project / "qemu_arm_project.json").read_text())
        row["arena_bytes"] = config["workspace_size_bytes"]
        with instantiate_from_dir(project, timeout=900) as client:
            client.build({})
            client.flash({})
            sizes = json.loads((project / "build" / "sizes.json").read_text())
            row["flash_bytes"] = sizes["flash_bytes"]
            row["ram_bytes"] = sizes["ram_bytes"]
            client.open_transport({})
            try:
                session = Session(ProjectAPITransport(client), timeout=600)
                session.hello(timeout=30)
                desc = session.describe()
                arrays = draw_inputs([(list(t.shape), t.dtype) for t in desc.inputs])
                for i, x in enumerate(arrays):
                    session.set_input(i, x)
                row["input_bytes"] = [x.tobytes() for x in arrays]
                ticks, hz = session.run(1)
                again, _ = session.run(1)
                row["output_bytes"] = [session.get_output_bytes(i) for i in range(len(desc.outputs))]
                row["instructions"] = ticks
                row["deterministic"] = ticks == again
                row["tick_hz"] = hz
            finally:
                client.close_transport()
    except Exception as exc:  # noqa: BLE001 - one model's failure is a row, not the end of the table
        text = str(exc)
        for marker in ("model does not fit", "build failed"):
            if marker in text:
                text = text[text.index(marker) :]
        row["error"] = text.splitlines()[0][:160]
    return row


def tflm_peer_columns(row: dict, model: Path, board: str, peer_dir: Path) -> None:
    """TFLite Micro's own instruction counts for `model` (reference and CMSIS-NN kernels),
    from the peer firmwares of bench/tflm_peer/build.py booted now, and whether their
    input and output bytes equal ours."""
    sys.path.insert(0, str(REPO / "bench" / "tflm_peer"))
    import peer

    try:
        manifest = peer.load_manifest(peer_dir)
    except peer.PeerError as exc:
        row["tflm_peer_error"] = str(exc)
        return
    info = manifest.get("models", {}).get(model.stem)
    if info is None or "error" in info:
        row["tflm_peer_error"] = "not in the peer build" if info is None else info["error"]
        return
    ours_in = row.get("input_bytes")
    peer_in = [bytes.fromhex(t["hex"]) for t in info.get("inputs", [])]
    row["tflm_same_input"] = None if ours_in is None else ours_in == peer_in
    for kernels, res in peer.run_model(peer_dir, manifest, model.stem, board).items():
        if "error" in res:
            row[f"tflm_{kernels}_error"] = res["error"]
            continue
        row[f"tflm_{kernels}_instructions"] = res.get("ticks")
        row[f"tflm_{kernels}_deterministic"] = res.get("ticks") == res.get("ticks_again")
        row[f"tflm_{kernels}_arena_bytes"] = res.get("arena_bytes")
        ours_out = row.get("output_bytes")
        if ours_out is not None:
            theirs = [bytes.fromhex(res["outputs"].get(i, "")) for i in range(len(res["outputs"]))]
            row[f"tflm_{kernels}_same_output"] = ours_out == theirs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=SHARED / "models")
    ap.add_argument("--peers", type=Path, default=SHARED / "peers")
    ap.add_argument("--board", default="mps2_an386")
    ap.add_argument(
        "--tflm-peer",
        type=Path,
        metavar="DIR",
        help="a bench/tflm_peer/build.py output: add TFLite Micro's instructions (reference and CMSIS-NN "
        "kernels, same board files and counter) and whether its outputs equal ours",
    )
    ap.add_argument("--target", default=None,
                    help="compiler target (default: the board's CPU from templates/qemu_arm/boards.json)")
    ap.add_argument("--tune", action="store_true",
                    help="tune each model on the board first (microtvm tune) and compile with the log; the "
                    "untuned figure (generic target, no log) is measured too, in the same run")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    from microtvm_tasks.template_support.boards import project_target
    from microtvm_tasks.tune import tune_model

    target = project_target(TEMPLATE, {"board": args.board}, args.target)
    print(f"# target {target}", file=sys.stderr, flush=True)

    models = sorted(p for p in args.models.iterdir() if p.suffix in (".tflite", ".onnx"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="qemu_cycles.") as tmp:
        for model in models:
            kwargs: dict = {"target": target}
            if args.tune:
                log = Path(tmp) / f"{model.stem}.tune.jsonl"
                try:
                    tune_model(model, TEMPLATE, {"board": args.board, "project_type": "host_driven"}, log,
                               work_dir=Path(tmp) / "tune", target=target, say=lambda _s: None)
                    kwargs["tuning_log"] = log
                except Exception as exc:  # noqa: BLE001 - the untuned row still says something
                    print(f"# {model.name}: tuning failed: {exc}", file=sys.stderr)
            row = measure(model, args.board, Path(tmp), **kwargs)
            if args.tune:
                untuned = measure(model, args.board, Path(tmp) / "untuned")
                row["untuned_instructions"] = untuned.get("instructions")
            peer = tflm_arena(model, args.peers)
            row["tflm_arena_total_bytes"] = peer.get("tflm_arena_total_bytes")
            row["tflm_arena_head_bytes"] = peer.get("tflm_arena_head_bytes")
            if args.tflm_peer is not None:
                tflm_peer_columns(row, model, args.board, args.tflm_peer.resolve())
            row.pop("input_bytes", None)
            outputs = row.pop("output_bytes", None)
            if outputs is not None:
                row["output_sha256"] = [hashlib.sha256(o).hexdigest() for o in outputs]
            rows.append(row)
            print(f"# {model.name}: done", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    def fmt(v: object) -> str:
        return "-" if v is None else str(v)

    def yes(v: object) -> str:
        return "-" if v is None else ("yes" if v else "NO")

    peer_cols = args.tflm_peer is not None
    print(f"board {args.board}, target {target}{', tuned' if args.tune else ''} "
          "(QEMU -icount: 1 tick = 1 guest instruction)")
    if args.tune:
        for r in rows:
            if r.get("untuned_instructions") and r.get("instructions"):
                print(f"  {r['model']}: untuned (generic) {r['untuned_instructions']} -> tuned "
                      f"{r['instructions']} ({r['instructions'] / r['untuned_instructions']:.2f}x)")
    head = (
        "| model | instructions/inference | ms at 25 MHz, 1 instr/cycle | same twice | "
        "flash B | RAM B | arena B | "
        "TFLM arena head B | TFLM arena total B | arena / TFLM total |"
    )
    if peer_cols:
        head += (
            " TFLM ref instructions | TFLM CMSIS-NN instructions | ours / CMSIS-NN | "
            "same input | outputs = TFLM ref | outputs = TFLM CMSIS-NN |"
        )
    print(head)
    print("|---" * (16 if peer_cols else 10) + "|")
    for r in rows:
        ratio = None
        if r.get("arena_bytes") is not None and r.get("tflm_arena_total_bytes"):
            ratio = f"{r['arena_bytes'] / r['tflm_arena_total_bytes']:.2f}"
        if "error" in r and "instructions" not in r:
            cells = [
                r["model"], r["error"], "-", "-", fmt(r.get("flash_bytes")), fmt(r.get("ram_bytes")),
                fmt(r.get("arena_bytes")), fmt(r["tflm_arena_head_bytes"]), fmt(r["tflm_arena_total_bytes"]),
                fmt(ratio),
            ]
        else:
            cells = [
                r["model"], str(r["instructions"]), f"{1e3 * r['instructions'] / r['tick_hz']:.2f}",
                "yes" if r["deterministic"] else "NO", str(r["flash_bytes"]), str(r["ram_bytes"]),
                str(r["arena_bytes"]), fmt(r["tflm_arena_head_bytes"]), fmt(r["tflm_arena_total_bytes"]),
                fmt(ratio),
            ]
        if peer_cols:
            ref = r.get("tflm_ref_instructions")
            nn = r.get("tflm_cmsis_nn_instructions")
            vs = f"{r['instructions'] / nn:.2f}" if nn and r.get("instructions") else None
            err = r.get("tflm_peer_error")
            cells += [
                fmt(ref if ref is not None else (err or r.get("tflm_ref_error"))),
                fmt(nn if nn is not None else (err or r.get("tflm_cmsis_nn_error"))),
                fmt(vs),
                yes(r.get("tflm_same_input")),
                yes(r.get("tflm_ref_same_output")),
                yes(r.get("tflm_cmsis_nn_same_output")),
            ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
