#!/usr/bin/env python3
"""Boot every TFLite Micro peer firmware of a build (bench/tflm_peer/build.py --out DIR) and
print TFLM's instructions per inference for each model and kernel set.

The count is the firmware's tick figure around Invoke(): under QEMU -icount one tick is one
guest instruction (the qemu_arm template's timer code), so it does not depend on the host.

Usage: python bench/tflm_peer/run.py DIR [--board mps2_an386] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer  # noqa: E402


def run_all(out: Path, manifest: dict[str, Any], board: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{model stem: {kernels: result}} for every model of the build."""
    results = {}
    for stem in sorted(manifest.get("models", {})):
        results[stem] = peer.run_model(out, manifest, stem, board)
        print(f"# {stem}: done", file=sys.stderr, flush=True)
    return results


def _cell(res: dict[str, Any] | None, key: str) -> str:
    if not res:
        return "-"
    if "error" in res:
        return "error: " + str(res["error"])[:60]
    value = res.get(key)
    return "-" if value is None else str(value)


def print_table(out: Path, manifest: dict[str, Any], board: str) -> None:
    """The markdown table of one board."""
    results = run_all(out, manifest, board)
    print(
        f"board {board}: TFLite Micro ({manifest.get('build_type')}, {manifest.get('opt')}), "
        "instructions per Invoke() under QEMU -icount"
    )
    print(
        "| model | ref instructions | CMSIS-NN instructions | ref / CMSIS-NN | same twice | "
        "ref flash B | ref RAM B | CMSIS-NN flash B | CMSIS-NN RAM B | arena B | outputs ref = CMSIS-NN |"
    )
    print("|---" * 11 + "|")
    for stem, res in results.items():
        ref, nn = res.get("ref"), res.get("cmsis_nn")
        ratio = "-"
        if ref and nn and ref.get("ticks") and nn.get("ticks"):
            ratio = f"{ref['ticks'] / nn['ticks']:.2f}"
        twice = all(r.get("ticks") == r.get("ticks_again") for r in res.values() if r and "ticks" in r)
        same = "-"
        if ref and nn and ref.get("outputs") and nn.get("outputs"):
            same = "yes" if ref["outputs"] == nn["outputs"] else "NO"
        cells = [
            stem,
            _cell(ref, "ticks"),
            _cell(nn, "ticks"),
            ratio,
            "yes" if twice else "NO",
            _cell(ref, "flash_bytes"),
            _cell(ref, "ram_bytes"),
            _cell(nn, "flash_bytes"),
            _cell(nn, "ram_bytes"),
            _cell(nn or ref, "arena_bytes"),
            same,
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the build directory of build.py")
    ap.add_argument("--board", default="mps2_an386")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        manifest = peer.load_manifest(args.out)
    except peer.PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(run_all(args.out, manifest, args.board), indent=2))
        return 0
    print_table(args.out, manifest, args.board)
    return 0


if __name__ == "__main__":
    sys.exit(main())
